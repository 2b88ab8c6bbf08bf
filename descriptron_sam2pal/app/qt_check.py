"""Before Qt starts: can its X11 ("xcb") platform plugin load? If not, say which system packages to install.

Qt's own message ("Could not load the Qt platform plugin "xcb" ... This
application failed to start") names no library and aborts the process. Here
the plugin's shared libraries are checked with ``ldd`` first (no Qt import, no
display needed), and a missing one is reported with the Debian/Ubuntu package
that provides it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: What the PyQt5 wheel's xcb plugin (Qt 5.15) needs from the system, Debian/Ubuntu names
#: (checked with ``ldd`` on libqxcb.so and libQt5XcbQpa.so.5).
XCB_PACKAGES = ("libxkbcommon-x11-0", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1", "libxcb-randr0",
                "libxcb-render-util0", "libxcb-xinerama0", "libxcb-xfixes0", "libxcb-shape0", "libxcb-xkb1",
                "libx11-xcb1", "libgl1", "libegl1", "libfontconfig1", "libdbus-1-3")

#: Shared library (soname) -> Debian/Ubuntu package, for the libraries Qt's xcb plugin loads.
LIBRARY_PACKAGES = {
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libXext.so.6": "libxext6",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def missing_from_ldd(output: str) -> list[str]:
    """The libraries ``ldd`` reports as "not found", in order, once each."""
    return list(dict.fromkeys(_NOT_FOUND.findall(output)))


def packages_for(libraries: list[str]) -> list[str]:
    """The Debian/Ubuntu packages that provide ``libraries`` (a library not in the table is named
    as it is, for the user to look up)."""
    return list(dict.fromkeys(LIBRARY_PACKAGES.get(lib, lib) for lib in libraries))


def xcb_plugin_files() -> list[Path]:
    """The PyQt5 wheel's xcb platform plugin and its Qt library ([] when not found)."""
    spec = importlib.util.find_spec("PyQt5")
    if spec is None or not spec.submodule_search_locations:
        return []
    qt = Path(list(spec.submodule_search_locations)[0]) / "Qt5"
    files = [qt / "plugins" / "platforms" / "libqxcb.so", qt / "lib" / "libQt5XcbQpa.so.5"]
    return [f for f in files if f.is_file()]


def missing_xcb_libraries() -> list[str]:
    """System libraries the xcb plugin needs and cannot find ([] if all are there or ldd is absent)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    missing: list[str] = []
    for f in xcb_plugin_files():
        try:
            out = subprocess.run([ldd, str(f)], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        missing += missing_from_ldd(out)
    return list(dict.fromkeys(missing))


def startup_problem(environ: dict | None = None, platform: str | None = None) -> str | None:
    """Why Qt's window system cannot start here, as a message saying what to do; None if it can
    (or if this is not Linux with the X11 "xcb" platform)."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    qpa = environ.get("QT_QPA_PLATFORM", "")
    if not platform.startswith("linux") or (qpa and not qpa.startswith("xcb")):
        return None
    if not qpa and environ.get("WAYLAND_DISPLAY") and not environ.get("DISPLAY"):
        return None  # Qt may choose Wayland; let it try
    missing = missing_xcb_libraries()
    if missing:
        packages = packages_for(missing)
        return ("Qt cannot open a window: its X11 platform plugin (\"xcb\") needs system libraries that "
                f"are not installed: {', '.join(missing)}.\n"
                f"On Debian/Ubuntu install them with:\n  sudo apt-get install {' '.join(packages)}\n"
                f"(everything the plugin needs: sudo apt-get install {' '.join(XCB_PACKAGES)})\n"
                "Without a screen (a server), run headless with QT_QPA_PLATFORM=offscreen, or use the "
                "command line (sam2pal --help).")
    if not environ.get("DISPLAY"):
        return ("Qt cannot open a window: no display (DISPLAY is not set). Start it from a desktop session, "
                "use ssh -X, run it under xvfb-run, or work headless with the command line (sam2pal --help).")
    return None
