"""Open a specimen in Descriptron's own annotation GUI (the ``descriptron-gui`` package).

Descriptron's program takes an image (or folder) as its first argument and an
annotation file as its optional second (``descriptron-gui IMAGE ANNOTATIONS``).
Its launcher is found from the installed distribution's metadata (its console
script entry point), never by guessing: :func:`descriptron_command` builds the
command line, the workspace starts it detached.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Optional

DISTRIBUTION = "descriptron-gui"


@dataclass(frozen=True)
class DescriptronLauncher:
    """How to start Descriptron: ``argv`` before the specimen arguments."""

    argv: tuple[str, ...]
    version: str


def find_descriptron(distribution: str = DISTRIBUTION) -> Optional[DescriptronLauncher]:
    """The installed Descriptron GUI's launcher, or None when the package is not installed.

    Takes the distribution's console script (``descriptron-gui = descriptron_gui.cli:main``):
    its script file next to this Python, else on PATH, else ``python -c`` calling the
    entry point's function (what the script does).
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    scripts = [ep for ep in dist.entry_points if ep.group == "console_scripts"]
    if not scripts:
        return None
    ep = next((e for e in scripts if e.name == distribution), scripts[0])
    for candidate in (Path(sys.executable).parent / ep.name, Path(sys.executable).parent / f"{ep.name}.exe"):
        if candidate.is_file():
            return DescriptronLauncher((str(candidate),), dist.version)
    on_path = shutil.which(ep.name)
    if on_path:
        return DescriptronLauncher((on_path,), dist.version)
    module, _, attr = ep.value.partition(":")
    attr = attr.strip() or "main"
    code = f"import sys; from {module.strip()} import {attr.split('.')[0]} as _m; sys.exit(_m())"
    return DescriptronLauncher((sys.executable, "-c", code), dist.version)


def descriptron_command(launcher: DescriptronLauncher, image: str | Path,
                        annotations: str | Path | None = None) -> list[str]:
    """The command line that opens ``image`` in Descriptron, with ``annotations`` (a COCO
    .json) loaded as its second argument when given."""
    argv = list(launcher.argv) + [str(image)]
    if annotations is not None:
        argv.append(str(annotations))
    return argv
