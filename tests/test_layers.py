"""The shape of the code holds: what each layer may import, checked by importing it in a
fresh interpreter (as micro-sam does) and by reading every module's imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "descriptron_sam2pal"

#: Modules that must load without torch (fast, testable alone) and without Qt.
LIGHT = [
    "descriptron_sam2pal.store",
    "descriptron_sam2pal.store.merge",
    "descriptron_sam2pal.store.provenance",
    "descriptron_sam2pal.imaging",
    "descriptron_sam2pal.imaging.mask_png",
    "descriptron_sam2pal.plugin",
    "descriptron_sam2pal.host.api",
    "descriptron_sam2pal.jobs",
    "descriptron_sam2pal.jobs.models",
    "descriptron_sam2pal.jobs.templates",
    "descriptron_sam2pal.jobs.training",
    "descriptron_sam2pal.jobs.prompt_masks",
    "descriptron_sam2pal.jobs.checkpoint_download",
    "descriptron_sam2pal.jobs.evaluation",
    "descriptron_sam2pal.jobs.propagation",
    "descriptron_sam2pal.jobs.outputs",
    "descriptron_sam2pal.jobs.specimens",
    "descriptron_sam2pal.jobs.cluster",
    "descriptron_sam2pal.jobs.review",
    "descriptron_sam2pal.jobs.review_files",
    "descriptron_sam2pal.jobs.review_predictions",
    "descriptron_sam2pal.jobs.write_back",
    "descriptron_sam2pal.jobs.store_target",
    "descriptron_sam2pal.engine.results",
    "descriptron_sam2pal.engine.validation_plan",
    "descriptron_sam2pal.cli",
]


def loaded_after_import(modules: list[str]) -> set[str]:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            "print('\\n'.join(sorted({n.split('.')[0] for n in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_store_imaging_plugin_and_the_use_case_layer_load_without_torch_or_qt():
    loaded = loaded_after_import(LIGHT)
    assert "torch" not in loaded and "PyQt5" not in loaded and "sam2" not in loaded
    assert "ray" not in loaded  # the cluster executor imports it only when a run asks for it


def test_the_engine_and_the_model_load_without_qt():
    engine = sorted(f"descriptron_sam2pal.engine.{p.stem}" for p in (PACKAGE / "engine").glob("*.py")
                    if p.stem != "__init__")
    model = sorted(f"descriptron_sam2pal.model.{p.stem}" for p in (PACKAGE / "model").glob("*.py")
                   if p.stem != "__init__")
    loaded = loaded_after_import(engine + model)
    assert "torch" in loaded  # the check is real: these modules did load
    assert "PyQt5" not in loaded and "pyqtgraph" not in loaded


def module_imports(path: Path) -> list[tuple[str, list[str], int, str]]:
    """(module, imported names, relative level, where) of every import statement in a file that
    runs (imports under ``if TYPE_CHECKING:`` are for type checkers only); ``where`` is the
    enclosing function (``Class.method``, ``function``) or ``<module>``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
    out = []

    def visit(node: ast.AST, where: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if id(child) in typing_only:
                continue
            here = ".".join(where) or "<module>"
            if isinstance(child, ast.ImportFrom):
                out.append((child.module or "", [a.name for a in child.names], child.level, here))
            elif isinstance(child, ast.Import):
                out.extend((a.name, [], 0, here) for a in child.names)
            named = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            visit(child, where + [child.name] if named else where)

    visit(tree, [])
    return out


SOURCES = sorted(PACKAGE.rglob("*.py"))

#: layer folder -> top-level packages (of ours or third-party) it must never import
FORBIDDEN = {
    "store": (
        "torch",
        "sam2",
        "PyQt5",
        "pyqtgraph",
        "descriptron_sam2pal.engine",
        "descriptron_sam2pal.model",
        "descriptron_sam2pal.gui",
        "descriptron_sam2pal.app",
        "descriptron_sam2pal.jobs",
    ),
    "imaging": (
        "torch",
        "sam2",
        "PyQt5",
        "pyqtgraph",
        "descriptron_sam2pal.store",
        "descriptron_sam2pal.engine",
        "descriptron_sam2pal.model",
        "descriptron_sam2pal.gui",
        "descriptron_sam2pal.app",
        "descriptron_sam2pal.jobs",
    ),
    "model": (
        "PyQt5",
        "pyqtgraph",
        "descriptron_sam2pal.engine",
        "descriptron_sam2pal.gui",
        "descriptron_sam2pal.app",
        "descriptron_sam2pal.jobs",
    ),
    "engine": (
        "PyQt5",
        "pyqtgraph",
        "descriptron_sam2pal.gui",
        "descriptron_sam2pal.app",
        "descriptron_sam2pal.jobs",
    ),
    "jobs": ("PyQt5", "pyqtgraph", "descriptron_sam2pal.gui", "descriptron_sam2pal.app"),
    "gui": ("descriptron_sam2pal.app", "descriptron_sam2pal.cli"),
    "host": ("PyQt5", "descriptron_sam2pal.gui", "descriptron_sam2pal.app", "torch"),
    # The standalone workspace is a Qt host: it reaches the plugin's panels through gui/ and
    # the contract in host/, never the use cases, the store or the model directly.
    "app": (
        "torch",
        "sam2",
        "descriptron_sam2pal.store",
        "descriptron_sam2pal.imaging",
        "descriptron_sam2pal.engine",
        "descriptron_sam2pal.model",
        "descriptron_sam2pal.jobs",
        "descriptron_sam2pal.cli",
        "descriptron_sam2pal.plugin",
    ),
    # The command line is a face: it parses into a jobs/ request and drives it; no Qt, no GUI,
    # and the engine and the model only through jobs/.
    "cli.py": (
        "PyQt5",
        "pyqtgraph",
        "torch",
        "sam2",
        "descriptron_sam2pal.gui",
        "descriptron_sam2pal.app",
        "descriptron_sam2pal.plugin",
        "descriptron_sam2pal.engine",
        "descriptron_sam2pal.model",
    ),
    # The plugin registers gui/ panels with a host through host/; the work is theirs.
    "plugin.py": (
        "torch",
        "sam2",
        "descriptron_sam2pal.app",
        "descriptron_sam2pal.cli",
        "descriptron_sam2pal.jobs",
        "descriptron_sam2pal.engine",
        "descriptron_sam2pal.model",
        "descriptron_sam2pal.store",
        "descriptron_sam2pal.imaging",
    ),
    # Leaves everything imports: the standard library only.
    "atomic.py": ("torch", "sam2", "PyQt5", "pyqtgraph", "descriptron_sam2pal."),
    "__init__.py": ("torch", "sam2", "PyQt5", "pyqtgraph", "descriptron_sam2pal."),
}

#: Imports that break a rule above today, each named (file, enclosing function, module), so
#: that the test fails on any new one and the list can only shrink: issue 24 moves these
#: behind jobs/ (and gui/), then deletes their entries (a stale entry fails the test too).
KNOWN_VIOLATIONS: set[tuple[str, str, str]] = set()  # none left (issue 24); a new one fails the test

#: Deliberate exceptions (not violations): ``sam2pal gui`` starts the window, lazily, so the
#: command line still loads without Qt (see the fresh-interpreter test above).
ENTRY_POINTS = {
    ("cli.py", "cmd_gui", "descriptron_sam2pal.app.launch"),
    # torchvision's few start-up pieces in plain torch, loaded only inside Descriptron's own
    # process (app/descriptron_start.py), never in the workspace's
    ("app/torchvision_parts.py", "<module>", "torch"),
    ("app/torchvision_parts.py", "<module>", "torch.nn.functional"),
}


def room(path: Path) -> str:
    """The layer a source file belongs to: its top folder, or the file name at the top."""
    return path.relative_to(PACKAGE).parts[0]


def broken_rules(path: Path) -> list[tuple[str, str, str]]:
    """(file, where, module) of every import in ``path`` that its room forbids."""
    rel = path.relative_to(PACKAGE).as_posix()
    found = []
    for module, _, _, where in module_imports(path):
        for banned in FORBIDDEN[room(path)]:
            if module == banned or module.startswith(banned if banned.endswith(".") else banned + "."):
                found.append((rel, where, module))
    return found


def test_every_room_has_a_rule():
    assert sorted({room(p) for p in SOURCES} - set(FORBIDDEN)) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_are_absolute_point_down_and_use_no_private_names(path):
    for module, names, level, _ in module_imports(path):
        assert level == 0, f"relative import of {module!r}: use absolute imports (as SAM2 does)"
        if module.startswith("descriptron_sam2pal"):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, (
                f"imports private names {private} from {module}; make them public or keep them home"
            )
    new = [v for v in broken_rules(path) if v not in KNOWN_VIOLATIONS | ENTRY_POINTS]
    assert new == [], f"{room(path)} must not import these (see docs/design/layers.md): {new}"


def test_the_known_violations_are_still_there_so_the_list_only_shrinks():
    """When a known violation is fixed, delete its entry in KNOWN_VIOLATIONS."""
    found = {v for path in SOURCES for v in broken_rules(path)}
    assert sorted(KNOWN_VIOLATIONS - found) == []
    assert sorted(ENTRY_POINTS - found) == []


def test_every_import_of_our_names_resolves_including_the_lazy_ones():
    """Imports inside functions (torch and Qt load only when needed) fail only when run:
    check every ``from descriptron_sam2pal... import name`` of the package and benchmarks."""
    import importlib

    repo = PACKAGE.parent
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")) + sorted((repo / "benchmarks").rglob("*.py")):
        for module, names, level, _ in module_imports(path):
            if level or not module.startswith("descriptron_sam2pal"):
                continue
            target = importlib.import_module(module)
            for name in names:
                if name != "*" and not hasattr(target, name):
                    try:
                        importlib.import_module(f"{module}.{name}")
                    except ImportError:
                        missing.append(f"{path.relative_to(repo)}: {module}.{name}")
    assert missing == []
