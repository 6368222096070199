"""proxyapp's import graph, read from the source (every import, function-level ones included).

    python3 -m tests.proxy.layers            # the edges, one per line
    python3 -m tests.proxy.layers --dot      # Graphviz DOT, grouped by layer (| dot -Tpng)
    python3 -m tests.proxy.layers --dot --packages   # the services collapsed to one node each

tests/proxy/test_layers.py holds the package to its layers with it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "proxyapp"

# Bottom to top. A module may import modules of its own layer or of a lower one, never of a higher
# one. The order inside proxyapp.core is stricter (CORE_ORDER below).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("proxyapp", "proxyapp.config", "proxyapp.logs", "proxyapp.limits")),
    ("transactions (RFC 3261 §17)", ("proxyapp.transaction",)),
    ("proxy core (RFC 3261 §16)", ("proxyapp.core",)),
    ("services", ("proxyapp.acc", "proxyapp.location", "proxyapp.registrar", "proxyapp.auth", "proxyapp.permissions")),
    ("script API", ("proxyapp.script", "proxyapp.default_script")),
    ("proxy facade", ("proxyapp.proxy",)),
    ("asyncio edge and workers", ("proxyapp.workers", "proxyapp.transport", "proxyapp.tcp_limits", "proxyapp.tls", "proxyapp.icmp", "proxyapp.control", "proxyapp.metrics")),
    ("command line", ("proxyapp.__main__", "proxyapp.ctl", "proxyapp._cli", "proxyapp.allocator")),
]

# Inside the core: each module imports only modules listed before it.
CORE_ORDER = [
    "addresses", "sockets", "context", "stats", "hooks", "base",
    "requests", "responses", "cancel", "stateless", "replies", "accounting", "proxy", "__init__",
]


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file (a package is named by its __init__)."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The package module an imported name lives in (``a.b.C`` -> ``a.b``), None outside it."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(mod: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``mod`` imports, wherever the import statement stands."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, known)
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".")
                if not is_pkg:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                # ``from . import acc`` imports a module; ``from .x import Name`` a name of x.
                target = _resolve(f"{prefix}.{alias.name}", known) or _resolve(prefix, known)
                if target:
                    found.add(target)
    found.discard(mod)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {mod: imports(mod, path, known) for mod, path in known.items()}


def layer_of(mod: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if mod == p or (p != PACKAGE and mod.startswith(p + ".")):
                return i
    raise KeyError(f"{mod} is in no layer: add it to tests/proxy/layers.py")


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


COLLAPSE = ("proxyapp.acc", "proxyapp.location", "proxyapp.registrar", "proxyapp.auth")


def collapsed(g: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph with every module of a service package (COLLAPSE) merged into the package."""

    def name(m: str) -> str:
        for p in COLLAPSE:
            if m.startswith(p + "."):
                return p
        return m

    out: dict[str, set[str]] = {}
    for src, targets in g.items():
        out.setdefault(name(src), set()).update(name(t) for t in targets)
    for src, targets in out.items():
        targets.discard(src)
    return out


def dot(g: dict[str, set[str]]) -> str:
    lines = ["digraph proxyapp {", "  rankdir=BT; newrank=true; node [shape=box, fontsize=11];"]
    for i, (title, _) in enumerate(LAYERS):
        members = sorted(m for m in g if layer_of(m) == i)
        lines.append(f'  subgraph cluster_{i} {{ label="{i}. {title}"; style=rounded;')
        lines += [f'    "{m}";' for m in members]
        lines.append("  }")
    for src in sorted(g):
        for dst in sorted(g[src]):
            lines.append(f'  "{src}" -> "{dst}";')
    lines.append("}")
    return "\n".join(lines)


if __name__ == "__main__":
    g = graph()
    if "--packages" in sys.argv:
        g = collapsed(g)
    if "--dot" in sys.argv:
        print(dot(g))
    else:
        for src in sorted(g):
            for dst in sorted(g[src]):
                print(f"{src} -> {dst}")
