"""labkit's import graph: no cycle, methods apart from evaluation and reporting, local imports explained.

The graph is read from the source with ``ast`` (nothing is imported): one node per module of ``labkit/``, one
edge per ``import`` of another labkit module, wherever it stands: at module level, under ``if TYPE_CHECKING``, or
inside a function (a function-level import is a dependency all the same, only a later one).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "labkit"
#: The method layers (``../shared/DESIGN.md``): what they may never reach, directly or through another module.
METHODS = ("labkit.apr", "labkit.defences", "labkit.attacks")
#: Evaluation, storage of results, reporting and the labs: above the methods.
ABOVE_METHODS = ("labkit.evaluate", "labkit.suites", "labkit.records", "labkit.report", "labkit.labs",
                 "labkit.claims")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imported(node: ast.Import | ast.ImportFrom, module: str) -> Iterator[str]:
    """The labkit modules one import statement of ``module`` loads (a name of a package that is a submodule
    counts as that submodule; any other name as the package it comes from)."""
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the importing module's package
            package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
            base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    for target in targets:
        while target and target not in MODULES:  # ``import labkit.x.y`` of a name inside a module: its module
            target = target.rpartition(".")[0]
        if target and target != module:
            yield target


def imports_of(module: str) -> list[tuple[ast.Import | ast.ImportFrom, bool, str]]:
    """(statement, at function level, imported module) for every labkit import of ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out = []

    def walk(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.extend((child, local, target) for target in imported(child, module))
            walk(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    walk(tree, False)
    return out


GRAPH = {m: sorted({t for _, _, t in imports_of(m)}) for m in MODULES}


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted: the import circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_every_kind_of_import() -> None:
    # The three places an import of another labkit module stands, each seen (so the checks below can fail).
    assert "labkit.defences" in GRAPH["labkit.suites"]  # inside a function (train_entry)
    assert "labkit.profiles" in GRAPH["labkit.evaluate"]  # under ``if TYPE_CHECKING``
    assert "labkit.storable" in GRAPH["labkit.records"]  # at module level
    assert "labkit.labs.apr_paper" in GRAPH["labkit.labs.attention_maps"]
    assert "labkit.attacks" in GRAPH["labkit.defences"] and "labkit.attacks.onepixel" in GRAPH["labkit.attacks"]


def test_labkit_has_no_import_cycle() -> None:
    assert cycles() == []


def test_a_cycle_would_be_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "labkit.train", [*GRAPH["labkit.train"], "labkit.evaluate"])
    monkeypatch.setitem(GRAPH, "labkit.evaluate", [*GRAPH["labkit.evaluate"], "labkit.train"])
    assert any({"labkit.evaluate", "labkit.train"} <= set(c) for c in cycles())


@pytest.mark.parametrize("method", [m for m in MODULES if under(m, METHODS)])
def test_methods_reach_no_evaluation_reporting_or_lab(method: str) -> None:
    reached = sorted(m for m in reachable(method) if under(m, ABOVE_METHODS))
    assert reached == [], f"{method} imports (directly or through another module) {reached}"


def test_records_is_a_generic_store() -> None:
    # records keeps and rebuilds results through the registries of labkit.storable, which the stored types fill
    # where they are defined: it reaches no lab, method-of-defence or evaluation module, directly or not.
    reached = reachable("labkit.records")
    assert not [m for m in reached if under(m, ("labkit.attention", "labkit.defences", "labkit.labs",
                                                "labkit.evaluate", "labkit.suites", "labkit.report",
                                                "labkit.claims"))]
    assert GRAPH["labkit.storable"] == []  # the registries sit at the bottom: any type can register, no circle
    stored_types = ("labkit.attacks.base", "labkit.evaluate", "labkit.suites", "labkit.train", "labkit.attention")
    assert [m for m in stored_types if "labkit.records" in reachable(m)] == []  # they sit below the store


#: The modules above the labs: the claims chapter reads their records through the names and verdicts they export,
#: and the findings (key results, the landing page) read the chapter's rows.
ABOVE_LABS = ("labkit.claims", "labkit.findings")


def test_nothing_outside_the_labs_imports_them() -> None:
    # A lab's module is the top of the stack: a notebook imports it, no method, measurement, storage or presentation
    # does (only the claims chapter, which judges the labs' records as the labs do).
    outside = {m: [t for t in GRAPH[m] if under(t, ("labkit.labs",))] for m in MODULES
               if not under(m, ("labkit.labs", *ABOVE_LABS))}
    assert {m: t for m, t in outside.items() if t} == {}


def test_report_holds_only_what_the_labs_share() -> None:
    # Shared rules and sentences: every lab may use report, so report reaches no lab (nor the chapter above them).
    reached = sorted(m for m in reachable("labkit.report") if under(m, ("labkit.labs", *ABOVE_LABS)))
    assert reached == [], f"labkit.report imports (directly or through another module) {reached}"


def test_no_lab_imports_the_claims_chapter() -> None:
    reached = {lab: sorted(m for m in reachable(lab) if under(m, ABOVE_LABS)) for lab in MODULES
               if under(lab, ("labkit.labs",))}
    assert {lab: r for lab, r in reached.items() if r} == {}


def explained(lines: list[str], lineno: int) -> bool:
    """Whether the import on line ``lineno`` (1-based) carries a comment: on its own line, or on the line above the
    run of import lines it belongs to."""
    if "#" in lines[lineno - 1]:
        return True
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith(("from ", "import ")):
        i -= 1
    return i >= 0 and lines[i].strip().startswith("#")


def test_every_function_level_labkit_import_says_why() -> None:
    bare = []
    for module, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        bare += [f"{module}:{node.lineno}" for node, local, _ in imports_of(module)
                 if local and not explained(lines, node.lineno)]
    assert bare == [], f"function-level labkit imports without a comment saying why: {bare}"


def test_explained_reads_the_comment_above_a_run_of_imports() -> None:
    lines = ["def f():", "    # kept local: why", "    from labkit import a", "    from labkit import b", "",
             "def g():", "    x = 1", "    from labkit import c", "    from labkit import d  # why"]
    assert explained(lines, 3) and explained(lines, 4) and not explained(lines, 8) and explained(lines, 9)


# -- the map of docs/ARCHITECTURE.md: every module listed, no import climbing a layer ------------------------------

ARCHITECTURE = ROOT.parent / "docs" / "ARCHITECTURE.md"
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`(labkit(?:\.[\w.]+)?)`\s*\|")


def layers(text: str) -> dict[str, int]:
    """The map's rows: listed module (or package) -> its layer."""
    return {m.group(2): int(m.group(1)) for m in map(ROW.match, text.splitlines()) if m}


def layer_of(module: str, listed: dict[str, int]) -> int | None:
    """The layer of ``module``: its own row, else its closest listed package's (the bare package ``labkit``
    covers only itself, so a module missing from the map is reported, not put in layer 1)."""
    while module:
        if module in listed:
            return listed[module]
        module = module.rpartition(".")[0]
        if module == "labkit":
            return None
    return None


def climbs(listed: dict[str, int]) -> list[str]:
    """Every import of a module from a higher layer, as 'a (layer) -> b (layer)'."""
    out = []
    for module, targets in GRAPH.items():
        for target in targets:
            a, b = layer_of(module, listed), layer_of(target, listed)
            if a is not None and b is not None and b > a:
                out.append(f"{module} ({a}) -> {target} ({b})")
    return out


def test_the_architecture_map_lists_every_module_and_nothing_else() -> None:
    listed = layers(ARCHITECTURE.read_text(encoding="utf-8"))
    assert len(listed) > 20
    assert sorted(m for m in MODULES if layer_of(m, listed) is None) == []
    assert sorted(m for m in listed if m not in MODULES) == []


def test_no_import_climbs_a_layer_of_the_map() -> None:
    assert climbs(layers(ARCHITECTURE.read_text(encoding="utf-8"))) == []


def test_a_climbing_import_would_be_found() -> None:
    # Put training below the data it loads: its imports of data and models now climb.
    listed = {**layers(ARCHITECTURE.read_text(encoding="utf-8")), "labkit.train": 1}
    assert "labkit.train (1) -> labkit.data (2)" in climbs(listed)
