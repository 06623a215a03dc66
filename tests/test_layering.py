"""The package's layering (docs/design.md, "Layers"), read from the source: every import, those
inside functions included, goes down the layers or stays within one; the module graph has no
cycle; no function is over 120 lines. A new module must be placed in a layer here."""

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lumos"

# Top to bottom. A module may import from its own layer or any layer below, never above.
LAYERS = [
    ("entry", ["lumos.__main__", "lumos.cli", "lumos.launch", "lumos.commands", "lumos.bench"]),
    ("report", ["lumos.report"]),
    ("tasks", ["lumos.tasks", "lumos.eval", "lumos.interpolate", "lumos.released", "lumos.pipelines"]),
    ("stages", ["lumos.training", "lumos.features", "lumos.sample"]),
    ("parts", ["lumos.components", "lumos.data", "lumos.store", "lumos.settings", "lumos.workflow"]),
    ("networks", ["lumos.models", "lumos.diffusion"]),
    ("base", ["lumos.config", "lumos.utils", "lumos.viz", "lumos"]),
]
MAX_FUNCTION_LINES = 120


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest prefix that names `module` or a package above it."""
    best = None
    for i, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (i, prefix)
    if best is None:
        raise KeyError(f"{module} is in no layer of tests/test_layering.py: place it there (and in docs/design.md)")
    return best[0]


def imports(module: str, path: Path):
    """(line, imported lumos module) for every import in `path`, at any depth of the code."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            if target == "lumos" or target.startswith("lumos."):
                while target not in MODULES:  # an attribute of a module: the module
                    target = target.rpartition(".")[0]
                yield node.lineno, target


def graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for module, path in MODULES.items():
        g.add_node(module)
        for line, target in imports(module, path):
            if target != module:
                g.add_edge(module, target, line=line)
    return g


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_go_down_the_layers():
    g = graph()
    upward = [f"{a}:{d['line']} imports {b} ({LAYERS[layer_of(a)][0]} -> {LAYERS[layer_of(b)][0]})"
              for a, b, d in g.edges(data=True) if layer_of(b) < layer_of(a)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    cycles = list(nx.simple_cycles(graph()))
    assert not cycles, cycles


def test_no_function_over_the_limit():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, long


def test_the_checks_catch_what_they_guard(tmp_path, monkeypatch):
    """An upward import and a cycle, planted in a copy of the module table, are found."""
    fake = {"lumos.utils": tmp_path / "utils.py", "lumos.cli": tmp_path / "cli.py"}
    fake["lumos.utils"].write_text("def f():\n    from lumos.cli import main\n")
    fake["lumos.cli"].write_text("from lumos.utils import f\n")
    monkeypatch.setattr(__import__(__name__), "MODULES", fake)
    with pytest.raises(AssertionError, match=r"lumos.utils:2 imports lumos.cli \(base -> entry\)"):
        test_imports_go_down_the_layers()
    with pytest.raises(AssertionError, match="lumos"):
        test_no_import_cycle()


def imported_names(path: Path):
    """(line, module, name) for every `from lumos... import name` in `path`, at any depth of the code."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "lumos":
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, node.module, alias.name


def test_every_imported_name_exists():
    """An import inside a function runs only when the function does: a name dropped from a module
    must fail here, not in the one smoke job that calls that command."""
    import importlib

    files = [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "tests").rglob("*.py")]
    missing = []
    for path in sorted(files):
        for line, module, name in imported_names(path):
            mod = importlib.import_module(module)
            if not hasattr(mod, name) and f"{module}.{name}" not in MODULES:
                missing.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} has no {name}")
    assert not missing, "\n".join(missing)
