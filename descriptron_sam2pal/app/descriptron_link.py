"""Open a specimen in Descriptron's own annotation GUI (the ``descriptron-gui`` package).

Descriptron's program takes an image (or folder) as its first argument and an
annotation file as its optional second (``descriptron-gui IMAGE ANNOTATIONS``).
It is started in this Python through :mod:`descriptron_sam2pal.app.descriptron_start`,
which calls the installed distribution's console script function after supplying the
torchvision pieces SAM2 needs (install.sh installs Descriptron with ``--no-deps`` and no
torchvision, so its own ``descriptron-gui`` script stops at once). :func:`failure_advice`
turns what the program printed before it stopped into a reason and a fix for a dialog.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Optional

DISTRIBUTION = "descriptron-gui"
VERSION = "2.8.2"
STARTER = "descriptron_sam2pal.app.descriptron_start"


def install_command() -> str:
    """How to install Descriptron's GUI into this Python (what install.sh does): ``--no-deps``
    because its dependencies pin a CUDA torch and torchvision (gigabytes) that would replace ours."""
    return f"{sys.executable} -m pip install --no-deps {DISTRIBUTION}=={VERSION}"


@dataclass(frozen=True)
class DescriptronLauncher:
    """How to start Descriptron: ``argv`` before the specimen arguments."""

    argv: tuple[str, ...]
    version: str


def find_descriptron(distribution: str = DISTRIBUTION) -> Optional[DescriptronLauncher]:
    """The installed Descriptron GUI's launcher, or None when the package is not installed
    (or has no program: no console script). It runs :mod:`app.descriptron_start` in this Python."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    if not any(ep.group == "console_scripts" for ep in dist.entry_points):
        return None
    return DescriptronLauncher((sys.executable, "-m", STARTER), dist.version)


def descriptron_command(
    launcher: DescriptronLauncher, image: str | Path, annotations: str | Path | None = None
) -> list[str]:
    """The command line that opens ``image`` in Descriptron, with ``annotations`` (a COCO
    .json) loaded as its second argument when given."""
    argv = list(launcher.argv) + [str(image)]
    if annotations is not None:
        argv.append(str(annotations))
    return argv


@dataclass(frozen=True)
class Failure:
    """Why Descriptron's program stopped and what to do about it, for a dialog."""

    reason: str
    fix: str


_MISSING_MODULE = re.compile(r"No module named '([\w.]+)'")


def failure_advice(output: str, returncode: int) -> Failure:
    """The reason and the fix for a Descriptron program that stopped with ``returncode``
    after printing ``output`` (its stdout and stderr together)."""
    text = output or ""
    if "no display name" in text or "couldn't connect to display" in text:
        return Failure(
            "Descriptron's window (a Tk window) found no display to open on.",
            "Start the workspace from a desktop session (X11, or Wayland with XWayland); "
            "over SSH connect with ssh -X; on a server without a screen run it under xvfb-run.",
        )
    if (
        "tkinter is missing" in text
        or "No module named '_tkinter'" in text
        or "No module named 'tkinter'" in text
    ):
        return Failure(
            "This Python has no Tk (tkinter), which Descriptron's window is made with.",
            "Install it and try again: sudo apt install python3-tk (Debian/Ubuntu), "
            "sudo dnf install python3-tkinter (Fedora/RHEL); on macOS and Windows it comes with Python.",
        )
    if "DESCRIPTRON_SAM2_CHECKPOINT points to a missing file" in text:
        return Failure(
            "DESCRIPTRON_SAM2_CHECKPOINT names a SAM2 model file that does not exist.",
            "Point DESCRIPTRON_SAM2_CHECKPOINT at sam2_hiera_large.pt, or unset it so Descriptron "
            "looks in ~/.cache/descriptron/sam2/.",
        )
    if "No SAM2 checkpoint" in text:
        return Failure(
            "Descriptron needs its SAM2 model (sam2_hiera_large.pt, 898 MB) and it was not downloaded.",
            "Open in Descriptron again and answer Yes when it asks to download the model, or put "
            "sam2_hiera_large.pt in ~/.cache/descriptron/sam2/ (or set DESCRIPTRON_SAM2_CHECKPOINT).",
        )
    missing = _MISSING_MODULE.findall(text)
    if missing:
        module = missing[-1].split(".")[0]
        return Failure(
            f"Descriptron needs the Python package '{module}', which is not installed here.",
            f"{sys.executable} -m pip install {module}   (then try again)",
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else f"it printed nothing (exit code {returncode})"
    return Failure(
        f"Descriptron stopped: {last}",
        "Read its full output under Show Details; to see it live, run the command shown there in a terminal.",
    )
