"""Sphinx configuration of the fastsip and proxyapp documentation site.

Build it (tests/test_docs.py does, with warnings as errors) into a directory outside the tree:

    python -m sphinx -W --keep-going -b html docs /tmp/fastsip-docs
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Document the sources of this tree, not whatever copy is installed in site-packages.
sys.path.insert(0, str(ROOT / "src"))
# The reference is generated from the pure-Python backend, the executable spec: its functions
# carry the type annotations of the stubs (_parser_c.pyi), and the site is the same whether or
# not the Cython extension is built. The compiled backend builds too (its signatures come from
# the docstrings' first lines, without types); the public API is the same (docs/fastsip-api.md).
os.environ["FASTSIP_NO_EXTENSIONS"] = "1"

import fastsip  # noqa: E402

project = "fastsip and proxyapp"
author = "the fastsip authors"
release = version = fastsip.__version__
copyright = "2026, the fastsip authors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# docs/proxyapp-imports.png is linked from the README; the site does not show it.
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: anchors for headings so pages can link to sections, and the definition-list,
# colon-fence syntax used by the guide pages.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# autodoc: the public names of fastsip/__init__ (docs/api.rst), in source order, with their type
# hints in the signature. No napoleon: the docstrings are plain reStructuredText, and napoleon
# would read "RFC 3581: ..." at the start of a property docstring as a type.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}

html_theme = "furo"
html_title = f"fastsip and proxyapp {release}"
html_static_path: list[str] = []


def _escape_backslashes(app, what, name, obj, options, lines):  # noqa: ANN001
    """ScriptContext.append_hf's docstring shows a header line ending in a literal ``\\r\\n``;
    reStructuredText would read those backslashes as escapes ("outboundrn")."""
    if name == "proxyapp.script.ScriptContext.append_hf":
        lines[:] = [line.replace("\\", "\\\\") for line in lines]


def setup(app):  # noqa: ANN001, ANN201
    app.connect("autodoc-process-docstring", _escape_backslashes)
