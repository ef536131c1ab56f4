"""The layers of the code: imports run one way, from the command line down to the core.

    core         digest.addresses, config, delivery_time, store, text, importing, articles/, select, schedule,
                 render, message, tokens, editors
      ^          (and the templates and migrations packages)
    deliver      digest/deliver/: ledger, leases, the Transport interface, outbox, SendGrid
      ^
    subscribers  digest.subscribers (the subscribers/ folder): store, CSV importer, sign-up, events
      ^
    sending      digest.edition, sending, senders, dispatch, preview, check, testsend, cancel
      ^
    web          digest/web/: the ASGI app, one module per audience
      ^
    cli          digest.cli

Every import (at the top of a module or inside a function: both run) is read with `ast`
from every module of the packages; a module that belongs to no layer fails too, so a
new module is placed on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("digest",)  # digest/subscribers and digest/templates are links to the top-level folders

# Lowest first; a module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("digest", "digest.addresses", "digest.config", "digest.delivery_time", "digest.store",
              "digest.text", "digest.importing", "digest.articles", "digest.select", "digest.schedule",
              "digest.render", "digest.message", "digest.tokens", "digest.migrations", "digest.templates",
              "digest.editors")),
    ("deliver", ("digest.deliver",)),
    ("subscribers", ("digest.subscribers",)),
    ("sending", ("digest.edition", "digest.sending", "digest.senders", "digest.dispatch", "digest.preview",
                 "digest.check", "digest.testsend", "digest.cancel")),
    ("web", ("digest.web",)),
    ("cli", ("digest.cli",)),
)
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def layer_of(module: str) -> str | None:
    best, found = -1, None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), name
    return found


def imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported project module, line) for every import statement in the module."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from digest import sending` imports the module digest.sending
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import digest.deliver.ledger as x` and the like
                target = target.rpartition(".")[0]
            if target:
                found.append((target, node.lineno))
    return found


def edges() -> list[tuple[str, str, str, int]]:
    """(importing module, imported module, file, line) between project modules."""
    found = modules()
    known = set(found)
    return [(m, target, str(path.relative_to(REPO)), line)
            for m, path in found.items() for target, line in imports(m, path, known) if target != m]


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == []


def test_no_cycle_between_layers():
    graph: dict[str, dict[str, str]] = {}
    for source, target, where, line in edges():
        a, b = layer_of(source), layer_of(target)
        if a and b and a != b:
            graph.setdefault(a, {}).setdefault(b, f"{where}:{line} imports {target}")
    cycle = find_cycle(graph)
    assert cycle is None, "the layers import each other: " + "; ".join(
        f"{a} -> {b} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False))


def test_layers_import_only_downwards():
    """Stricter than no cycle: an import that goes up is refused before the cycle it starts."""
    upward = [f"{where}:{line}: {source} ({layer_of(source)}) imports {target} ({layer_of(target)})"
              for source, target, where, line in edges()
              if RANK[layer_of(source)] < RANK[layer_of(target)]]
    assert upward == []


def test_no_cycle_between_modules():
    graph: dict[str, dict[str, str]] = {}
    for source, target, where, line in edges():
        graph.setdefault(source, {}).setdefault(target, f"{where}:{line}")
    cycle = find_cycle(graph)
    assert cycle is None, "modules import each other: " + " -> ".join(cycle)


def find_cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_check_sees_an_upward_import(tmp_path):
    """The checker itself: a cycle it should find, and the resolution of `from x import module`."""
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ""}, "b": {}}) is None
    source = tmp_path / "m.py"
    source.write_text("from digest import sending\n\ndef f():\n    import digest.web.app as web\n")
    assert imports("digest.cli", source, {"digest", "digest.sending", "digest.web", "digest.web.app"}) == [
        ("digest.sending", 1), ("digest.web.app", 4)]
