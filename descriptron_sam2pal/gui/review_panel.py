"""The Review panel: go through propagation results worst first, accept / reject / fix, write back.

A dock widget holding a table of every (specimen, structure) prediction sorted
worst first (or by any column: click its header), filters by state and by
structure, counts, the action buttons, and a viewer: an
:class:`~.canvas.ImageCanvas` showing the selected specimen with the selected
structure highlighted (full colour, in the legend) and the specimen's other
predictions dimmed. On a host with a central area (``show_central_view``, the
standalone workspace) the viewer is shown there, large, while the panel is
shown; elsewhere it sits above the table in the panel. The viewer has the
drawing tools of :mod:`.drawing_tools` (polygon P, brush B, eraser E, vertices
V, fill holes H): each edit replaces the structure's outline, one undoable step.

Keys (while the panel or any part of it has the focus; they win over the host's
shortcuts there): **A** accept, **R** reject, **Shift+A / Shift+R** the whole
specimen (structures not reviewed yet), **Down/Right** next, **Up/Left**
previous, **F** fix mode (left click adds a positive point, right click a
negative one; SAM2 re-segments at once), **Esc** leaves fix mode,
**Ctrl+Z** undo, **Ctrl+Shift+Z** / **Ctrl+Y** redo.

Resuming: when a project is opened and the panel has nothing to review, the
newest saved review of the project (``<project>/sam2pal_runs/*/review.json``)
is offered in a bar at the top ("Continue"). "Open predictions..." starts in
the run folder and opens a review file as well as a predictions file.

The review (the Qt-free use case ``jobs.review``) is saved a moment after every change and
when the panel is hidden, to ``session_path``, so closing the window loses
nothing. "Write back..." asks first, then puts the accepted structures into the
host's store and calls ``host.notify_store_changed()``; the dialog offers
"Write and save" (then ``host.save_store()``) or "Write only" (the host's
File > Save saves them later, and its unsaved-changes guard still applies).
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pyqtgraph as pg
from PyQt5.QtCore import QEvent, QModelIndex, Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QKeySequence
from PyQt5.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QGridLayout,
                             QHBoxLayout, QHeaderView, QLabel, QMessageBox, QPushButton, QSplitter,
                             QTableView, QVBoxLayout, QWidget)

from descriptron_sam2pal import UserError
from descriptron_sam2pal.gui.canvas import ImageCanvas, compose_overlay
from descriptron_sam2pal.gui.drawing_tools import DrawingToolbar, DrawingTools
from descriptron_sam2pal.gui.image_loader import LatestImageLoader
from descriptron_sam2pal.jobs.review import ACCEPTED, REJECTED, UNREVIEWED, ReviewItem, ReviewSession
from descriptron_sam2pal.jobs.review_files import (RUNS_FOLDER_NAME, find_review_for, latest_review,
                                                  review_path_for, review_summary)
from descriptron_sam2pal.gui.review_table import (STATE_COLORS, ReviewTableModel, StateDelegate,
                                                 item_tooltip, score_text, state_text)
from descriptron_sam2pal.gui.workers import EngineWorker

log = logging.getLogger(__name__)

FILTER_CHOICES = (("All", "all"), ("Unreviewed", UNREVIEWED), ("Accepted", ACCEPTED), ("Rejected", REJECTED))
DIM_ALPHA = 0.4          # how much of the normal overlay the non-selected structures keep
AUTOSAVE_DELAY_MS = 800
IMAGE_CACHE_SIZE = 4
PREFERRED_WIDTH = 900    # px the panel asks for when the photo is in it
NARROW_WIDTH = 460       # ... and when the photo is in the host's central area
ALL_STRUCTURES = "All structures"
Reprompt = Callable[[Any, list, list], Optional[np.ndarray]]


class ReviewPanel(QWidget):
    """Review of one propagation run (a :class:`ReviewSession`) for a host's dock.

    ``host`` offers the :class:`~descriptron_sam2pal.host.api.Host` contract.
    ``reprompt(image_id, points, labels) -> mask`` re-segments a structure from point
    prompts: ``image_id`` is the specimen's store id (its path when it has none),
    ``points`` a list of (x, y) image pixels, ``labels`` 1 (positive) / 0 (negative);
    it returns an (H, W) bool mask on the specimen's grid (or None: nothing found).
    It runs in a worker thread. Without it, Fix is disabled.

    Signals: ``template_requested(image_id, path, masks)`` ("Add as template":
    {structure: mask} of the specimen's predictions that are not rejected, fixes
    included), ``written_back(summary)`` (a ``WriteBackSummary``), ``session_changed()``.
    """

    template_requested = pyqtSignal(object, object, object)
    written_back = pyqtSignal(object)
    session_changed = pyqtSignal()

    def __init__(self, host: Any, reprompt: Reprompt | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.reprompt = reprompt
        self.session: ReviewSession | None = None
        self.session_path: Path | None = None
        #: The default of the write-back dialog's "replace outlines already in the project".
        self.replace_existing = False
        self._fix_mode = False
        self._shown_item: ReviewItem | None = None
        self._image_cache: dict[str, np.ndarray] = {}
        self._image_errors: dict[str, str] = {}
        self.image_loader = LatestImageLoader(self)
        self.image_loader.loaded.connect(self._on_pixels)
        self.image_loader.failed.connect(lambda path, message, _details: self._on_pixels_error(path, message))
        self._prompt_worker: EngineWorker | None = None
        self._pending: tuple[ReviewItem, list] | None = None  # points clicked while SAM2 was busy
        self._autosave = QTimer(self)
        self._autosave.setSingleShot(True)
        self._autosave.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave.timeout.connect(self.save_session)
        #: The viewer goes to the host's central area (large) when the host has one.
        self.central = callable(getattr(host, "show_central_view", None))
        self._offered: Path | None = None  # the review offered in the resume bar
        self._offered_for: tuple | None = None  # (project, review) it was offered for
        self._build()
        self._unsubscribe = []
        if callable(getattr(host, "on_store_changed", None)):
            self._unsubscribe.append(host.on_store_changed(self._offer_resume))
        self._update_actions()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        self.open_button = QPushButton("Open predictions\u2026")
        self.open_button.setToolTip("Open the predictions file written by 'sam2pal propagate' "
                                    "(a saved review of it continues where you left off)")
        self.open_button.clicked.connect(self._ask_open_predictions)
        self.open_button.setMinimumWidth(48)
        self.filter_combo = QComboBox()
        for text, name in FILTER_CHOICES:
            self.filter_combo.addItem(text, name)
        self.filter_combo.setToolTip("Show all predictions, or only those still to review, accepted or rejected")
        self.filter_combo.currentIndexChanged.connect(self._on_filter_changed)
        self.structure_combo = QComboBox()
        self.structure_combo.addItem(ALL_STRUCTURES)
        self.structure_combo.setToolTip("Show every structure, or only one")
        self.structure_combo.currentIndexChanged.connect(self._on_structure_changed)
        self.worst_first_button = QPushButton("Worst first")
        self.worst_first_button.setToolTip("Back to the review order: predicted absent, then lowest Score "
                                           "(click a column header to sort by it)")
        self.worst_first_button.clicked.connect(lambda: self.sort_by(-1))
        self.counts_label = QLabel("No predictions to review")
        counts_font = self.counts_label.font()
        counts_font.setBold(True)
        self.counts_label.setFont(counts_font)
        self.counts_label.setWordWrap(True)
        top = QGridLayout()
        top.addWidget(QLabel("Show:"), 0, 0)
        top.addWidget(self.filter_combo, 0, 1)
        top.addWidget(self.structure_combo, 0, 2)
        top.addWidget(self.worst_first_button, 0, 3)
        top.addWidget(self.counts_label, 1, 0, 1, 3)
        top.addWidget(self.open_button, 1, 3)
        top.setColumnStretch(2, 1)

        self.resume_bar = QWidget()
        self.resume_bar.setStyleSheet("QWidget#resume { background: rgb(255, 243, 205); border-radius: 4px; }")
        self.resume_bar.setObjectName("resume")
        resume_row = QHBoxLayout(self.resume_bar)
        resume_row.setContentsMargins(6, 4, 6, 4)
        self.resume_label = QLabel("")
        self.resume_label.setWordWrap(True)
        self.resume_button = QPushButton("Continue")
        self.resume_button.setToolTip("Open this review with every decision you made")
        self.resume_button.clicked.connect(self.resume_offered)
        self.resume_dismiss = QPushButton("Not now")
        self.resume_dismiss.clicked.connect(self.resume_bar.hide)
        resume_row.addWidget(self.resume_label, 1)
        resume_row.addWidget(self.resume_button)
        resume_row.addWidget(self.resume_dismiss)
        self.resume_bar.hide()

        self.model = ReviewTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.setItemDelegateForColumn(3, StateDelegate(self.table))
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 10)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
        self.table.setToolTip("Worst first (click a header to sort by it). A accept, R reject, "
                              "\u2191/\u2193 previous/next, Ctrl+Z undo")
        header.setSectionsClickable(True)
        header.setSortIndicatorShown(True)
        header.setSortIndicator(-1, Qt.AscendingOrder)
        header.sortIndicatorChanged.connect(lambda col, order: self.sort_by(col, order))
        self.table.selectionModel().currentRowChanged.connect(self._on_current_changed)

        self.title_label = QLabel("")
        self.title_label.setTextFormat(Qt.PlainText)
        title_font = self.title_label.font()
        title_font.setPointSizeF(title_font.pointSizeF() * 1.15)
        title_font.setBold(True)
        self.title_label.setFont(title_font)
        self.title_label.setMinimumWidth(1)  # long file names are clipped; the tooltip has it all
        self.state_label = QLabel("")
        self.state_label.setAlignment(Qt.AlignCenter)
        self.state_label.setMinimumWidth(150)
        self.state_label.setFont(title_font)
        title_row = QHBoxLayout()
        title_row.addWidget(self.title_label, 1)
        title_row.addWidget(self.state_label)
        self.canvas = ImageCanvas()
        self.canvas.set_message("Nothing to review yet")
        self.canvas.clicked.connect(self._on_canvas_click)
        self._dim_item = pg.ImageItem(axisOrder="row-major")
        self._dim_item.setZValue(5)  # over the photo, under the highlighted structure
        self.canvas.viewbox.addItem(self._dim_item)
        self.tools = DrawingTools(self.canvas, self._edit_source, self, polygon_replaces=self._polygon_replaces)
        self.tools.edited.connect(self._on_drawn)
        self.tools.tool_changed.connect(lambda name: name and self.set_fix_mode(False))
        self.toolbar = DrawingToolbar(self.tools, on_undo=self.undo, on_redo=self.redo)
        viewer = QWidget()
        viewer_layout = QVBoxLayout(viewer)
        viewer_layout.setContentsMargins(4, 2, 4, 0)
        viewer_layout.addLayout(title_row)
        viewer_layout.addWidget(self.toolbar)
        viewer_layout.addWidget(self.canvas, 1)
        self.viewer = viewer

        self.splitter = None
        if not self.central:
            splitter = QSplitter(Qt.Vertical)
            splitter.addWidget(viewer)
            splitter.addWidget(self.table)
            splitter.setStretchFactor(0, 2)  # the photo gets the room; the table shows ~8 rows
            splitter.setStretchFactor(1, 1)
            splitter.setSizes([660, 330])
            self.splitter = splitter

        def button(text: str, tip: str, slot, color: tuple | None = None) -> QPushButton:
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            b.setFocusPolicy(Qt.NoFocus)  # keys keep going to the table
            b.setMinimumWidth(48)  # may shrink (clipped) when the panel shares a narrow dock with others
            if color is not None:
                b.setStyleSheet(f"QPushButton {{ background: rgb{color}; color: white; font-weight: bold; "
                                f"padding: 6px 14px; }} QPushButton:disabled {{ background: rgb(190,190,190); }}")
            return b

        self.accept_button = button("Accept  (A)", "Accept this structure's outline (key A), then go to the next",
                                    self.accept_current, STATE_COLORS[ACCEPTED][0])
        self.reject_button = button("Reject  (R)", "Reject this outline: it will not be written (key R)",
                                    self.reject_current, STATE_COLORS[REJECTED][0])
        self.fix_button = button("Fix  (F)", "", lambda on: self.set_fix_mode(on))
        self.fix_button.setCheckable(True)
        self.undo_button = button("Undo  (Ctrl+Z)", "Undo the last accept, reject or fix", self.undo)
        self.accept_specimen_button = button(
            "Accept specimen  (Shift+A)",
            "Accept every structure of this specimen you have not reviewed yet", self.accept_specimen)
        self.reject_specimen_button = button(
            "Reject specimen  (Shift+R)",
            "Reject every structure of this specimen you have not reviewed yet (e.g. a bad photo)",
            self.reject_specimen)
        self.template_button = button(
            "Add as template", "Use this specimen, with its outlines that are not rejected, as another "
            "template for training", self.add_as_template)
        self.write_button = button(
            "Write back\u2026", "Put the ACCEPTED outlines into the Descriptron project (asks first); "
            "rejected and unreviewed ones are never written", self.write_back)
        grid = QGridLayout()
        if self.central:  # a narrow panel: three buttons a row
            self.accept_specimen_button.setText("Accept all  (\u21e7A)")
            self.reject_specimen_button.setText("Reject all  (\u21e7R)")
            order = [self.accept_button, self.reject_button, self.fix_button,
                     self.accept_specimen_button, self.reject_specimen_button, self.undo_button,
                     self.template_button, self.write_button]
            for i, b in enumerate(order):
                grid.addWidget(b, i // 3, i % 3)
        else:
            grid.addWidget(self.accept_button, 0, 0)
            grid.addWidget(self.reject_button, 0, 1)
            grid.addWidget(self.fix_button, 0, 2)
            grid.addWidget(self.undo_button, 0, 3)
            grid.addWidget(self.accept_specimen_button, 1, 0)
            grid.addWidget(self.reject_specimen_button, 1, 1)
            grid.addWidget(self.template_button, 1, 2)
            grid.addWidget(self.write_button, 1, 3)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.resume_bar)
        layout.addWidget(self.splitter if self.splitter is not None else self.table, 1)
        layout.addLayout(grid)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setFocusProxy(self.table)
        for w in [self, self.table, self.table.viewport(), self.canvas, self.canvas.view,
                  self.canvas.view.viewport(), self.viewer] + [b for b in self.findChildren(QPushButton)]:
            w.installEventFilter(self)

    # ------------------------------------------------------------------ sessions
    def set_session(self, session: ReviewSession | None, session_path: str | Path | None = None) -> None:
        """Review ``session``; it is saved to ``session_path`` after every change (None: not saved)."""
        if self._autosave.isActive():
            self.save_session()  # the previous one's last changes
        if self.session is not None and self._on_session_changed in self.session.listeners:
            self.session.listeners.remove(self._on_session_changed)
        self.set_fix_mode(False)
        self.image_loader.forget()  # a photo of the previous review is no longer wanted
        self.session = session
        self.session_path = Path(session_path) if session_path else None
        self._shown_item = None
        if session is not None:
            session.listeners.append(self._on_session_changed)
            self.canvas.colors.assign(session.structure_names())
            self.resume_bar.hide()
        self.structure_combo.blockSignals(True)
        self.structure_combo.clear()
        self.structure_combo.addItem(ALL_STRUCTURES)
        for name in (session.structure_names() if session is not None else []):
            self.structure_combo.addItem(name)
        self.structure_combo.blockSignals(False)
        self.model.structure = None
        self.model.set_session(session)
        resume = session.resume_item() if session is not None else None
        if resume is None or not self.select(resume):  # Continue: where the reviewer stopped
            self._select_row(0)
        if not self.model.rows:
            self._show_current()
        self._update_actions()

    def load_results(self, results, predictions_path: str | Path | None = None,
                     session_path: str | Path | None = None) -> ReviewSession:
        """Review fresh ``TargetResult``s (e.g. right after propagation in the GUI). The session is
        kept at ``session_path``, default ``review.json`` beside the predictions when a predictions path
        is given.

        Masks are compacted to RLE here (on the GUI thread): for runs of
        hundreds of big photos build ``ReviewSession.from_results(results, path, compact=True)``
        in the propagation worker instead and pass it to :meth:`set_session`."""
        session = ReviewSession.from_results(results, predictions_path, compact=True)
        if session_path is None and predictions_path is not None:
            session_path = review_path_for(predictions_path)
        self.set_session(session, session_path)
        if self.session_path is not None:
            self.save_session()
        return session

    def open_predictions(self, path: str | Path) -> ReviewSession | None:
        """Review a predictions file, continuing its saved review if there is one. Errors are
        shown to the user (returns None then; the current review stays)."""
        try:
            session = ReviewSession.open_predictions(path)
            session_path = find_review_for(path) or review_path_for(path)
        except UserError as exc:
            self.host.show_error("Cannot open the predictions", str(exc))
            return None
        except Exception as exc:  # noqa: BLE001
            log.exception("opening predictions %s failed", path)
            self.host.show_error("Cannot open the predictions", f"{type(exc).__name__}: {exc}",
                                 traceback.format_exc())
            return None
        self.set_session(session, session_path)
        c = session.counts()
        self.host.show_status(f"Reviewing {c['total']} predictions on {c['specimens']} specimens "
                              f"({c['reviewed']} reviewed before)")
        return session

    def _ask_open_predictions(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open predictions or a review", self.predictions_folder(),
            "Predictions or review (*.json *.rlejson *.jsonl);;All files (*)")
        if path:
            self.open_predictions(path)

    def predictions_folder(self) -> str:
        """Where "Open predictions..." starts: this review's run folder, else the project's newest
        run, else its runs folder, else the project folder."""
        if self.session_path is not None:
            return str(self.session_path.parent)
        store = getattr(self.host, "store", None)
        project = getattr(store, "path", None) if store is not None else None
        latest = latest_review(project)
        if latest is not None:
            return str(latest.parent)
        if project:
            base = Path(project) if Path(project).is_dir() else Path(project).parent
            runs = base / RUNS_FOLDER_NAME
            return str(runs if runs.is_dir() else base)
        return ""

    # ------------------------------------------------------------------ resuming
    def _offer_resume(self, store: Any) -> None:
        """A project was opened (or changed): offer its newest saved review if nothing is open here."""
        if self.session is not None and self.session.items:
            return
        latest = latest_review(getattr(store, "path", None)) if store is not None else None
        if latest is None:
            self.resume_bar.hide()
            self._offered = None
            return
        if (id(store), latest) == self._offered_for:
            return  # offered for this project already (maybe dismissed): edits do not offer it again
        self._offered_for = (id(store), latest)
        info = review_summary(latest)
        if not info:
            return
        self._offered = latest
        saved = (info.get("saved") or "").replace("T", " ")[:16]
        self.resume_label.setText(
            f"<b>Continue your review?</b> {latest.parent.name}: {info['reviewed']} of {info['total']} "
            f"reviewed ({info['accepted']} accepted, {info['rejected']} rejected)"
            + (f", saved {saved}" if saved else ""))
        self.resume_label.setToolTip(str(latest))
        self.resume_bar.show()

    def offered_review(self) -> Path | None:
        """The review the resume bar offers (None when it offers nothing)."""
        return self._offered if not self.resume_bar.isHidden() else None

    def resume_offered(self) -> ReviewSession | None:
        """"Continue": open the offered review with every decision."""
        if self._offered is None:
            return None
        session = self.open_predictions(self._offered)
        if session is not None:
            self.resume_bar.hide()
        return session

    def close_panel(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    # ------------------------------------------------------------------ sorting and filtering
    def sort_by(self, column: int, order=Qt.AscendingOrder) -> None:
        """Sort the table by a column (0 specimen, 1 structure, 2 score, 3 state); -1: worst first."""
        item = self.current_item()
        header = self.table.horizontalHeader()
        if header.sortIndicatorSection() != column or header.sortIndicatorOrder() != order:
            header.blockSignals(True)
            header.setSortIndicator(column, order)
            header.blockSignals(False)
        self.model.sort(column, order)
        if item is None or not self.select(item):
            self._select_row(0)
        self._show_current()
        self._update_actions()

    def set_structure_filter(self, name: str | None) -> None:
        """Only this structure's rows (None: all structures)."""
        index = self.structure_combo.findText(name) if name else 0
        if index < 0:
            raise ValueError(f"no structure {name!r} in this review")
        self.structure_combo.setCurrentIndex(index)

    def _on_structure_changed(self, index: int) -> None:
        item = self.current_item()
        self.model.set_structure(None if index <= 0 else self.structure_combo.itemText(index))
        if item is None or not self.select(item):
            self._select_row(0)
        self.table.setFocus()
        self._show_current()
        self._update_actions()

    # ------------------------------------------------------------------ drawing
    def _edit_source(self) -> np.ndarray | None:
        item = self.current_item()
        return None if item is None else item.current_mask

    def _polygon_replaces(self) -> bool:
        """A polygon drawn over a prediction (or a click fix of it) is the new outline; once the
        outline was drawn by hand, more polygons add parts to it (six legs, say)."""
        item = self.current_item()
        return item is not None and not item.hand_edited

    def _on_drawn(self, mask: np.ndarray, what: str) -> None:
        """A hand edit of the shown structure: it replaces the outline (one undoable step)."""
        item = self.current_item()
        if item is None or self.session is None:
            return
        if item.written:
            self.host.show_status(f"{item.label} is in the project already; change it in Descriptron", 8000)
            return
        replaced = what == "polygon" and not item.hand_edited
        if not self._act("Edit", lambda: self.session.edit(item, mask, what))[0]:
            return
        if replaced:
            self.host.show_status(f"{item.label}: your polygon replaced the prediction; more polygons add "
                                  "parts to it. Ctrl+Z brings the prediction back", 8000)
        row = self.current_row()
        self.model.refresh()
        if not self.select(item):
            self._select_row(row)
        self._show_current(force=True)
        self._update_actions()

    def redo(self) -> None:
        self._undo_or_redo(redo=True)

    def _undo_or_redo(self, redo: bool) -> None:
        """Undo (or redo) the last change and select the item it restored."""
        if self.session is None or not (self.session.can_redo if redo else self.session.can_undo):
            self.host.show_status("Nothing to redo" if redo else "Nothing to undo")
            return
        row = self.current_row()
        self.set_fix_mode(False)
        restored = self.session.redo() if redo else self.session.undo()
        self.model.refresh()
        if restored and self.model.row_of(restored[0]) >= 0:
            self._select_row(self.model.row_of(restored[0]))
        else:
            self._select_row(row)
        self._show_current(force=True)
        self._update_actions()

    def _show_viewer(self) -> None:
        """Put the viewer in the host's central area (while this panel is shown)."""
        if self.central and self.isVisible():
            try:
                self.host.show_central_view(self.viewer, self)
            except TypeError:  # a host whose show_central_view takes the view only
                self.host.show_central_view(self.viewer)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.session is not None:
            self._show_viewer()

    def save_session(self) -> bool:
        """Write the review to ``session_path`` now (if there is one); errors are shown."""
        self._autosave.stop()
        if self.session is None or self.session_path is None:
            return False
        try:
            self.session.save(self.session_path)
            return True
        except OSError as exc:
            self.host.show_error("Cannot save the review",
                                 f"{self.session_path}: {exc}. Your decisions are kept in this window; "
                                 "free some disk space or check the folder's permissions.")
            return False

    def _on_session_changed(self) -> None:
        if self.session_path is not None:
            self._autosave.start()
        self.session_changed.emit()

    def sizeHint(self):
        """Wide when the photo is in the panel (hosts cap side panels); narrower when the photo
        is in the host's central area."""
        hint = super().sizeHint()
        hint.setWidth(NARROW_WIDTH if self.central else max(hint.width(), PREFERRED_WIDTH))
        return hint

    def hideEvent(self, event) -> None:  # the dock closed or the window closing: keep everything
        if self._autosave.isActive():
            self.save_session()
        if self.central and callable(getattr(self.host, "central_view", None)) \
                and self.host.central_view() is self.viewer:
            self.host.show_central_view(None)  # another panel's turn: the photo with the project's outlines
        super().hideEvent(event)

    # ------------------------------------------------------------------ selection
    def current_item(self) -> ReviewItem | None:
        row = self.table.currentIndex().row()
        return self.model.rows[row] if 0 <= row < len(self.model.rows) else None

    def current_row(self) -> int:
        return self.table.currentIndex().row()

    def select(self, item: ReviewItem) -> bool:
        """Select ``item`` if the filter shows it."""
        row = self.model.row_of(item)
        if row >= 0:
            self._select_row(row)
        return row >= 0

    def _select_row(self, row: int) -> None:
        n = len(self.model.rows)
        if n == 0:
            self.table.setCurrentIndex(QModelIndex())
            self._show_current()
            return
        row = min(max(row, 0), n - 1)
        index = self.model.index(row, 0)
        self.table.setCurrentIndex(index)
        self.table.scrollTo(index)
        if self.current_item() is not self._shown_item:
            self._show_current()

    def _on_current_changed(self, *_args) -> None:
        self._show_current()
        self._update_actions()

    def next_item(self) -> None:
        self._select_row(self.current_row() + 1)

    def previous_item(self) -> None:
        self._select_row(max(self.current_row() - 1, 0))

    def _refresh_after(self, row: int, item: ReviewItem | None, advance: bool) -> None:
        """Rows are rebuilt: select what comes next (the same row if the item left the view)."""
        self.model.refresh()
        new_row = self.model.row_of(item) if item is not None else -1
        if new_row < 0:
            self._select_row(row)
        else:
            self._select_row(new_row + 1 if advance and new_row + 1 < len(self.model.rows) else new_row)
        self._show_current(force=True)
        self._update_actions()

    # ------------------------------------------------------------------ actions
    def _act(self, what: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """Run a review action -> (done, its value); a problem is shown to the user and the
        panel stays usable."""
        try:
            return True, fn()
        except UserError as exc:
            self.host.show_error(what, str(exc))
        except Exception as exc:  # noqa: BLE001
            log.exception("%s failed", what)
            self.host.show_error(what, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        return False, None

    def _set_current_state(self, state: str) -> None:
        item = self.current_item()
        if item is None or self.session is None:
            return
        row = self.current_row()
        self.set_fix_mode(False)
        if not self._act("Review", lambda: self.session.set_state(item, state))[0]:
            return
        self._refresh_after(row, item, advance=True)

    def accept_current(self) -> None:
        """Accept the selected structure and go to the next one."""
        self._set_current_state(ACCEPTED)

    def reject_current(self) -> None:
        """Reject the selected structure and go to the next one."""
        self._set_current_state(REJECTED)

    def _set_specimen_state(self, state: str) -> None:
        item = self.current_item()
        if item is None or self.session is None:
            return
        row = self.current_row()
        self.set_fix_mode(False)
        done, n = self._act("Review", lambda: self.session.set_target_state(item.target, state))
        if not done:
            return
        if n == 0:
            self.host.show_status(f"{item.target.label}: every structure is reviewed already")
        self._refresh_after(row, item, advance=True)

    def accept_specimen(self) -> None:
        self._set_specimen_state(ACCEPTED)

    def reject_specimen(self) -> None:
        self._set_specimen_state(REJECTED)

    def undo(self) -> None:
        self._undo_or_redo(redo=False)

    def add_as_template(self) -> None:
        item = self.current_item()
        if item is None or self.session is None:
            return
        masks = {i.structure: i.current_mask for i in self.session.items_of(item.target)
                 if i.state != REJECTED and not i.absent}
        if not masks:
            self.host.show_error("Add as template", f"{item.target.label} has no outline that is not "
                                 "rejected; fix one first (F, then click on the structure).")
            return
        if self.receivers(self.template_requested) == 0:
            self.host.show_error("Add as template", "Templates cannot be added from here in this window.")
            return
        self.template_requested.emit(item.target.image_id, item.target.path, masks)
        self.host.show_status(f"{item.target.label} sent to the templates with "
                              f"{len(masks)} structure{'s' * (len(masks) != 1)}")

    # ------------------------------------------------------------------ write back
    def write_back(self) -> None:
        """Ask, then write the accepted structures into the host's store (see the module docstring)."""
        if self.session is None:
            return
        store = self.host.store
        if store is None:
            self.host.show_error("Write back", "No Descriptron project is open: open the folder or "
                                 "annotation file of these specimens first, then write back.")
            return
        pending = [i for i in self.session.items if i.state == ACCEPTED and not i.written]
        if not pending:
            self.host.show_status("Nothing new to write: accept structures first (A)")
            return
        n_spec = len({id(i.target) for i in pending})
        box = QMessageBox(QMessageBox.Question, "Write back to Descriptron",
                          f"Write {len(pending)} accepted structure{'s' * (len(pending) != 1)} on "
                          f"{n_spec} specimen{'s' * (n_spec != 1)} into {_store_name(store)}?",
                          QMessageBox.NoButton, self)
        box.setInformativeText("Only what you accepted is written, with its score as a record. Rejected and "
                               "unreviewed predictions are left out; nothing else in the project changes.\n"
                               + _saving_note(store))
        save = box.addButton(QMessageBox.Save)
        save.setText("Write and save")
        save.setToolTip("Write the structures and save the project files now")
        apply = box.addButton(QMessageBox.Apply)
        apply.setText("Write, save later")
        apply.setToolTip("Write the structures; File > Save saves the project")
        box.addButton(QMessageBox.Cancel)
        box.setDefaultButton(save)
        replace = QCheckBox("Replace outlines the project already has for these structures")
        replace.setChecked(self.replace_existing)
        box.setCheckBox(replace)
        answer = box.exec_()
        if answer not in (QMessageBox.Save, QMessageBox.Apply):
            return
        self.set_fix_mode(False)
        row, item = self.current_row(), self.current_item()
        try:
            summary = self.session.write_back(store, replace_existing=replace.isChecked())
        except UserError as exc:
            summary = None
            self.host.show_error("Write back", str(exc))
        except Exception as exc:  # noqa: BLE001
            summary = None
            log.exception("write back failed")
            self.host.show_error("Write back", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        # A failure part-way still leaves written items in the store: tell the host in every case.
        if summary is None or summary.changed:
            self.host.notify_store_changed()
        self.save_session()
        self._refresh_after(row, item, advance=False)
        if summary is None:
            return
        saved = ""
        if summary.changed and answer == QMessageBox.Save:
            try:
                self.host.save_store()
                saved = " Project saved."
            except Exception as exc:  # noqa: BLE001 - StoreError and the like: the data is safe in memory
                self.host.show_error("Save", f"The structures are in the project but it could not be saved: "
                                     f"{exc}\nUse File > Save after fixing the problem.")
        self.host.show_status(summary.message().splitlines()[0] + saved, 10000)
        if summary.skipped:
            QMessageBox(QMessageBox.Information, "Write back", summary.message(), QMessageBox.Ok, self).exec_()
        self.written_back.emit(summary)

    # ------------------------------------------------------------------ fix mode
    def set_fix_mode(self, on: bool) -> None:
        """In fix mode, clicks on the photo re-segment the selected structure with SAM2."""
        on = bool(on) and self.reprompt is not None and self.current_item() is not None \
            and not self.current_item().written
        self._fix_mode = on
        self._pending = None
        if on and self.tools.tool:
            self.tools.set_tool("")  # clicks go to SAM2 now, not to a drawing tool
        if self.fix_button.isChecked() != on:
            self.fix_button.blockSignals(True)
            self.fix_button.setChecked(on)
            self.fix_button.blockSignals(False)
        self.canvas.view.setCursor(Qt.CrossCursor if on or self.tools.tool else Qt.ArrowCursor)
        if on:
            self.host.show_status("Fix: left click = part of the structure, right click = not part of it. "
                                  "Esc when done; A to accept.", 0)
        self._update_actions()

    @property
    def fix_mode(self) -> bool:
        return self._fix_mode

    def set_reprompt(self, reprompt: Reprompt | None) -> None:
        """Set (or remove) the re-segmentation callable, e.g. once a model is loaded."""
        self.reprompt = reprompt
        if reprompt is None:
            self.set_fix_mode(False)
        self._update_actions()

    def _on_canvas_click(self, x: float, y: float, button: str) -> None:
        item = self.current_item()
        if not self._fix_mode or item is None:
            return
        points = list(item.points) + [(float(x), float(y), 1 if button == "left" else 0)]
        if self._pending is not None and self._pending[0] is item:
            points = self._pending[1] + [points[-1]]
        self.canvas.set_points([(px, py, lab == 1) for px, py, lab in points])
        if self._prompt_worker is not None:  # SAM2 busy: send all points when it is done
            self._pending = (item, points)
            return
        self._start_reprompt(item, points)

    def _start_reprompt(self, item: ReviewItem, points: list) -> None:
        self._pending = None
        worker = EngineWorker(self.reprompt, item.target.prompt_id, [(px, py) for px, py, _ in points],
                              [lab for _, _, lab in points], description=f"fixing {item.label}")
        worker.result.connect(lambda mask, it=item, pts=points: self._on_reprompt_result(it, pts, mask))
        worker.error.connect(lambda msg, details: self.host.show_error("Fix", msg, details))
        worker.finished.connect(self._on_reprompt_finished)
        self._prompt_worker = worker
        self.host.show_status(f"Re-segmenting {item.label}\u2026", 0)
        self.host.register_worker(worker)
        worker.start()

    def _on_reprompt_result(self, item: ReviewItem, points: list, mask: Any) -> None:
        if isinstance(mask, tuple):  # (mask, score) from an interactive segmenter
            mask = mask[0]
        if self.session is None or item not in self.session.items:
            return
        done, _ = self._act("Fix", lambda: self.session.correct(
            item, None if mask is None else np.asarray(mask), points))
        if not done:
            return
        was_current = self.current_item() is item
        row = self.current_row()
        self.model.refresh()
        if was_current:
            self.select(item)
        else:
            self._select_row(row)
        self._show_current(force=True)
        self._update_actions()
        self.host.show_status(f"{item.label}: fixed with {len(points)} point(s). A to accept, Ctrl+Z to undo", 8000)

    def _on_reprompt_finished(self) -> None:
        self._prompt_worker = None
        if self._pending is not None and self._fix_mode and self._pending[0] is self.current_item():
            item, points = self._pending
            self._start_reprompt(item, points)
        else:
            self._pending = None

    def reprompt_running(self) -> bool:
        return self._prompt_worker is not None

    # ------------------------------------------------------------------ display
    def _show_current(self, force: bool = False) -> None:
        item = self.current_item()
        if item is self._shown_item and not force:
            return
        if item is not self._shown_item and self._fix_mode:
            self.set_fix_mode(False)
        self._shown_item = item
        if item is not None and self.session is not None:
            self.session.position = item.index  # saved with the next change: Continue comes back here
        self._update_title(item)
        self._update_counts()
        if item is not None:
            self._show_viewer()
        if item is None:
            self._dim_item.clear()
            self.canvas.set_image(None, "Nothing to review yet" if self.session is None or not self.session.items
                                  else "Nothing here: choose another filter")
            return
        path = self._image_path(item)
        if path is None:
            self._dim_item.clear()
            self.canvas.set_image(None, f"Image file not found: {item.target.label}")
            return
        self._follow_in_host(path)
        if path in self._image_cache:
            self._draw(item, self._image_cache[path])
        elif path in self._image_errors:
            self._dim_item.clear()
            self.canvas.set_image(None, f"Cannot show {item.target.label}: {self._image_errors[path]}")
        else:
            self._request_image(path)

    def _follow_in_host(self, path: str) -> None:
        """Show the reviewed specimen in the host's main view too (with what the store
        already has on it), so the two views never show different specimens."""
        store = getattr(self.host, "store", None)
        record = store.image_by_file(path) if store is not None else None
        current = self.host.current_image()
        if record is not None and (current is None or current.id != record.id):
            self.host.set_current_image(record.id)

    def _image_path(self, item: ReviewItem) -> str | None:
        if item.target.path:
            return item.target.path
        store = getattr(self.host, "store", None)
        if store is not None and item.target.image_id is not None:
            try:
                rec = store.image(item.target.image_id)
                return str(rec.path) if rec.path is not None else None
            except UserError:
                return None
        return None

    def _draw(self, item: ReviewItem, pixels: np.ndarray) -> None:
        shape = pixels.shape[:2]
        same_image = self.canvas.image() is pixels
        if not same_image:
            self.canvas.set_image(pixels)
        else:
            self.canvas.clear_points()
            self.canvas.set_message("")
        mask = item.current_mask
        skipped = self.canvas.set_masks({} if item.absent else {item.structure: mask})
        if skipped:
            self.canvas.set_message(f"The prediction is {mask.shape[1]} x {mask.shape[0]} px, the photo "
                                    f"{shape[1]} x {shape[0]} px: not drawn")
        elif item.absent:
            self.canvas.set_message(f"{item.structure}: predicted absent.\nA confirms it is missing; "
                                    "F and a click outlines it.")
        others = {i.structure: i.current_mask for i in self.session.items_of(item.target)
                  if i is not item and not i.absent and i.state != REJECTED and i.current_mask.shape == shape}
        if others:
            rgba = compose_overlay(shape, others, self.canvas.colors, fill_alpha=90)
            rgba[..., 3] = (rgba[..., 3] * DIM_ALPHA).astype(np.uint8)
            self._dim_item.setImage(rgba, levels=(0, 255), autoLevels=False)
        else:
            self._dim_item.clear()
        if item.points:
            self.canvas.set_points([(x, y, lab == 1) for x, y, lab in item.points])
        self.tools.refresh()

    def _request_image(self, path: str) -> None:
        """Decode ``path`` off the GUI thread (``LatestImageLoader``: only the latest wish counts)."""
        self._dim_item.clear()
        self.canvas.set_image(None, f"Loading {Path(path).name}\u2026")
        self.image_loader.request(path, path)

    def _on_pixels(self, path: str, pixels: np.ndarray) -> None:
        self._image_cache[path] = pixels
        while len(self._image_cache) > IMAGE_CACHE_SIZE:
            self._image_cache.pop(next(iter(self._image_cache)))
        self._show_current(force=True)

    def _on_pixels_error(self, path: str, message: str) -> None:
        self._image_errors[path] = message
        self._show_current(force=True)
        self.host.show_status(f"Cannot load {path}: {message}", 10000)

    def image_loading(self) -> bool:
        return self.image_loader.busy

    def _update_title(self, item: ReviewItem | None) -> None:
        if item is None:
            self.title_label.setText("")
            self.state_label.setText("")
            self.state_label.setStyleSheet("")
            return
        score = "predicted absent" if item.absent else f"Score {score_text(item)}"  # the Score column's name
        self.title_label.setText(f"{item.target.label}  \u2014  {item.structure}  ({score})")
        self.title_label.setToolTip(item_tooltip(item))
        bg, fg = STATE_COLORS[item.state]
        self.state_label.setText(state_text(item))
        self.state_label.setStyleSheet(f"QLabel {{ background: rgb{bg}; color: rgb{fg}; padding: 4px 10px; "
                                       "border-radius: 4px; }")

    def _update_counts(self) -> None:
        if self.session is None:
            self.counts_label.setText("No predictions to review")
            return
        text = self.session.counts_text()
        failed = self.session.counts()["failed"]
        if failed:
            text += f"; {failed} specimen{'s' * (failed != 1)} could not be read"
        self.counts_label.setText(text)

    def _update_actions(self) -> None:
        item = self.current_item()
        has = item is not None
        editable = has and not item.written
        for b in (self.accept_button, self.reject_button, self.accept_specimen_button,
                  self.reject_specimen_button):
            b.setEnabled(editable)
        self.template_button.setEnabled(has)
        self.fix_button.setEnabled(editable and self.reprompt is not None)
        self.fix_button.setToolTip(
            "Fix the outline with clicks (key F): left click = part of the structure, right click = not. "
            "SAM2 re-segments after each click; Ctrl+Z undoes a click." if self.reprompt is not None else
            "Fixing needs the SAM2 model loaded: press \u201cOutline on the image\u201d once in the Templates panel")
        self.tools.set_enabled(editable)
        can_redo = self.session is not None and self.session.can_redo
        self.toolbar.redo_button.setEnabled(can_redo)
        can_undo = self.session is not None and self.session.can_undo
        self.toolbar.undo_button.setEnabled(can_undo)
        self.undo_button.setEnabled(can_undo)
        self.undo_button.setToolTip(f"Undo: {self.session.undo_text()} (Ctrl+Z)" if can_undo else "Nothing to undo")
        self.write_button.setEnabled(self.session is not None and any(
            i.state == ACCEPTED and not i.written for i in self.session.items))
        self._update_counts()

    def _on_filter_changed(self, _index: int) -> None:
        item = self.current_item()
        self.model.set_filter(self.filter_combo.currentData())
        if item is None or not self.select(item):
            self._select_row(0)
        self.table.setFocus()  # the review keys work again at once
        self._show_current()
        self._update_actions()

    def set_filter(self, name: str) -> None:
        """"all", "unreviewed", "accepted" or "rejected"."""
        for i, (_, value) in enumerate(FILTER_CHOICES):
            if value == name:
                self.filter_combo.setCurrentIndex(i)
                return
        raise ValueError(f"unknown filter {name!r}")

    # ------------------------------------------------------------------ keys
    def _key_action(self, event) -> Callable[[], None] | None:
        key, mods = event.key(), event.modifiers() & ~Qt.KeypadModifier
        if event.matches(QKeySequence.Undo) or (key == Qt.Key_Z and mods == Qt.ControlModifier):
            return self.undo
        if event.matches(QKeySequence.Redo) or (key == Qt.Key_Y and mods == Qt.ControlModifier) \
                or (key == Qt.Key_Z and mods == Qt.ControlModifier | Qt.ShiftModifier):
            return self.redo
        if mods == Qt.NoModifier:
            return {Qt.Key_A: self.accept_current, Qt.Key_R: self.reject_current,
                    Qt.Key_Down: self.next_item, Qt.Key_Right: self.next_item,
                    Qt.Key_Up: self.previous_item, Qt.Key_Left: self.previous_item,
                    Qt.Key_F: lambda: self.set_fix_mode(not self._fix_mode),
                    Qt.Key_Escape: lambda: self.tools.cancel() if self.tools.tool else self.set_fix_mode(False)
                    }.get(key)
        if mods == Qt.ShiftModifier:
            return {Qt.Key_A: self.accept_specimen, Qt.Key_R: self.reject_specimen}.get(key)
        return None

    def eventFilter(self, obj, event) -> bool:
        kind = event.type()
        if kind == QEvent.ShortcutOverride and self._key_action(event) is not None:
            event.accept()  # ours here, not the host's menu shortcut (e.g. its own Ctrl+Z)
            return True
        if kind == QEvent.KeyPress:
            action = self._key_action(event)
            if action is not None:
                action()
                return True
        return super().eventFilter(obj, event)

    def keyPressEvent(self, event) -> None:
        action = self._key_action(event)
        if action is not None:
            action()
            event.accept()
        else:
            super().keyPressEvent(event)


def _store_name(store: Any) -> str:
    path = getattr(store, "path", None)
    return f"the project {Path(path).name}" if path else "the project"


def _saving_note(store: Any) -> str:
    """What saving does to the user's files, in the store's own convention (store/store.py)."""
    from descriptron_sam2pal.store.store import PER_IMAGE

    if getattr(store, "mode", None) == PER_IMAGE:
        return ("Saving adds a new <photo>_final_<time>.json (+ .rlejson) next to each changed photo; "
                "the earlier files stay as they are, as backups.")
    return "Saving keeps a backup copy of the annotation file first (<file>.bak-<date-time>)."
