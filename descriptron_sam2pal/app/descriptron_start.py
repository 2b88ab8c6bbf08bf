"""Start Descriptron's own program in this Python:
``python -m descriptron_sam2pal.app.descriptron_start IMAGE [ANNOTATIONS]``.

What File > Open in Descriptron runs. It registers the torchvision pieces SAM2 needs
(:mod:`descriptron_sam2pal.app.torchvision_parts`) when no torchvision is installed,
then calls the ``descriptron-gui`` console script's function (found from the installed
distribution's metadata) with the same arguments, so Descriptron starts exactly as its
own ``descriptron-gui IMAGE ANNOTATIONS`` does, against our CPU torch.
"""

from __future__ import annotations

import sys
from importlib import metadata

from descriptron_sam2pal.app.torchvision_parts import install

DISTRIBUTION = "descriptron-gui"


def entry_point(distribution: str = DISTRIBUTION) -> metadata.EntryPoint:
    """The distribution's console script of its own name (else its first one)."""
    scripts = [ep for ep in metadata.distribution(distribution).entry_points if ep.group == "console_scripts"]
    if not scripts:
        raise SystemExit(f"{distribution} is installed without a program to start (no console script).")
    return next((e for e in scripts if e.name == distribution), scripts[0])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        script = entry_point()
    except metadata.PackageNotFoundError:
        raise SystemExit(
            f"{DISTRIBUTION} is not installed in this Python ({sys.executable}): "
            f"pip install --no-deps {DISTRIBUTION}"
        ) from None
    install()
    sys.argv = [script.name, *args]
    result = script.load()()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
