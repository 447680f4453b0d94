"""The package's shape: imports flow one way (data → models → runs → evaluation → training / explain /
serving → experiments → demo → cli), no import cycle, every public name and docstring reference
resolves, options are keyword-only, and the shared facts live in the keras-free vocabulary.

The import graph is read from the source with :mod:`ast` (module-level and function-level imports
alike), so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "osteo_tf"
# Layers from the bottom: a package may import only from its own layer's modules and from lower layers.
LAYERS = (
    (
        "osteo_tf",
        "osteo_tf.vocabulary",
        "osteo_tf.errors",
        "osteo_tf.io",
        "osteo_tf.console",
        "osteo_tf.optional",
        "osteo_tf.demo_settings",
    ),
    ("osteo_tf.data",),
    ("osteo_tf.models",),
    ("osteo_tf.runs",),
    ("osteo_tf.evaluation",),
    ("osteo_tf.training", "osteo_tf.explain", "osteo_tf.serving", "osteo_tf.roi"),
    ("osteo_tf.experiments",),
    ("osteo_tf.demo",),
    ("osteo_tf.cli",),
)
# Light modules: importing them must not import Keras or TensorFlow.
LIGHT = (
    "osteo_tf.vocabulary",
    "osteo_tf.runs.config",
    "osteo_tf.runs.run_dir",
    "osteo_tf.runs.roi_run",
    "osteo_tf.data.landmarks",
    "osteo_tf.serving.spec",
    "osteo_tf.serving.client",
    "osteo_tf.experiments.config",
    "osteo_tf.data.manifest",
    "osteo_tf.cli",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _owner(name: str) -> str | None:
    """The project module an imported dotted name lives in (``osteo_tf.x.y.NAME`` → ``osteo_tf.x.y``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {
            owner for name in names if name.startswith("osteo_tf") and (owner := _owner(name)) not in (None, module)
        }
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _layer(module: str) -> int:
    for index, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") and m != "osteo_tf" for m in members):
            return index
    raise AssertionError(f"{module} is in no layer of LAYERS; add it")


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [module])


def test_imports_flow_one_way_along_the_layers():
    wrong = [
        f"{a} imports {b}"
        for a, targets in GRAPH.items()
        for b in targets
        if _layer(b) > _layer(a) or (_layer(b) == _layer(a) and _package(a) != _package(b) and _layer(a) > 0)
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_data_never_imports_the_models():
    assert not [
        (a, b)
        for a, targets in GRAPH.items()
        if a.startswith("osteo_tf.data")
        for b in targets
        if b.startswith("osteo_tf.models")
    ]


def test_every_module_imports_in_topological_order():
    order: list[str] = []

    def visit(module: str) -> None:
        if module not in order:
            for target in sorted(GRAPH[module]):
                visit(target)
            order.append(module)

    for module in MODULES:
        visit(module)
    code = "import importlib\nfor name in %r:\n    importlib.import_module(name)\nprint(len(%r))" % (order, order)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(len(MODULES))


def test_light_modules_import_neither_keras_nor_tensorflow():
    code = (
        f"import sys\nfor name in {LIGHT!r}:\n    __import__(name)\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("module", [m for m in MODULES if not m.rpartition(".")[2].startswith("_")])
def test_public_module_has_all_and_every_name_resolves(module):
    imported = importlib.import_module(module)
    assert hasattr(imported, "__all__"), f"{module} has no __all__"
    missing = [name for name in imported.__all__ if not hasattr(imported, name)]
    assert not missing, f"{module}.__all__ names what it does not hold: {missing}"


def test_the_top_level_names_resolve():
    import osteo_tf

    assert [name for name in osteo_tf.__all__ if getattr(osteo_tf, name, None) is None] == []
    from importlib.metadata import version

    assert osteo_tf.__version__ == version("osteo_tf")


_ROLE = re.compile(r":(?:mod|func|class|meth|data|attr|exc):`~?([A-Za-z_.][\w.]*)`")


def _resolves(reference: str, module: str, is_package: bool) -> bool:
    if reference.startswith("."):
        package = module if is_package else module.rpartition(".")[0]
        candidates = [package + reference]
    else:
        candidates = [reference, f"{module}.{reference}", f"{module.rpartition('.')[0]}.{reference}"]
        imported = importlib.import_module(module)  # a method named inside its class's docstring
        candidates += [
            f"{module}.{name}.{reference}" for name, value in vars(imported).items() if isinstance(value, type)
        ]
    for candidate in candidates:
        parts = candidate.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                target = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attribute in parts[cut:]:
                    target = getattr(target, attribute)
                return True
            except AttributeError:
                break
    return False


def test_every_docstring_reference_resolves():
    broken = []
    for module, path in MODULES.items():
        text = path.read_text()
        for match in _ROLE.finditer(text):
            if not _resolves(match.group(1), module, path.name == "__init__.py"):
                broken.append(
                    f"{path.relative_to(PACKAGE.parent)}:{text[: match.start()].count(chr(10)) + 1}: {match.group(0)}"
                )
        assert "DESIGN.md" not in text, f"{path} cites DESIGN.md, which is not in the repository"
    assert not broken, "\n".join(broken)


def test_options_after_the_third_parameter_are_keyword_only():
    """scikit-learn's rule: in a call of more than three parameters, options (parameters with a
    default) after the third are keyword-only."""
    positional_options = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                params = node.args.posonlyargs + node.args.args
                params = params[1:] if params and params[0].arg in ("self", "cls") else params
                first_default = len(params) - len(node.args.defaults)
                late = [p.arg for i, p in enumerate(params) if i >= max(3, first_default)]
                if late:
                    positional_options.append(f"{module}.{node.name}: {', '.join(late)}")
    assert not positional_options, "\n".join(positional_options)


def test_library_code_leaves_the_matplotlib_backend_alone():
    assert [m for m, p in MODULES.items() if "matplotlib.use(" in p.read_text()] == []


def test_one_optional_import_helper():
    hand_written = [
        m
        for m, p in MODULES.items()
        if m != "osteo_tf.optional" and re.search(r"try:\s+import (pydicom|ray|torch)\b", p.read_text())
    ]
    assert hand_written == []


def test_every_source_file_is_tracked_by_git():
    """A module that .gitignore hides (``runs/`` once hid ``osteo_tf/runs/``) passes here and is missing in a clone."""
    root = PACKAGE.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "osteo_tf", "tests", "bench", "examples"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert [line for line in result.stdout.splitlines() if line.endswith(".py")] == []
