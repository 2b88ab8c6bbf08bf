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
    "descriptron_sam2pal.jobs.propagation",
    "descriptron_sam2pal.jobs.outputs",
    "descriptron_sam2pal.jobs.specimens",
    "descriptron_sam2pal.jobs.cluster",
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


def module_imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, relative level) of every import statement in a file that runs
    (imports under ``if TYPE_CHECKING:`` are for type checkers only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            out.append((node.module or "", [a.name for a in node.names], node.level))
        elif isinstance(node, ast.Import):
            out.extend((a.name, [], 0) for a in node.names)
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
}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_are_absolute_point_down_and_use_no_private_names(path):
    layer = path.relative_to(PACKAGE).parts[0] if len(path.relative_to(PACKAGE).parts) > 1 else None
    for module, names, level in module_imports(path):
        assert level == 0, f"relative import of {module!r}: use absolute imports (as SAM2 does)"
        for banned in FORBIDDEN.get(layer, ()):
            assert not (module == banned or module.startswith(banned + ".")), \
                f"{layer}/ must not import {banned} (see docs/design/layers.md)"
        if module.startswith("descriptron_sam2pal"):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, (
                f"imports private names {private} from {module}; make them public or keep them home"
            )


def test_every_import_of_our_names_resolves_including_the_lazy_ones():
    """Imports inside functions (torch and Qt load only when needed) fail only when run:
    check every ``from descriptron_sam2pal... import name`` of the package and benchmarks."""
    import importlib

    repo = PACKAGE.parent
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")) + sorted((repo / "benchmarks").rglob("*.py")):
        for module, names, level in module_imports(path):
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
