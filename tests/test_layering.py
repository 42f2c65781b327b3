"""The import graph of edgefer/ reads top-down: no import cycle, and no module imports one of a higher layer.

The graph is read from the source with ``ast``, not by importing it. Every ``import`` / ``from ... import``
statement counts, wherever it stands: at module level, inside a function (a lazy import) or under
``if TYPE_CHECKING:``. An import of ``edgefer.a.b`` is an edge to ``edgefer.a.b``; ``from edgefer.a import b``
is an edge to the submodule ``edgefer.a.b`` when it exists, else to ``edgefer.a``. Not counted: imports by a
string (``importlib.import_module``: the CLI's subcommand table, ``edgefer.export``'s re-export table,
``edgefer.runtime.base.BACKENDS``) and the implicit import of a package's ``__init__`` when one of its
submodules is imported (each ``__init__``'s own imports are counted like any module's). Registries that name a
module in a whole string (``"edgefer.runtime.onnxrt:OnnxRuntimeBackend"``) are checked for direction separately;
``edgefer.export``'s lazy re-export table names submodules by their short names and is not checked.

The layers are declared once, in ``LAYERS``, lowest first. A name is a module or package under edgefer/
(``"export.search"`` = edgefer/export/search and everything in it; ``"edgefer"`` = edgefer/__init__.py); a
module belongs to the layer of its longest declared name. A module may import its own layer (the cycle check
keeps that acyclic) and any layer below.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "edgefer"

LAYERS = (
    ("errors", "logs", "compat"),
    ("edgefer", "spec", "labels", "fileio", "bounds", "progress", "metrics", "env"),  # env: the machine description
    ("preprocess", "data", "models"),
    ("runtime",),
    ("train", "artefacts"),  # artefacts: what a model file is (edgefer info)
    ("export",),  # conversions, quantizers, calibration, checks, the export's config and result
    ("qat",),  # quantization-aware fine-tuning: below the search, which runs it as one stage
    ("export.search", "export.steps", "export.pipeline"),  # the INT8 search, the step registry, the pipeline
    ("bench", "serve"),
    ("cli",),
)

# edgefer.runtime: numpy (and the standard library) at module level; the inference runtime a backend wraps is
# imported inside its functions, when a model is opened. Third-party names the runtime may import lazily:
RUNTIME_LAZY = {"onnxruntime", "openvino", "tensorrt", "cuda", "cv2"}  # cuda: TensorRT's CUDA bindings
BACKEND_RUNTIMES = {"onnxrt": {"onnxruntime"}, "openvino": {"openvino"}, "tensorrt": {"tensorrt", "cuda"}}


# ---- reading the graph --------------------------------------------------------------------------------------


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under ``root`` (a package directory)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(module: str, node: ast.AST, is_package: bool, known: dict) -> list[str]:
    """Absolute module names one import statement names (submodules resolved where they exist)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module
    return [f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target for alias in node.names]


def import_sites(root: Path):
    """(module, imported name, lineno, at module level) for every import statement under ``root``."""
    known = modules(root)
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        top = {id(n) for n in tree.body}
        top |= {id(n) for stmt in tree.body if isinstance(stmt, (ast.If, ast.Try)) for n in ast.walk(stmt)
                if isinstance(n, (ast.Import, ast.ImportFrom))}  # try/except ImportError and TYPE_CHECKING blocks
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in _imported(module, node, path.name == "__init__.py", known):
                    yield module, name, node.lineno, id(node) in top


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """module -> {imported module of the same package: first line}, over every import statement."""
    known = modules(root)
    graph: dict[str, dict[str, int]] = {m: {} for m in known}
    for module, name, line, _ in import_sites(root):
        if name != root.name and not name.startswith(root.name + "."):
            continue
        while name not in known:  # edgefer.x.attr -> edgefer.x
            name = name.rpartition(".")[0]
        if name != module:
            graph[module].setdefault(name, line)
    return graph


# ---- the checks ---------------------------------------------------------------------------------------------


def cycles(graph: dict[str, dict]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def layer_of(module: str, layers=LAYERS, package: str = "edgefer") -> int | None:
    """The index of the layer declaring the longest name that contains ``module``; None when none does."""
    best, best_len = None, -1
    for i, names in enumerate(layers):
        for name in names:
            if name == package:  # the package's own __init__, not everything in it
                matches, full = module == package, package
            else:
                full = f"{package}.{name}"
                matches = module == full or module.startswith(full + ".")
            if matches and len(full) > best_len:
                best, best_len = i, len(full)
    return best


def upward(graph: dict[str, dict], layers=LAYERS, package: str = "edgefer") -> list[str]:
    """Every import of a module in a higher layer, as 'module (layer) -> imported (layer), line N'."""
    out = []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module, layers, package)
        for target, line in sorted(targets.items()):
            theirs = layer_of(target, layers, package)
            if mine is not None and theirs is not None and theirs > mine:
                out.append(f"{module} (layer {mine}) -> {target} (layer {theirs}), line {line}")
    return out


# ---- the import graph of edgefer/ ---------------------------------------------------------------------------


def test_every_module_has_a_layer():
    undeclared = sorted(m for m in modules(ROOT) if layer_of(m) is None)
    assert not undeclared, f"add these modules to LAYERS in {Path(__file__).name}: {undeclared}"


def test_no_import_cycle():
    assert cycles(import_graph(ROOT)) == []


