"""bench/proxy/run.py's --proxy-acc: proxyapp with extra [acc] keys, as proxyapp itself reads them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from proxyapp.acc import AccConfig
from proxyapp.config import Config

RUN_PY = Path(__file__).resolve().parents[2] / "bench" / "proxy" / "run.py"


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("bench_proxy_run", RUN_PY)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def test_proxy_acc_adds_its_keys_to_the_accounting_config(run, tmp_path):
    name, build = run.proxyapp_acc_cmd("n0=proxyapp1:nice=0; flush_interval_ms=30")
    assert name == "n0"
    cmd = build("acc_db", tmp_path, 45060)
    assert cmd[-2:] == ["--workers", "1"] and cmd[cmd.index("--config") + 1] == str(tmp_path / "proxyapp.toml")
    cfg = Config.load(tmp_path / "proxyapp.toml")
    acc = AccConfig.from_dict(cfg.acc)
    assert (acc.nice, acc.flush_interval_ms, acc.db_url) == (0, 30, str(tmp_path / "acc.db"))
    # "proxyapp" runs 2 workers; a variant without accounting gets no [acc] keys
    _, build2 = run.proxyapp_acc_cmd("w2=proxyapp:batch_max=100")
    for variant in ("acc_db", "plain"):
        (tmp_path / variant).mkdir()
        assert build2(variant, tmp_path / variant, 45060)[-2:] == ["--workers", "2"]
    assert AccConfig.from_dict(Config.load(tmp_path / "acc_db" / "proxyapp.toml").acc).batch_max == 100
    assert "batch_max" not in (tmp_path / "plain" / "proxyapp.toml").read_text()

@pytest.mark.parametrize("spec", ["n0=kamailio:nice=0", "n0=proxyapp", "n0=proxyapp:", "=proxyapp:nice=0"])
def test_proxy_acc_rejects_what_it_cannot_build(run, spec):
    with pytest.raises(ValueError, match="--proxy-acc"):
        run.proxyapp_acc_cmd(spec)
