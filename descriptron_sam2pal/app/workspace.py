"""The standalone Descriptron workspace: a Qt main window that implements the host contract.

It opens a folder of specimen images with their Descriptron annotation files
(or one annotation file), lists the images, shows the current one with its
structures, loads plugins through ``host/api.py`` and saves through the store.
Image files are decoded in a background worker, so browsing never blocks.
"""

from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PyQt5.QtCore import QRect, QSettings, QSize, Qt, QTimer, QUrl, pyqtSignal
from PyQt5.QtGui import QColor, QImageReader, QKeySequence, QTextCursor
from PyQt5.QtWidgets import (
    QAction,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from descriptron_sam2pal import UserError
from descriptron_sam2pal.app.descriptron_link import descriptron_command, find_descriptron, install_command
from descriptron_sam2pal.app.descriptron_process import DescriptronRun
from descriptron_sam2pal.gui.canvas import ImageCanvas, shared_colors
from descriptron_sam2pal.gui.fitting import fit_to_screen, guard_wheel
from descriptron_sam2pal.gui.image_loader import LatestImageLoader
from descriptron_sam2pal.imaging.io import is_image_file
from descriptron_sam2pal.store import AnnotationStore
from descriptron_sam2pal.host import api

log = logging.getLogger(__name__)

_AREAS = {
    "left": Qt.LeftDockWidgetArea,
    "right": Qt.RightDockWidgetArea,
    "top": Qt.TopDockWidgetArea,
    "bottom": Qt.BottomDockWidgetArea,
}
_RECORD_ROLE = Qt.UserRole
SAVE_LOCK_WAIT_S = 3


#: The user guide next to the sources (a source checkout or an editable install).
USER_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user_guide.md"


#: Sub-folders that hold our own outputs, never specimen photos to open.
OUTPUT_FOLDERS = ("sam2pal_runs",)


def photo_count(folder: str | os.PathLike) -> int:
    """Photos directly in ``folder`` (0 when it cannot be read)."""
    try:
        return sum(1 for p in Path(folder).iterdir() if p.is_file() and is_image_file(p))
    except OSError:
        return 0


def image_subfolders(folder: str | os.PathLike) -> list[tuple[Path, int]]:
    """(sub-folder, number of photos) for each sub-folder of ``folder`` holding photos
    (photos sorted into one folder per taxon), whether or not ``folder`` holds photos too;
    hidden folders and our output folders are not counted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for sub in sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in OUTPUT_FOLDERS
    ):
        n = photo_count(sub)
        if n:
            found.append((sub, n))
    return found


def photos(n: int) -> str:
    return f"{n} photo{'s' * (n != 1)}"


def _fit_images(document, width: int, folder: Path = USER_GUIDE.parent) -> None:
    """Show the document's images (the guide's screenshots, paths relative to ``folder``) at most
    ``width`` px wide, height to scale."""
    block = document.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            fmt = fragment.charFormat()
            size = (
                QImageReader(str(folder / fmt.toImageFormat().name())).size() if fmt.isImageFormat() else None
            )
            if size is not None and size.width() > width:
                image = fmt.toImageFormat()
                image.setWidth(width)
                cursor = QTextCursor(document)
                cursor.setPosition(fragment.position())
                cursor.setPosition(fragment.position() + fragment.length(), QTextCursor.KeepAnchor)
                cursor.setCharFormat(image)
            it += 1
        block = block.next()


def _strip_mnemonic(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")


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
        self._store_callbacks: list[Callable] = []
        self._image_callbacks: list[Callable] = []
        self._click_callbacks: list[Callable] = []
        self._box_callbacks: list[Callable] = []
        self._proposal: tuple[str, np.ndarray] | None = None  # CanvasHost.show_proposal
        self._workers: list = []
        self._descriptron_runs: list[DescriptronRun] = []
        self._left_out: list[tuple[Path, int]] = []  # sub-folders of photos not opened
        self._close_plan: dict | None = None
        self.plugin_results: list[api.PluginLoadResult] = []
        self._plugin_docks: dict[Qt.DockWidgetArea, QDockWidget] = {}
        self._dock_widths: dict[QDockWidget, int] = {}  # width each side panel had when last shown
        self._shown_tab: dict[Qt.DockWidgetArea, QDockWidget] = {}
        self._panels_fitted = False
        self._view_owners: dict[QWidget, QWidget] = {}  # panel -> its central view
        self.tabifiedDockWidgetActivated.connect(self._on_dock_tab_activated)
        self.tabifiedDockWidgetActivated.connect(self._follow_central_view)

        shared_colors().use_settings(self.settings)  # one colour per structure, kept between runs
        self.canvas = ImageCanvas(colors=shared_colors())
        self.canvas.set_message("File > Open folder... to start")
        self.canvas.hovered.connect(self._on_hover)
        self.canvas.clicked.connect(lambda x, y, button: self._call_each(self._click_callbacks, x, y, button))
        self.canvas.box_drawn.connect(lambda *box: self._call_each(self._box_callbacks, *box))
        self.central = QStackedWidget()
        self.start_page = self._build_start_page()
        self.central.addWidget(self.canvas)
        self.central.addWidget(self.start_page)
        self.central.setCurrentWidget(self.start_page)
        self.setCentralWidget(self.central)
        self._build_image_dock()
        self._build_menus()
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
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(4, 4, 4, 4)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter images")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.image_list = QListWidget()
        self.image_list.setUniformItemSizes(True)
        self.image_list.currentItemChanged.connect(self._on_list_selection)
        self.list_summary = QLabel("No images")
        self.list_summary.setWordWrap(True)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.image_list, 1)
        layout.addWidget(self.list_summary)
        self.images_dock = QDockWidget("Images")
        self.images_dock.setObjectName("images")
        self.images_dock.setWidget(panel)
        self.images_dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(Qt.LeftDockWidgetArea, self.images_dock)

    def _build_start_page(self) -> QWidget:
        """What the window shows before a project is open: what to do first."""
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addStretch(1)
        title = QLabel(
            "<h2>Open your specimen photos to start</h2>"
            "<p>A folder of photos (with their Descriptron annotation files, if any), "
            "or one Descriptron annotation file.<br>Photos sorted into sub-folders "
            "(e.g. one per taxon): open the parent folder and pick one.</p>"
        )
        title.setAlignment(Qt.AlignCenter)
        title.setWordWrap(True)
        layout.addWidget(title)
        self.start_open_button = QPushButton("Open a folder of photos…  (Ctrl+O)")
        self.start_open_button.clicked.connect(self._ask_open_folder)
        self.start_file_button = QPushButton("Open an annotation file…  (Ctrl+Shift+O)")
        self.start_file_button.clicked.connect(self._ask_open_file)
        self.start_last_button = QPushButton()
        self.start_last_button.clicked.connect(
            lambda: self.open_path(self.settings.value("last_project", "", str))
        )
        last = self.settings.value("last_project", "", str)
        self.start_last_button.setVisible(bool(last) and Path(last).exists())
        self.start_last_button.setText(f"Open again: {last}")
        self.start_guide_button = QPushButton("Read the user guide  (F1)")
        self.start_guide_button.clicked.connect(self.show_user_guide)
        for b in (
            self.start_open_button,
            self.start_file_button,
            self.start_last_button,
            self.start_guide_button,
        ):
            b.setMinimumHeight(34)
            layout.addWidget(b, 0, Qt.AlignHCenter)
        layout.addStretch(2)
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
        self.next_action = view.addAction("&Next image", lambda: self._step(+1))
        self.next_action.setShortcuts([QKeySequence(Qt.Key_PageDown), QKeySequence("]")])
        self.prev_action = view.addAction("&Previous image", lambda: self._step(-1))
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
        launcher = self._descriptron()
        if launcher is None:  # enabled: it says how to install Descriptron
            self.descriptron_action.setEnabled(True)
            self.descriptron_action.setText("Open in &Descriptron (not installed: how to install…)")
            tip = (
                "Descriptron's annotation GUI is not installed in this Python. "
                f"Install it with: {install_command()}"
            )
        else:
            self.descriptron_action.setEnabled(self._current is not None and self._current.path is not None)
            self.descriptron_action.setText("Open in &Descriptron")
            tip = (
                f"Open this photo with its annotation file in Descriptron {launcher.version}"
                if self.descriptron_action.isEnabled()
                else "Choose a photo first"
            )
        self.descriptron_action.setToolTip(tip)
        self.descriptron_action.setStatusTip(tip)
        self.setWindowModified(self.is_modified())
        name = f" \u2014 {self._store_name()}" if has_store else ""
        self.setWindowTitle(f"Descriptron workspace{name}[*]")
        self.tasks_label.setText(  # registered and not finished: running or about to start
            f"Running: {', '.join(self._describe(w) for w in self._workers)}" if self._workers else ""
        )

    def _store_name(self) -> str:
        path = getattr(self._store, "path", None)
        return Path(path).name if path else "untitled"

    # ------------------------------------------------------------ Host: UI
    def main_window(self) -> QWidget:
        return self

    def add_menu_action(
        self, menu: str, text: str, callback: Callable[[], Any], shortcut: Optional[str] = None
    ) -> QAction:
        target = self._menu_for_path(menu)
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _checked=False: self._run_plugin_callback(text, callback))
        target.addAction(action)
        return action

    def _menu_for_path(self, path: str) -> QMenu:
        """The menu named by "Title" or "Title/Submenu", created (before Help) when missing."""
        parts = [p for p in path.split("/") if p.strip()] or ["Plugins"]
        parent_actions = self.menuBar().actions()
        menu: QMenu | None = None
        for depth, part in enumerate(parts):
            found = None
            for action in parent_actions:
                sub = action.menu()
                if sub is not None and _strip_mnemonic(action.text()) == _strip_mnemonic(part):
                    found = sub
                    break
            if found is None:
                if depth == 0:
                    found = QMenu(part, self)
                    self.menuBar().insertMenu(self.help_menu.menuAction(), found)
                else:
                    found = menu.addMenu(part)
            menu = found
            parent_actions = menu.actions()
        return menu

    def _run_plugin_callback(self, text: str, callback: Callable[[], Any]) -> None:
        try:
            callback()
        except UserError as exc:
            self.show_error(_strip_mnemonic(text), str(exc))
        except Exception as exc:  # noqa: BLE001 - a plugin's bug must not close the window
            log.exception("menu action %r failed", text)
            self.show_error(_strip_mnemonic(text), f"{type(exc).__name__}: {exc}", traceback.format_exc())

    def add_dock_panel(self, title: str, widget: QWidget, area: str = "right") -> QDockWidget:
        if area not in _AREAS:
            raise ValueError(f"area must be one of {sorted(_AREAS)}, not {area!r}")
        dock = QDockWidget(title, self)
        dock.setObjectName(f"plugin:{title}")
        dock.setWidget(widget)
        guard_wheel(widget)  # scrolling over a panel never changes its settings
        qt_area = _AREAS[area]
        previous = self._plugin_docks.get(qt_area)
        self.addDockWidget(qt_area, dock)
        if previous is not None:
            self.tabifyDockWidget(previous, dock)
            dock.raise_()
        self._plugin_docks[qt_area] = dock
        # Also when a tab is raised from code (tabifiedDockWidgetActivated is for the user's clicks).
        dock.visibilityChanged.connect(lambda on, d=dock: on and self._follow_central_view(d))
        self.panels_menu.addAction(dock.toggleViewAction())
        if area in ("left", "right"):
            self._shown_tab[qt_area] = dock
            self._fit_side_panel(dock)
        return dock

    #: Side panels take at most this share of the window, so the image keeps its room.
    MAX_PANEL_SHARE = 0.6

    def _panel_width(self, dock: QDockWidget) -> int:
        """The width a side panel gets when shown: what the user last gave it, else what it asks for."""
        if dock in self._dock_widths:
            return self._dock_widths[dock]
        wanted = dock.widget().sizeHint().width() if dock.widget() is not None else 320
        return max(260, min(wanted, int(self.width() * self.MAX_PANEL_SHARE)))

    def _on_dock_tab_activated(self, dock: QDockWidget) -> None:
        """Tabbed side panels each keep their own width (a review needs more room than a form)."""
        area = self.dockWidgetArea(dock)
        if area not in (Qt.LeftDockWidgetArea, Qt.RightDockWidgetArea) or dock.isFloating():
            return
        previous = self._shown_tab.get(area)
        if previous is dock:
            return
        if previous is not None and self.isVisible() and previous.width() > 0:
            self._dock_widths[previous] = previous.width()
        self._shown_tab[area] = dock
        self._fit_side_panel(dock)

    def _follow_central_view(self, dock: QDockWidget) -> None:
        """A panel's tab was raised: show its central view, or the canvas if it has none."""
        view = self._view_owners.get(dock.widget())
        current = self.central.currentWidget()
        if view is not None:
            self.central.setCurrentWidget(view)
        elif current in self._view_owners.values():
            self.show_central_view(None)

    def _fit_side_panel(self, dock: QDockWidget) -> None:
        if self.isVisible():  # before that the layout is not settled; showEvent does it
            self.resizeDocks([dock], [self._panel_width(dock)], Qt.Horizontal)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._panels_fitted:
            self._panels_fitted = True
            QTimer.singleShot(0, self._fit_shown_panels)

    def _fit_shown_panels(self) -> None:
        """Once shown: give each side area's visible panel its width (a tab raised before the
        window was shown sends no activation signal)."""
        for dock in self._plugin_docks_shown():
            self._shown_tab[self.dockWidgetArea(dock)] = dock
            self._fit_side_panel(dock)

    def _plugin_docks_shown(self) -> list[QDockWidget]:
        return [
            d
            for d in self.findChildren(QDockWidget)
            if d.objectName().startswith("plugin:")
            and d.isVisible()
            and not d.isFloating()
            and self.dockWidgetArea(d) in (Qt.LeftDockWidgetArea, Qt.RightDockWidgetArea)
        ]

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
        store = AnnotationStore.open(path)  # StoreError leaves the current store in place
        self._set_store(store)
        self.settings.setValue("last_dir", str(Path(path).parent if Path(path).is_file() else path))
        self.settings.setValue("last_project", str(path))
        return store

    def save_store(self) -> None:
        if self._store is None:
            raise UserError("Nothing to save: open a folder or an annotation file first.")
        written = self._store.save()
        self._update_actions()
        self.show_status(
            f"Saved {len(written)} file{'s' * (len(written) != 1)} of {self._store_name()}"
            if written
            else "Nothing to save"
        )

    def notify_store_changed(self) -> None:
        self.canvas.colors.assign(self._category_names())
        self._refresh_counts()
        if self._current is not None and self._pixels is not None:
            self._show_masks(self._current)
        self._update_actions()
        self._emit_store_changed()

    def on_store_changed(self, callback: Callable) -> Callable[[], None]:
        return self._subscribe(self._store_callbacks, callback)

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
        item = self.image_list.item(row)
        if self.image_list.currentRow() != row:
            self.image_list.blockSignals(True)
            self.image_list.setCurrentItem(item)
            self.image_list.blockSignals(False)
            self.image_list.scrollToItem(item)
        self._request_image(self._records[row])

    def on_current_image_changed(self, callback: Callable) -> Callable[[], None]:
        return self._subscribe(self._image_callbacks, callback)

    # ------------------------------------------------ CanvasHost (optional)
    def on_image_clicked(self, callback: Callable) -> Callable[[], None]:
        return self._subscribe(self._click_callbacks, callback)

    def on_box_drawn(self, callback: Callable) -> Callable[[], None]:
        return self._subscribe(self._box_callbacks, callback)

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
        if widget is None:
            widget = self.canvas if self._store is not None else self.start_page
        else:
            if self.central.indexOf(widget) < 0:
                self.central.addWidget(widget)
            if owner is not None:
                self._view_owners[owner] = widget
        self.central.setCurrentWidget(widget)

    def central_view(self) -> QWidget:
        return self.central.currentWidget()

    # ------------------------------------------------------ Descriptron, help
    def _descriptron(self):
        if not hasattr(self, "_launcher"):
            self._launcher = find_descriptron()
        return self._launcher

    def set_descriptron_launcher(self, launcher) -> None:
        """Use this launcher (``descriptron_link.DescriptronLauncher``, or None: not installed)
        instead of the one found in the installed packages."""
        self._launcher = launcher
        self._update_actions()

    def descriptron_command(self) -> list[str]:
        """The command that opens the current specimen with its annotation file in Descriptron."""
        launcher = self._descriptron()
        if launcher is None:
            raise UserError(
                "Descriptron's annotation GUI is not installed in this Python (pip install descriptron-gui)."
            )
        record = self._current
        if record is None or record.path is None:
            raise UserError("Choose a specimen whose photo is found first.")
        return descriptron_command(launcher, record.path, record.source)

    def open_in_descriptron(self) -> DescriptronRun | None:
        """File > Open in Descriptron: save first if needed (Descriptron reads the files), then
        start it and watch it: if it stops with an error, a dialog says why and what to do."""
        if self._descriptron() is None:
            self.show_error(
                "Open in Descriptron",
                "Descriptron's annotation GUI (the descriptron-gui package) is not installed "
                "in this Python. Install it (as install.sh does) with:\n\n"
                f"{install_command()}\n\n--no-deps keeps this PyTorch: Descriptron's own "
                "dependencies would replace it with a CUDA build of several GB.",
            )
            return None
        try:
            if self.is_modified() and not self._settle_unsaved("open the specimen in Descriptron"):
                return None
            argv = self.descriptron_command()
        except UserError as exc:
            self.show_error("Open in Descriptron", str(exc))
            return None
        try:
            run = DescriptronRun(argv, self, cwd=str(Path(self._current.path).parent))
        except OSError as exc:
            self.show_error("Open in Descriptron", f"Could not start Descriptron: {exc}", " ".join(argv))
            return None
        name = self._current.file_name
        run.failed.connect(lambda failure, tail, code: self._descriptron_failed(run, failure, tail, code))
        run.ended.connect(lambda _code: self._descriptron_runs.remove(run))
        self._descriptron_runs.append(run)
        self.show_status(
            f"Opening {name} in Descriptron (its window takes a few seconds; output in {run.log_path})", 10000
        )
        return run

    def _descriptron_failed(self, run: DescriptronRun, failure, tail: str, code: int) -> None:
        self._descriptron_runs.remove(run)
        self.show_error(
            "Open in Descriptron",
            f"{failure.reason}\n\nFix: {failure.fix}",
            f"Exit code {code}. Command:\n{' '.join(run.argv)}\n\n"
            f"Last lines of its output ({run.log_path}):\n{tail}",
        )

    def descriptron_runs(self) -> list[DescriptronRun]:
        """The Descriptron programs started from this window that are still being watched."""
        return list(self._descriptron_runs)

    def show_user_guide(self) -> QDialog:
        """Help > User guide: the guide with its screenshots in a window (no browser needed)."""
        dialog = QDialog(self)
        dialog.setWindowTitle("SAM2-PAL user guide")
        layout = QVBoxLayout(dialog)
        browser = QTextBrowser()
        browser.setOpenExternalLinks(True)
        if USER_GUIDE.is_file():
            browser.document().setBaseUrl(QUrl.fromLocalFile(str(USER_GUIDE)))
            browser.setSearchPaths([str(USER_GUIDE.parent)])
            browser.setMarkdown(USER_GUIDE.read_text(encoding="utf-8"))
            _fit_images(browser.document(), 820)
        else:
            browser.setMarkdown(
                "The user guide is `docs/user_guide.md` in the descriptron-sam2pal "
                "sources; this installation does not include it."
            )
        layout.addWidget(browser)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(dialog.reject)
        layout.addWidget(buttons)
        dialog.resize(min(900, max(600, self.width() - 80)), min(760, max(480, self.height() - 60)))
        dialog.open()
        self.guide_browser = browser
        return dialog

    # ---------------------------------------------------------- Host: work
    def register_worker(self, worker: Any) -> None:
        self._workers.append(worker)
        worker.finished.connect(lambda w=worker: self._on_worker_finished(w))
        self._update_actions()

    def _on_worker_finished(self, worker: Any) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
        self._update_actions()
        if self._close_plan is not None and not self._running_workers():
            self.close()

    def _running_workers(self) -> list:
        return [w for w in self._workers if w.is_running()]

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
        dialog = QDialog(self)
        dialog.setWindowTitle("Plugins")
        layout = QVBoxLayout(dialog)
        if not self.plugin_results:
            layout.addWidget(QLabel(f"No plugins found (entry point group '{api.PLUGIN_GROUP}')."))
        table = QTableWidget(len(self.plugin_results), 3)
        table.setHorizontalHeaderLabels(["Plugin", "Status", "Entry point"])
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        table.verticalHeader().hide()
        table.setEditTriggers(QTableWidget.NoEditTriggers)
        details = QPlainTextEdit()
        details.setReadOnly(True)
        for row, res in enumerate(self.plugin_results):
            status = QTableWidgetItem("loaded" if res.ok else f"failed: {res.error}")
            if not res.ok:
                status.setForeground(QColor(190, 30, 30))
            for col, item in enumerate((QTableWidgetItem(res.name), status, QTableWidgetItem(res.target))):
                table.setItem(row, col, item)
        table.currentCellChanged.connect(
            lambda row, *_: details.setPlainText(
                self.plugin_results[row].details if 0 <= row < len(self.plugin_results) else ""
            )
        )
        layout.addWidget(table)
        layout.addWidget(details)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(dialog.reject)
        layout.addWidget(buttons)
        dialog.resize(760, 360)
        failed_rows = [i for i, r in enumerate(self.plugin_results) if not r.ok]
        if failed_rows:
            table.setCurrentCell(failed_rows[0], 0)
        dialog.open()
        return dialog

    def show_warnings_dialog(self) -> QDialog:
        dialog = QDialog(self)
        dialog.setWindowTitle("Store warnings")
        layout = QVBoxLayout(dialog)
        text = QPlainTextEdit("\n".join(self._store.warnings) if self._store else "")
        text.setReadOnly(True)
        layout.addWidget(text)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(dialog.reject)
        layout.addWidget(buttons)
        dialog.resize(700, 300)
        dialog.open()
        return dialog

    # ------------------------------------------------------- opening stores
    def open_path(self, path: str | os.PathLike, ask_subfolders: bool = True) -> bool:
        """Open a folder or annotation file from the UI; errors become a dialog. True if opened.
        A folder with photos in sub-folders asks which to open (the folder's own photos are
        one choice when it has some), so no photo is left out without a word."""
        subfolders = image_subfolders(path) if ask_subfolders else []
        left_out: list[tuple[Path, int]] = []
        if subfolders:
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
            choice, ok = QInputDialog.getItem(self, "Open a sub-folder", label, names, 0, False)
            if not ok:
                return False
            index = names.index(choice) - (1 if own else 0)
            if index >= 0:  # a sub-folder: it may have sub-folders of its own
                return self.open_path(subfolders[index][0])
            left_out = subfolders
        previous, self._left_out = self._left_out, left_out  # the image list's summary names them
        try:
            if self.open_store(str(path)) is not None:
                return True
        except UserError as exc:
            self.show_error("Cannot open", str(exc))
        except Exception as exc:  # noqa: BLE001 - a bad file must leave the window usable
            log.exception("opening %s failed", path)
            self.show_error("Cannot open", f"{path}: {type(exc).__name__}: {exc}", traceback.format_exc())
        self._left_out = previous
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
        try:
            self.save_store()
            return True
        except UserError as exc:
            self.show_error("Cannot save", str(exc))
        except Exception as exc:  # noqa: BLE001
            log.exception("saving failed")
            self.show_error("Cannot save", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        return False

    def _set_store(self, store: AnnotationStore) -> None:
        # A save waits at most this long for another program (a `sam2pal propagate --write-to`)
        # holding the store's lock; then it says so, and the changes stay in the window.
        store.lock_timeout = SAVE_LOCK_WAIT_S
        self._store = store
        self._records = list(store.images)
        self._row_of = {rec.id: row for row, rec in enumerate(self._records)}
        self.canvas.colors.assign(self._category_names())
        self._current, self._pixels = None, None
        self.image_loader.forget()  # a load still running for the old store is stale now
        self._fill_list()
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
    def _fill_list(self) -> None:
        self.image_list.blockSignals(True)
        self.image_list.clear()
        for rec in self._records:
            item = QListWidgetItem()
            item.setData(_RECORD_ROLE, rec.id)
            self.image_list.addItem(item)
        self.image_list.blockSignals(False)
        self._refresh_counts()
        self._apply_filter(self.filter_edit.text())

    def _refresh_counts(self) -> None:
        for row, rec in enumerate(self._records):
            item = self.image_list.item(row)
            n = len(self._store.annotations_for(rec.id))
            item.setText(f"{rec.file_name}  ({n})")
            if rec.path is None:
                item.setForeground(QColor(150, 150, 150))
                item.setToolTip(f"{rec.file_name}: image file not found; {n} annotations")
            else:
                item.setToolTip(f"{rec.path}\n{n} annotations")

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        shown = 0
        for row, rec in enumerate(self._records):
            hide = bool(needle) and needle not in rec.file_name.lower()
            self.image_list.item(row).setHidden(hide)
            shown += not hide
        total = len(self._records)
        text = f"{total} images" if shown == total else f"{shown} of {total} images"
        left_out = self._left_out
        if left_out:  # the user chose this folder's own photos: say what else is there
            text += f"\n+ {photos(sum(n for _, n in left_out))} in sub-folders not opened: " + ", ".join(
                sub.name for sub, _ in left_out
            )
        self.list_summary.setText(text)
        self.list_summary.setToolTip("Open a sub-folder with File > Open folder" if left_out else "")

    def _on_list_selection(self, item: QListWidgetItem | None, _previous=None) -> None:
        if item is not None:
            if self.central.currentWidget() is not self.canvas:
                self.central.setCurrentWidget(self.canvas)  # the user picked a photo: show it
            self._request_image(self._records[self.image_list.row(item)])

    def _step(self, delta: int) -> None:
        rows = [r for r in range(self.image_list.count()) if not self.image_list.item(r).isHidden()]
        if not rows:
            return
        cur = self.image_list.currentRow()
        later = [r for r in rows if (r > cur if delta > 0 else r < cur)]
        if later:
            self.image_list.setCurrentRow(later[0] if delta > 0 else later[-1])

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
    @staticmethod
    def _subscribe(callbacks: list, callback: Callable) -> Callable[[], None]:
        callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return unsubscribe

    def _call_each(self, callbacks: list, *args: Any) -> None:
        for callback in list(callbacks):
            try:
                callback(*args)
            except Exception as exc:  # noqa: BLE001 - one plugin's bug must not stop the others
                log.exception("callback %r failed", callback)
                self.show_status(f"A plugin callback failed: {type(exc).__name__}: {exc}", 15000)

    def _emit_store_changed(self) -> None:
        self.store_changed.emit(self._store)
        self._call_each(self._store_callbacks, self._store)

    def _emit_current_changed(self) -> None:
        self.current_image_changed.emit(self._current)
        self._call_each(self._image_callbacks, self._current)

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
