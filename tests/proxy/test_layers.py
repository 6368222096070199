"""proxyapp's imports run one way: down the layers of tests/proxy/layers.py, never back up.

The layers are stated in src/proxyapp/__init__.py; this test keeps the code to them.
"""

from __future__ import annotations

from . import layers


def test_every_module_is_in_a_layer():
    g = layers.graph()
    assert "proxyapp.core.requests" in g and "proxyapp.acc.engine" in g  # the scan found the package
    for mod in g:
        layers.layer_of(mod)  # raises KeyError for a module nobody placed


def test_no_import_runs_up_a_layer():
    g = layers.graph()
    upward = [
        f"{src} (layer {layers.layer_of(src)}) imports {dst} (layer {layers.layer_of(dst)})"
        for src, targets in g.items()
        for dst in targets
        if layers.layer_of(dst) > layers.layer_of(src)
    ]
    assert upward == []


def test_the_core_and_accounting_do_not_know_each_other():
    # The core reaches accounting only through its AccObserver contract, and accounting knows
    # nothing of the proxy: either can change without the other.
    g = layers.graph()
    crossing = [
        (src, dst)
        for src, targets in g.items()
        for dst in targets
        if (src.startswith("proxyapp.core") and dst.startswith("proxyapp.acc"))
        or (src.startswith("proxyapp.acc") and dst.startswith("proxyapp.core"))
    ]
    assert crossing == []


def test_core_modules_import_only_those_before_them():
    g = layers.graph()
    order = {name: i for i, name in enumerate(layers.CORE_ORDER)}

    def rank(mod: str) -> int:
        return order["__init__" if mod == "proxyapp.core" else mod.rpartition(".")[2]]

    core = {m: t for m, t in g.items() if m.startswith("proxyapp.core")}
    assert set(map(rank, core)) == set(order.values())  # CORE_ORDER names every core module
    wrong = [
        f"{src} imports {dst}"
        for src, targets in core.items()
        for dst in targets
        if dst.startswith("proxyapp.core") and rank(dst) >= rank(src)
    ]
    assert wrong == []


def test_there_is_no_import_cycle():
    assert layers.cycles(layers.graph()) == []


def test_the_scanner_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    # The rule is only as good as the scan: a lazy import inside a function, the kind that hid
    # the old proxy <-> script cycle, must count.
    pkg = tmp_path / "proxyapp"
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "script.py").write_text("from .core import x\n")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "proxy.py").write_text("def f():\n    from ..script import Script\n")
    monkeypatch.setattr(layers, "SRC", tmp_path)
    g = layers.graph()
    assert g["proxyapp.core.proxy"] == {"proxyapp.script"}
    assert g["proxyapp.script"] == {"proxyapp.core"}
    assert layers.cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