def test_no_import_from_a_lower_layer_to_a_higher_one():
    assert upward(import_graph(ROOT)) == []


def named_by_string(root: Path) -> dict[str, dict[str, int]]:
    """module -> {module named by a whole string constant such as "edgefer.runtime.onnxrt:OnnxRuntimeBackend":
    line}: the registries imported with ``importlib.import_module`` (CLI commands, runtime backends, quantizers)."""
    known = modules(root)
    pattern = re.compile(rf"^({re.escape(root.name)}(?:\.\w+)+)(?::\w+)?$")
    graph: dict[str, dict[str, int]] = {m: {} for m in known}
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (match := pattern.match(node.value)):
                name = match.group(1)
                while name not in known and "." in name:
                    name = name.rpartition(".")[0]
                if name in known and name != module:
                    graph[module].setdefault(name, node.lineno)
    return graph


def test_registries_name_modules_of_their_own_layer_or_below():
    named = named_by_string(ROOT)
    assert named["edgefer.runtime.base"]  # the check sees the backend registry
    assert upward(named) == []


# ---- the checker catches what it should (graph fixtures and a temporary package) ----------------------------


def test_cycles_are_found_in_a_graph_fixture():
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}, "c": {"b": 1}}) == []


def test_a_module_nobody_declared_has_no_layer():
    assert layer_of("edgefer") == 1 and layer_of("edgefer.export.search.loop") == 7
    assert layer_of("edgefer.newmodule") is None and layer_of("edgefer.exporter") is None


def test_an_upward_import_is_found_in_a_graph_fixture():
    graph = {"edgefer.spec": {"edgefer.cli.info": 3}, "edgefer.cli.info": {"edgefer.spec": 1},
             "edgefer.export.config": {"edgefer.export.steps": 7}}
    assert upward(graph) == ["edgefer.export.config (layer 5) -> edgefer.export.steps (layer 7), line 7",
                             "edgefer.spec (layer 1) -> edgefer.cli.info (layer 9), line 3"]


def test_a_cycle_through_a_lazy_relative_import_in_a_temporary_package_is_found(tmp_path):
    package = tmp_path / "edgefer"
    (package / "export").mkdir(parents=True)
    files = {
        "__init__.py": "from .errors import EdgeferError\n",
        "errors.py": "class EdgeferError(Exception):\n    pass\n",
        "export/__init__.py": "",
        "export/config.py": "from ..errors import EdgeferError\n\n\ndef validate():\n"
                            "    from .steps import STEPS  # lazy: still an edge\n    return STEPS\n",
        "export/steps.py": "from . import config\n\nSTEPS = {}\n",
    }
    for name, text in files.items():
        (package / name).write_text(textwrap.dedent(text))
    graph = import_graph(package)
    assert graph["edgefer.export.config"] == {"edgefer.errors": 1, "edgefer.export.steps": 5}
    assert graph["edgefer.export.steps"] == {"edgefer.export.config": 1}
    assert cycles(graph) == [["edgefer.export.config", "edgefer.export.steps"]]
    assert upward(graph) == ["edgefer.export.config (layer 5) -> edgefer.export.steps (layer 7), line 5"]
    (package / "export/config.py").write_text("from ..errors import EdgeferError\n")  # the import removed
    assert cycles(import_graph(package)) == [] and upward(import_graph(package)) == []


# ---- edgefer.runtime: numpy and one inference runtime ---------------------------------------------------------


def _third_party(name: str) -> str | None:
    top = name.partition(".")[0]
    return None if top == "edgefer" or top in sys.stdlib_module_names or top == "__future__" else top


def _runtime_strings(path: Path) -> set[str]:
    """Modules a file imports by name: ``require("x", ...)`` and ``importlib.import_module("x")``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("require", "import_module"):
                names.add(node.args[0].value)
    return names


def test_the_runtime_imports_numpy_at_module_level_and_one_runtime_per_backend():
    known = modules(ROOT)
    graph = import_graph(ROOT)
    runtime = {m for m in known if m == "edgefer.runtime" or m.startswith("edgefer.runtime.")}
    reached, todo = set(), list(runtime)  # the runtime and every edgefer module it imports
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += graph[module]
    eager, lazy = {}, {}
    for module, name, _, top in import_sites(ROOT):
        package = _third_party(name)
        if package is not None and module in reached:
            (eager if top else lazy).setdefault(module, set()).add(package)
    assert {m: p for m, p in eager.items() if p != {"numpy"}} == {}, "module-level imports other than numpy"
    for module in runtime:
        names = lazy.get(module, set()) | {p for s in _runtime_strings(known[module]) if (p := _third_party(s))}
        assert names <= RUNTIME_LAZY, f"{module} imports {sorted(names - RUNTIME_LAZY)}"
        backend = module.rpartition(".")[2]
        if backend in BACKEND_RUNTIMES:  # a backend imports the runtime it wraps, and no other
            assert names == BACKEND_RUNTIMES[backend], f"{module} imports {sorted(names)}"
    assert not {p for m in reached - runtime for p in lazy.get(m, set())}, "what the runtime imports stays light"


def test_importing_the_runtime_loads_no_inference_runtime():
    code = ("import sys, edgefer.runtime; print(sorted(m for m in ('onnxruntime', 'openvino', 'tensorrt', 'torch', "
            "'timm', 'click', 'cv2', 'onnx') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

