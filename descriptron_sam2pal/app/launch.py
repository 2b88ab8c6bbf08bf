"""Start the standalone Descriptron workspace: ``sam2pal gui [PROJECT]``."""

from __future__ import annotations

import argparse
import logging
import sys

from PyQt5.QtCore import QCoreApplication, Qt, QTimer
from PyQt5.QtWidgets import QApplication

from descriptron_sam2pal.app.qt_check import startup_problem
from descriptron_sam2pal.gui.workers import running_workers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sam2pal gui",
        description="Open the Descriptron workspace: browse specimen images with their "
                    "annotations and run the SAM2-PAL plugin.")
    parser.add_argument("project", nargs="?",
                        help="a folder of specimen images (with Descriptron annotation files) "
                             "or a Descriptron .json/.rlejson annotation file")
    parser.add_argument("--no-plugins", action="store_true",
                        help="do not load plugins (to tell a plugin problem from a workspace one)")
    return parser


def run(project: str | None = None, plugins: bool = True) -> int:
    """Create the application and the workspace, load plugins, open ``project``, run the event loop."""
    # Imports the store and imaging stacks: after Qt is up.
    from descriptron_sam2pal.app.workspace import Workspace

    if QApplication.instance() is None:
        problem = startup_problem()
        if problem:  # Qt would abort with a message that names no library
            print(problem, file=sys.stderr)
            return 2
        QCoreApplication.setAttribute(Qt.AA_EnableHighDpiScaling, True)
        QCoreApplication.setAttribute(Qt.AA_UseHighDpiPixmaps, True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("Descriptron")
    app.setApplicationName("sam2pal")

    window = Workspace()
    if plugins:
        window.load_plugins()
        window.fit_to_screen()  # the panels may need more room: still within the screen
    window.show()
    if project:
        # After the event loop starts, so an error dialog has a visible window behind it.
        QTimer.singleShot(0, lambda: window.open_path(project))
    code = app.exec_()
    for worker in running_workers():  # closing already stopped them; join what remains
        worker.cancel()
        worker.wait()
    return code


def main(argv: list[str] | None = None) -> int:
    """``sam2pal gui [PROJECT] [--no-plugins]``; ``argv`` excludes the program and "gui"."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(args.project, plugins=not args.no_plugins)


if __name__ == "__main__":
    sys.exit(main())
