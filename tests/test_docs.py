"""The documentation site under docs/ builds with Sphinx, warnings as errors, and has its key pages.

It catches a docstring that stops being valid reStructuredText, a Markdown page that links
nowhere, an example file the guide includes that moved, and a public name the reference no
longer finds. The build goes to pytest's tmp_path, never into the tree.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxyapp.acc import AccConfig
from proxyapp.location import LocationConfig
from proxyapp.registrar import RegistrarConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

PAGES = [
    "index.html",
    "fastsip-api.html",
    "api.html",
    "proxyapp/index.html",
    "proxyapp/configuration.html",
    "proxyapp/script.html",
    "proxyapp/accounting.html",
    "proxyapp/registrar.html",
    "proxyapp/operations.html",
    "proxyapp/deployment.html",
]

# Every top-level key and table key of proxyapp.config.Config.from_dict.
TOP_LEVEL_KEYS = [
    "listen", "advertised_address", "aliases", "script", "server_header", "trying_reason", "log_level",
    "log_format", "max_message_size", "workers", "stop_timeout", "T1", "T2", "T4", "fr_timeout",
    "fr_inv_timeout", "wt_timer", "socket", "stateless_responses", "open_relay", "trusted", "groups",
    "certificate", "private_key", "ca_list", "verify_client", "verify_server", "min_version", "handshake_timeout",
]


@pytest.mark.timeout(180)
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "html"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=170,
    )
    assert proc.returncode == 0, f"sphinx failed:\n{proc.stdout}\n{proc.stderr}"

    for page in PAGES:
        assert (out / page).is_file(), f"{page} missing from the built site"

    # The reference found the public names (autodoc imports nothing silently: a name it cannot
    # import is a warning, hence an error, but a page without the directives would pass).
    api = (out / "api.html").read_text(encoding="utf-8")
    import fastsip

    for name in fastsip.__all__:
        assert f'id="fastsip.{name}"' in api, f"fastsip.{name} is not in the API reference"
    # The hand-written contract is in the site, and so are the example configurations.
    assert "What is accepted, what is refused" in (out / "fastsip-api.html").read_text(encoding="utf-8")
    config = (out / "proxyapp/configuration.html").read_text(encoding="utf-8")
    for key in TOP_LEVEL_KEYS + [f.name for c in (AccConfig, LocationConfig) for f in dataclasses.fields(c)] + [
        f.name for f in dataclasses.fields(RegistrarConfig)
    ]:
        assert f"<code class=\"docutils literal notranslate\"><span class=\"pre\">{key}</span></code>" in config, (
            f"the configuration page does not document the key {key}"
        )
    script = (out / "proxyapp/script.html").read_text(encoding="utf-8")
    assert 'id="proxyapp.script.ScriptContext.t_relay"' in script

    # Nothing was written into the source tree (doctrees go to the output directory).
    assert not (DOCS / "_build").exists()
    assert not (DOCS / ".doctrees").exists()
