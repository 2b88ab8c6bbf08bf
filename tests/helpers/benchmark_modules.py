"""Importing a benchmark script (``benchmarks/`` is not a package) as a module for a test."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load_benchmark(relative: str, name: str) -> ModuleType:
    """The script at ``REPO / relative``, executed as a module called ``name``."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
