"""The standalone Descriptron workspace: a Qt main window that implements the host contract.

It opens a folder of specimen images with their Descriptron annotation files
(or one annotation file), lists the images, shows the current one with its
structures, loads plugins through ``host/api.py`` and saves through the store.
Image files are decoded in a background worker, so browsing never blocks.

Its parts live beside it: the start page (``start_page``), the Images panel (``image_list``),
the plugins' dock panels and the central views (``panel_docks``), plugin menu paths (``menus``),
the Help dialogs (``help_dialogs``) and the hand-off to Descriptron (``descriptron_handoff``);
the project's store and its photo folders are opened through ``gui.project_folder``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
from PyQt5.QtCore import QRect, QSettings, QSize, Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QKeySequence
from PyQt5.QtWidgets import (
    QAction,
    QDialog,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QToolButton,
    QWidget,
)

from descriptron_sam2pal import UserError
from descriptron_sam2pal.app.callbacks import Callbacks
from descriptron_sam2pal.app.descriptron_handoff import DescriptronHandoff
from descriptron_sam2pal.app.descriptron_process import DescriptronRun
from descriptron_sam2pal.app.help_dialogs import plugins_dialog, user_guide_dialog, warnings_dialog
from descriptron_sam2pal.app.image_list import ImageListPanel
from descriptron_sam2pal.app.menus import menu_for_path, strip_mnemonic
from descriptron_sam2pal.app.panel_docks import CentralArea, PanelDocks
from descriptron_sam2pal.app.start_page import StartPage
from descriptron_sam2pal.gui.canvas import ImageCanvas, shared_colors
from descriptron_sam2pal.gui.errors import shown_errors
from descriptron_sam2pal.gui.fitting import fit_to_screen
from descriptron_sam2pal.gui.image_loader import LatestImageLoader
from descriptron_sam2pal.gui.project_folder import image_subfolders, open_project, photo_count, photos
from descriptron_sam2pal.gui.workers import running_work
from descriptron_sam2pal.host import api

if TYPE_CHECKING:
    from descriptron_sam2pal.store import AnnotationStore

log = logging.getLogger(__name__)

#: A save waits at most this long for another program (a `sam2pal propagate --write-to`) holding
#: the store's lock; then it says so, and the changes stay in the window.
SAVE_LOCK_WAIT_S = 3


def ask_which_photos(parent: QWidget, path: str | os.PathLike) -> tuple[Any, list[tuple[Path, int]]] | None:
    """Which photos to open for ``path``: (the folder or file to open, the sub-folders of photos
    left out), or None when the user cancels. A folder with photos in sub-folders asks which to
    open (the folder's own photos are one choice when it has some; a chosen sub-folder may ask
    again), so no photo is left out without a word."""
    while True:
        subfolders = image_subfolders(path)
        if not subfolders:
            return path, []
        own = photo_count(path)
        names = [f"{sub.name}  ({photos(n)})" for sub, n in subfolders]
        elsewhere = sum(n for _, n in subfolders)
        if own:
            names.insert(0, f"{Path(path).name} itself  ({photos(own)}, without its sub-folders)")
            label = (
                f"{Path(path).name} has {photos(own)} and {photos(elsewhere)} more in "
                f"{len(subfolders)} sub-folder{'s' * (len(subfolders) != 1)}. Open which?"
            )
        else:
            label = f"{Path(path).name} has its photos in sub-folders. Open which?"
        choice, ok = QInputDialog.getItem(parent, "Open a sub-folder", label, names, 0, False)
        if not ok:
            return None
        index = names.index(choice) - (1 if own else 0)
        if index < 0:
            return path, subfolders
        path = subfolders[index][0]  # a sub-folder: it may have sub-folders of its own


class Workspace(QMainWindow):
    """Main window of ``sam2pal gui``; implements :class:`descriptron_sam2pal.host.api.Host`."""

    api_version = api.HOST_API_VERSION

    #: Qt-side twins of the contract's callbacks, for code that prefers signals.
    store_changed = pyqtSignal(object)
    current_image_changed = pyqtSignal(object)

    def __init__(self, parent: QWidget | None = None, settings: QSettings | None = None) -> None:
        super().__init__(parent)
        self.settings = settings if settings is not None else QSettings("Descriptron", "sam2pal")
        self.setWindowTitle("Descriptron workspace[*]")
        self._store: AnnotationStore | None = None
        self._records: list = []
        self._row_of: dict[Any, int] = {}
        self._current = None
        self._pixels: np.ndarray | None = None
        self.image_loader = LatestImageLoader(self)
        self.image_loader.loaded.connect(self._on_pixels)
        self.image_loader.failed.connect(self._on_pixels_error)
        self._loading_message = ""
        self._store_callbacks, self._image_callbacks, self._click_callbacks, self._box_callbacks = (
            Callbacks(self._callback_failed) for _ in range(4)
        )
        self._proposal: tuple[str, np.ndarray] | None = None  # CanvasHost.show_proposal
        running_work.changed.connect(self._on_work_changed)
        self._close_plan: dict | None = None
        self.plugin_results: list[api.PluginLoadResult] = []
        self._panels_fitted = False
        self.descriptron = DescriptronHandoff(self, self._settle_unsaved)

        shared_colors().use_settings(self.settings)  # one colour per structure, kept between runs
        self.canvas = ImageCanvas(colors=shared_colors())
        self.canvas.set_message("File > Open folder... to start")
        self.canvas.hovered.connect(self._on_hover)
        self.canvas.clicked.connect(self._click_callbacks)
        self.canvas.box_drawn.connect(self._box_callbacks)
        self.start_page = self._build_start_page()
        self.central = CentralArea(self.canvas, self.start_page, project_open=lambda: self._store is not None)
        self.setCentralWidget(self.central)
        self._build_image_dock()
        self._build_menus()
        self.docks = PanelDocks(self, self.panels_menu, self.central)
        self._build_status_bar()
        self._update_actions()
        self.fit_to_screen()

    #: The window's size where the screen has room for it.
    PREFERRED_SIZE = QSize(1280, 820)

    def fit_to_screen(self, available: QRect | None = None) -> QSize:
        """Open at :attr:`PREFERRED_SIZE`, or smaller and centred where the screen (``available``,
        default the window's screen without its task bars) is smaller: the panels' tab bar at the
        bottom stays on the screen (call again after adding panels)."""
        return fit_to_screen(self, self.PREFERRED_SIZE, available, place=True)

    # ------------------------------------------------------------------ UI
    def _build_image_dock(self) -> None:
        self.image_panel = ImageListPanel()
        self.image_panel.chosen.connect(self._on_list_selection)
        self.image_list = self.image_panel.image_list  # tests and the screenshot script click it
        self.images_dock = QDockWidget("Images")
        self.images_dock.setObjectName("images")
        self.images_dock.setWidget(self.image_panel)
        self.images_dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(Qt.LeftDockWidgetArea, self.images_dock)

    def _build_start_page(self) -> StartPage:
        """What the window shows before a project is open."""
        page = StartPage(self.settings.value("last_project", "", str))
        page.open_button.clicked.connect(self._ask_open_folder)
        page.file_button.clicked.connect(self._ask_open_file)
        page.last_button.clicked.connect(lambda: self.open_path(self.settings.value("last_project", "", str)))
        page.guide_button.clicked.connect(self.show_user_guide)
        return page

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.setToolTipsVisible(True)  # Open in Descriptron says how to install it
        self.open_folder_action = file_menu.addAction("Open &folder...", self._ask_open_folder)
        self.open_folder_action.setShortcut(QKeySequence("Ctrl+O"))
        self.open_file_action = file_menu.addAction("Open annotation &file...", self._ask_open_file)
        self.open_file_action.setShortcut(QKeySequence("Ctrl+Shift+O"))
        file_menu.addSeparator()
        self.save_action = file_menu.addAction("&Save", self._save_from_menu)
        self.save_action.setShortcut(QKeySequence.Save)
        file_menu.addSeparator()
        self.descriptron_action = file_menu.addAction("Open in &Descriptron", self.open_in_descriptron)
        self.descriptron_action.setShortcut(QKeySequence("Ctrl+Shift+D"))
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit", self.close)
        quit_action.setShortcut(QKeySequence("Ctrl+Q"))

        view = bar.addMenu("&View")
        self.next_action = view.addAction("&Next image", lambda: self.image_panel.step(+1))
        self.next_action.setShortcuts([QKeySequence(Qt.Key_PageDown), QKeySequence("]")])
        self.prev_action = view.addAction("&Previous image", lambda: self.image_panel.step(-1))
        self.prev_action.setShortcuts([QKeySequence(Qt.Key_PageUp), QKeySequence("[")])
        fit = view.addAction("&Fit image", self.canvas.fit)
        fit.setShortcut(QKeySequence("Ctrl+0"))
        view.addSeparator()
        self.panels_menu = view.addMenu("Panels")
        self.panels_menu.addAction(self.images_dock.toggleViewAction())

        self.help_menu = bar.addMenu("&Help")
        self.guide_action = self.help_menu.addAction("&User guide", self.show_user_guide)
        self.guide_action.setShortcut(QKeySequence.HelpContents)
        self.plugins_action = self.help_menu.addAction("&Plugins...", self.show_plugins_dialog)
        self.warnings_action = self.help_menu.addAction("Store &warnings...", self.show_warnings_dialog)

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.position_label = QLabel("")
        self.tasks_label = QLabel("")
        self.plugin_button = QToolButton()
        self.plugin_button.setAutoRaise(True)
        self.plugin_button.clicked.connect(self.show_plugins_dialog)
        self.plugin_button.hide()
        for widget in (self.tasks_label, self.position_label, self.plugin_button):
            status.addPermanentWidget(widget)

    def _update_actions(self) -> None:
        has_store = self._store is not None
        self.save_action.setEnabled(has_store)
        self.next_action.setEnabled(has_store)
        self.prev_action.setEnabled(has_store)
        self.warnings_action.setEnabled(bool(has_store and self._store.warnings))
        self.descriptron.describe(self.descriptron_action, self._current)
        self.setWindowModified(self.is_modified())
        name = f" \u2014 {self._store_name()}" if has_store else ""
        self.setWindowTitle(f"Descriptron workspace{name}[*]")
        announced = running_work.announced()  # registered and not finished: running or about to start
        self.tasks_label.setText(f"Running: {', '.join(map(self._describe, announced))}" if announced else "")

    def _store_name(self) -> str:
        path = getattr(self._store, "path", None)
        return Path(path).name if path else "untitled"

    # ------------------------------------------------------------ Host: UI
    def main_window(self) -> QWidget:
        return self

    def add_menu_action(
        self, menu: str, text: str, callback: Callable[[], Any], shortcut: Optional[str] = None
    ) -> QAction:
        target = menu_for_path(self.menuBar(), menu, before=self.help_menu)
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _checked=False: self._run_plugin_callback(text, callback))
        target.addAction(action)
        return action

    def _run_plugin_callback(self, text: str, callback: Callable[[], Any]) -> None:
        shown_errors(self, strip_mnemonic(text), callback)  # a plugin's bug must not close the window

    def add_dock_panel(self, title: str, widget: QWidget, area: str = "right") -> QDockWidget:
        return self.docks.add(title, widget, area)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._panels_fitted:
            self._panels_fitted = True
            QTimer.singleShot(0, self.docks.fit_shown)

    def show_error(self, title: str, message: str, details: str = "") -> None:
        box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, self)
        if details:
            box.setDetailedText(details)
        box.exec_()

    def show_status(self, message: str, timeout_ms: int = 5000) -> None:
        self.statusBar().showMessage(message, timeout_ms)

    # --------------------------------------------------------- Host: store
    @property
    def store(self) -> AnnotationStore | None:
        return self._store

    def is_modified(self) -> bool:
        """The open store has changes not saved yet."""
        return self._store is not None and self._store.is_dirty

    def open_store(self, path: str) -> AnnotationStore | None:
        if not self._settle_unsaved("open another project"):
            return None
        store = open_project(path, SAVE_LOCK_WAIT_S)  # StoreError leaves the current store in place
        self._set_store(store)
        self.settings.setValue("last_dir", str(Path(path).parent if Path(path).is_file() else path))
        self.settings.setValue("last_project", str(path))
        return store

    def save_store(self) -> None:
        if self._store is None:
            raise UserError("Nothing to save: open a folder or an annotation file first.")
        before = len(self._store.session_files)
        written = self._store.save()
        self._update_actions()
        sessions = self._store.session_files[before:]
        self.show_status(
            (f"Saved {len(written)} file{'s' * (len(written) != 1)} of {self._store_name()}"
             + "".join(f"; in Descriptron's folder session: Load Annotations {p.name}" for p in sessions))
            if written
            else "Nothing to save",
            15000 if sessions else 5000,
        )

    def notify_store_changed(self) -> None:
        self.canvas.colors.assign(self._category_names())
        self.image_panel.refresh_counts(self._annotation_count)
        if self._current is not None and self._pixels is not None:
            self._show_masks(self._current)
        self._update_actions()
        self._emit_store_changed()

    def on_store_changed(self, callback: Callable) -> Callable[[], None]:
        return self._store_callbacks.subscribe(callback)

    # -------------------------------------------------------- Host: images
    def images(self) -> list:
        return list(self._records)

    def current_image(self):
        return self._current

    def current_image_array(self) -> np.ndarray | None:
        return self._pixels

    def set_current_image(self, image_id: Any) -> None:
        if image_id not in self._row_of:
            raise KeyError(f"no image with id {image_id!r} in the open store")
        row = self._row_of[image_id]
        self.image_panel.select_quietly(row)
        self._request_image(self._records[row])

    def on_current_image_changed(self, callback: Callable) -> Callable[[], None]:
        return self._image_callbacks.subscribe(callback)

    # ------------------------------------------------ CanvasHost (optional)
    def on_image_clicked(self, callback: Callable) -> Callable[[], None]:
        return self._click_callbacks.subscribe(callback)

    def on_box_drawn(self, callback: Callable) -> Callable[[], None]:
        return self._box_callbacks.subscribe(callback)

    def set_box_drawing(self, on: bool) -> None:
        self.canvas.set_box_mode(on)

    def show_proposal(self, mask: np.ndarray | None, name: str = "", points=(), box=None) -> None:
        label = f"{name} (proposal)" if name else "proposal"
        self._proposal = None if mask is None else (label, np.asarray(mask, bool))
        if self._current is not None and self._pixels is not None:
            self._show_masks(self._current)
        self.canvas.set_points(list(points))
        self.canvas.set_box(box)

    # ------------------------------------- drawing and central views (optional)
    def image_canvas(self) -> ImageCanvas:
        """The main canvas (for a plugin's drawing tools: ``gui.drawing_tools.DrawingTools``)."""
        return self.canvas

    def show_central_view(self, widget: QWidget | None, owner: QWidget | None = None) -> None:
        """Show ``widget`` (e.g. the Review panel's viewer) in the big central area instead of the
        image canvas; None shows the canvas again (or the start page without a project).
        ``owner`` is the panel the view belongs to: raising another panel's tab shows the canvas,
        raising the owner's tab shows its view again."""
        self.central.show_view(widget, owner)

    def central_view(self) -> QWidget:
        return self.central.currentWidget()

    # ------------------------------------------------------ Descriptron, help
    def set_descriptron_launcher(self, launcher) -> None:
        """Use this launcher (``descriptron_link.DescriptronLauncher``, or None: not installed)
        instead of the one found in the installed packages."""
        self.descriptron.launcher = launcher
        self._update_actions()

    def descriptron_command(self) -> list[str]:
        """The command that opens the current specimen with its annotation file in Descriptron."""
        return self.descriptron.command(self._current)

    def open_in_descriptron(self) -> DescriptronRun | None:
        """File > Open in Descriptron: save first if needed (Descriptron reads the files), then
        start it and watch it: if it stops with an error, a dialog says why and what to do."""
        return self.descriptron.open(self._current)

    def descriptron_runs(self) -> list[DescriptronRun]:
        """The Descriptron programs started from this window that are still being watched."""
        return list(self.descriptron.runs)

    def show_user_guide(self) -> QDialog:
        """Help > User guide: the guide with its screenshots in a window (no browser needed)."""
        dialog, self.guide_browser = user_guide_dialog(self)
        return dialog

    # ---------------------------------------------------------- Host: work
    def register_worker(self, worker: Any) -> None:
        running_work.announce(worker)  # the one registry (gui.workers); it calls _on_work_changed

    def _on_work_changed(self) -> None:
        self._update_actions()
        if self._close_plan is not None and not self._running_workers():
            self.close()

    @staticmethod
    def _running_workers() -> list:
        return running_work.running(announced_only=True)

    @staticmethod
    def _describe(worker: Any) -> str:
        return getattr(worker, "description", "") or "a task"

    # -------------------------------------------------------------- plugins
    def load_plugins(self, entry_points=None) -> list[api.PluginLoadResult]:
        """Load plugins through the contract; failures are listed, never fatal."""
        results = api.load_plugins(self, entry_points)
        self.plugin_results.extend(results)
        failed = [r for r in self.plugin_results if not r.ok]
        if failed:
            text = f"{len(failed)} plugin{'s' if len(failed) > 1 else ''} failed to load"
            self.plugin_button.setText(f"\u26a0 {text}")
            self.plugin_button.setToolTip("Show which plugins loaded and why some did not")
            self.plugin_button.show()
            self.show_status(f"{text}: {', '.join(r.name for r in failed)} (Help > Plugins)", 15000)
        return results

    def show_plugins_dialog(self) -> QDialog:
        return plugins_dialog(self, self.plugin_results)

    def show_warnings_dialog(self) -> QDialog:
        return warnings_dialog(self, self._store.warnings if self._store else [])

    # ------------------------------------------------------- opening stores
    def open_path(self, path: str | os.PathLike, ask_subfolders: bool = True) -> bool:
        """Open a folder or annotation file from the UI; errors become a dialog. True if opened.
        A folder with photos in sub-folders asks which to open (``ask_which_photos``)."""
        chosen = ask_which_photos(self, path) if ask_subfolders else (path, [])
        if chosen is None:
            return False
        path, left_out = chosen
        previous, self.image_panel.left_out = self.image_panel.left_out, left_out  # the summary names them
        # A bad file must leave the window usable.
        done, store = shown_errors(self, "Cannot open", lambda: self.open_store(str(path)),
                                   unexpected=f"{path}: {{}}")
        if done and store is not None:
            return True
        self.image_panel.left_out = previous
        return False

    def _ask_open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(
            self, "Open a folder of specimen images", self.settings.value("last_dir", "", str)
        )
        if path:
            self.open_path(path)

    def _ask_open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open a Descriptron annotation file",
            self.settings.value("last_dir", "", str),
            "Descriptron annotations (*.json *.rlejson);;All files (*)",
        )
        if path:
            self.open_path(path)

    def _save_from_menu(self) -> bool:
        return shown_errors(self, "Cannot save", self.save_store)[0]

    def _set_store(self, store: AnnotationStore) -> None:
        self._store = store
        self._records = list(store.images)
        self._row_of = {rec.id: row for row, rec in enumerate(self._records)}
        self.canvas.colors.assign(self._category_names())
        self._current, self._pixels = None, None
        self.image_loader.forget()  # a load still running for the old store is stale now
        self.image_panel.fill(self._records, self._annotation_count)
        self._update_actions()
        if self.central.currentWidget() is self.start_page:
            self.central.setCurrentWidget(self.canvas)
        n_warn = len(store.warnings)
        self.show_status(
            f"Opened {self._store_name()}: {len(self._records)} images"
            + (f", {n_warn} warnings (Help > Store warnings)" if n_warn else ""),
            10000,
        )
        if self._records:
            self.canvas.set_image(None, "Loading...")
            self.image_list.setCurrentRow(0)
        else:
            self.canvas.set_image(None, "No images in this project")
            self._emit_current_changed()
        self._emit_store_changed()

    def _category_names(self) -> list[str]:
        return self._store.structure_names() if self._store is not None else []

    # ------------------------------------------------------------ image list
    def _annotation_count(self, record) -> int:
        return len(self._store.annotations_for(record.id))

    def _on_list_selection(self, row: int) -> None:
        if self.central.currentWidget() is not self.canvas:
            self.central.setCurrentWidget(self.canvas)  # the user picked a photo: show it
        self._request_image(self._records[row])

    # --------------------------------------------------------- image loading
    def _request_image(self, record) -> None:
        """Show ``record``: its pixels are decoded off the GUI thread (``LatestImageLoader``)."""
        if record.path is None:
            self.image_loader.forget()
            self._finish_switch(record, None, f"Image file not found: {record.file_name}")
            return
        self._loading_message = f"Loading {record.file_name}..."
        self.show_status(self._loading_message, 0)
        self.image_loader.request(record, record.path)

    def _clear_loading_message(self) -> None:
        if self.statusBar().currentMessage() == self._loading_message:
            self.statusBar().clearMessage()

    def _on_pixels(self, record, pixels: np.ndarray) -> None:
        self._clear_loading_message()
        self._finish_switch(record, pixels, "")

    def _on_pixels_error(self, record, message: str, details: str) -> None:
        self._clear_loading_message()
        self._finish_switch(record, None, f"Cannot show {record.file_name}")
        self.show_error("Cannot load image", message, details)

    def _finish_switch(self, record, pixels: np.ndarray | None, message: str) -> None:
        self._current, self._pixels = record, pixels
        self._proposal = None  # it belonged to the previous image
        self.canvas.set_image(pixels, message)
        if pixels is not None:
            self._show_masks(record)
        row = self._row_of.get(record.id, -1)
        self.position_label.setText(f"{row + 1} / {len(self._records)}  {record.file_name}")
        self._update_actions()
        self._emit_current_changed()

    def _show_masks(self, record) -> None:
        try:
            masks = self._store.structure_masks(record.id)
        except Exception as exc:  # noqa: BLE001 - show the image even if its annotations are bad
            log.exception("reading the masks of %s failed", record.file_name)
            self.show_status(f"Cannot draw the annotations of {record.file_name}: {exc}", 15000)
            return
        if self._proposal is not None:
            masks[self._proposal[0]] = self._proposal[1]
        skipped = self.canvas.set_masks(masks)
        if skipped:
            h, w = self.canvas.image_shape()
            self.show_status(
                f"{record.file_name}: not drawn, size differs from the image ({w}x{h}): {', '.join(skipped)}",
                15000,
            )

    def _on_hover(self, x: float, y: float) -> None:
        if self._current is not None:
            self.position_label.setText(f"x {int(x)}, y {int(y)}   {self._current.file_name}")

    # ------------------------------------------------------------- callbacks
    def _callback_failed(self, callback: Callable, exc: Exception) -> None:
        log.exception("callback %r failed", callback)
        self.show_status(f"A plugin callback failed: {type(exc).__name__}: {exc}", 15000)

    def _emit_store_changed(self) -> None:
        self.store_changed.emit(self._store)
        self._store_callbacks(self._store)

    def _emit_current_changed(self) -> None:
        self.current_image_changed.emit(self._current)
        self._image_callbacks(self._current)

    # ------------------------------------------------------------- closing
    def _ask(self, title: str, text: str, buttons, default) -> QMessageBox.StandardButton:
        box = QMessageBox(QMessageBox.Question, title, text, buttons, self)
        box.setDefaultButton(default)
        return box.exec_()

    def _settle_unsaved(self, doing: str) -> bool:
        """Ask Save/Discard/Cancel when there are unsaved changes; False means cancel."""
        if not self.is_modified():
            return True
        answer = self._ask(
            "Unsaved changes",
            f"{self._store_name()} has unsaved changes. Save them before you {doing}?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel,
            QMessageBox.Save,
        )
        if answer == QMessageBox.Save:
            return self._save_from_menu()
        return answer == QMessageBox.Discard

    def closeEvent(self, event) -> None:
        if self._close_plan is not None:
            # Second pass, after the running work stopped (or the user insists again).
            if self._running_workers():
                event.ignore()
                self.show_status(
                    "Still stopping: " + ", ".join(self._describe(w) for w in self._running_workers()), 5000
                )
                return
            plan, self._close_plan = self._close_plan, None
            if plan["save"] and not self._save_from_menu():
                event.ignore()
                return
            self._shutdown()
            event.accept()
            return

        running = self._running_workers()
        if running:
            names = ", ".join(self._describe(w) for w in running)
            answer = self._ask(
                "Work in progress",
                f"{names} is still running. Stop it and close?",
                QMessageBox.Yes | QMessageBox.No,
                QMessageBox.No,
            )
            if answer != QMessageBox.Yes:
                event.ignore()
                return
        save = False
        if self.is_modified():
            answer = self._ask(
                "Unsaved changes",
                f"{self._store_name()} has unsaved changes. Save them before closing?",
                QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel,
                QMessageBox.Save,
            )
            if answer == QMessageBox.Cancel:
                event.ignore()
                return
            save = answer == QMessageBox.Save
        if running:
            # Stop the work without blocking the GUI; the last `finished` closes the window.
            self._close_plan = {"save": save}
            for worker in running:
                worker.cancel()
            self.show_status("Stopping " + ", ".join(self._describe(w) for w in running) + "...", 0)
            event.ignore()
            return
        if save and not self._save_from_menu():
            event.ignore()
            return
        self._shutdown()
        event.accept()

    def _shutdown(self) -> None:
        """Join the image loader so no thread outlives the window."""
        self.image_loader.forget()
        self.image_loader.wait(10000)
