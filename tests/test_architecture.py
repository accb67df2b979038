"""The package's layout keeps its promises: stages import only stages below them, no import
cycle anywhere (function-level imports included), errors.py is a leaf, the runtime stays
light, and no module grows past about 400 lines."""
from __future__ import annotations

import ast

import pytest

from tests.helpers.import_graph import cycles, imports, module_names, upward_imports
from tests.helpers.paths import REPOSITORY

PACKAGE_DIR = REPOSITORY / "birdemb"
# bottom first: a stage may import itself and the stages before it ("" is birdemb/__init__)
LAYERS = ["", "errors", "runtime", "labels", "backbones", "store", "extract", "training", "deploy", "explore",
          "commands", "cli", "__main__"]
HEAVY = ("torch", "lightning", "polars", "tensorflow", "pandas", "pyarrow", "matplotlib")
MAX_LINES = 400


@pytest.fixture(scope="module")
def graph():
    modules = module_names(PACKAGE_DIR, "birdemb")
    return modules, imports(modules, "birdemb")


def test_no_import_cycle_anywhere(graph):
    _, edges = graph
    assert cycles(edges) == []


def test_every_stage_imports_only_stages_below_it(graph):
    _, edges = graph
    assert upward_imports(edges, LAYERS) == []


def test_errors_is_a_leaf(graph):
    _, edges = graph
    assert [e for e in edges if e.source == "birdemb.errors"] == []


def test_runtime_imports_nothing_heavy(graph):
    """What the Kaggle script inlines: tensorflow only as the TFLite runner's last resort."""
    modules, _ = graph
    found = []
    for name, path in modules.items():
        if not name.startswith("birdemb.runtime"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            roots = ([a.name.split(".")[0] for a in node.names] if isinstance(node, ast.Import) else
                     [(node.module or "").split(".")[0]] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{name}:{node.lineno} {root}" for root in roots if root in HEAVY]
    assert [(f.split(":")[0], f.split()[-1]) for f in found] == [("birdemb.runtime.interpreter", "tensorflow")]


def test_no_module_is_over_400_lines(graph):
    modules, _ = graph
    long = {name: n for name, path in modules.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path):
    """The checker itself: a made-up package with both faults, one of them inside a function."""
    root = tmp_path / "pkg"
    for folder in ("low", "high"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "low" / "a.py").write_text("def f():\n    from pkg.high import b\n")
    (root / "high" / "b.py").write_text("from pkg.low.a import f\n")
    edges = imports(module_names(root, "pkg"), "pkg")
    assert cycles(edges) == [["pkg.high.b", "pkg.low.a"]]
    assert upward_imports(edges, ["", "low", "high"]) == [
        "pkg.low.a (line 2) imports pkg.high.b: low may not import the higher stage high"]
    assert upward_imports(edges, ["", "low"])  # a stage without a place is reported too
