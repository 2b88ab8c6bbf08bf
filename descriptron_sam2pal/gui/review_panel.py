"""The Review panel: go through propagation results worst first, accept / reject / fix, write back.

A dock widget holding a table of every (specimen, structure) prediction sorted
worst first (or by any column: click its header), filters by state and by
structure, counts, the action buttons, and a viewer (``gui.review_viewer``): an
:class:`~.canvas.ImageCanvas` showing the selected specimen with the selected
structure highlighted (full colour, in the legend) and the specimen's other
predictions dimmed. On a host with a central area (``show_central_view``, the
standalone workspace) the viewer is shown there, large, while the panel is
shown; elsewhere it sits above the table in the panel. The viewer has the
drawing tools of :mod:`.drawing_tools` (polygon P, brush B, eraser E, vertices
V, fill holes H): each edit replaces the structure's outline, one undoable step.

Keys (``gui.review_keys``; while the panel or any part of it has the focus, they win over the
host's shortcuts there): **A** accept, **R** reject, **Shift+A / Shift+R** the whole
specimen (structures not reviewed yet), **Down/Right** next, **Up/Left**
previous, **F** fix mode (left click adds a positive point, right click a
negative one; SAM2 re-segments in a worker, ``gui.review_fix``), **Esc** leaves fix mode,
**Ctrl+Z** undo, **Ctrl+Shift+Z** / **Ctrl+Y** redo.

Resuming (``gui.resume_bar``): when a project is opened and the panel has nothing to review, the
newest saved review of the project (``<project>/sam2pal_runs/*/review.json``)
is offered in a bar at the top ("Continue"). "Open predictions..." starts in
the run folder and opens a review file as well as a predictions file.

The review (the Qt-free use case ``jobs.review``) is saved a moment after every change and
when the panel is hidden, to ``session_path``, so closing the window loses
nothing. "Write back..." (``gui.write_back_dialog``, the use case ``jobs.write_back``) first
checks the project as ``propagate --write-to`` checks its store (a refusal is shown, nothing
is written), asks, then puts the accepted structures into the host's store and calls
``host.notify_store_changed()``; the dialog offers "Write and save" (then ``host.save_store()``)
or "Write, save later" (the host's File > Save saves them later, and its unsaved-changes guard
still applies). The widgets are built in ``gui.review_layout``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from PyQt5.QtCore import Qt, QTimer, pyqtSignal
from PyQt5.QtWidgets import QFileDialog, QPushButton, QSplitter, QVBoxLayout, QWidget

from descriptron_sam2pal import UserError
from descriptron_sam2pal.gui.errors import shown_errors
from descriptron_sam2pal.gui.resume_bar import ResumeBar
from descriptron_sam2pal.gui.review_fix import FixController, Reprompt
from descriptron_sam2pal.gui.review_keys import ReviewKeys
from descriptron_sam2pal.gui.review_layout import build_buttons, build_filters, build_table
from descriptron_sam2pal.gui.review_rows import ReviewRows
from descriptron_sam2pal.gui.review_viewer import ReviewViewer
from descriptron_sam2pal.gui.write_back_dialog import write_back_with_dialogs
from descriptron_sam2pal.jobs.review import ACCEPTED, REJECTED, ReviewItem, ReviewSession
from descriptron_sam2pal.jobs.propagation import PREDICTIONS_FILE
from descriptron_sam2pal.jobs.review_files import find_review_for, predictions_folder, review_path_for

AUTOSAVE_DELAY_MS = 800
PREFERRED_WIDTH = 900    # px the panel asks for when the photo is in it
NARROW_WIDTH = 460       # ... and when the photo is in the host's central area


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
        self.session: ReviewSession | None = None
        self.session_path: Path | None = None
        #: The default of the write-back dialog's "replace outlines already in the project".
        self.replace_existing = False
        self.fix = FixController(host, lambda: self.rows.current_item(), reprompt, self)
        self.fix.fixed.connect(self._on_fixed)
        self.fix.failed.connect(lambda msg, details: self.host.show_error("Fix", msg, details))
        self._shown_item: ReviewItem | None = None
        self._autosave = QTimer(self)
        self._autosave.setSingleShot(True)
        self._autosave.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave.timeout.connect(self.save_session)
        #: The viewer goes to the host's central area (large) when the host has one.
        self.central = callable(getattr(host, "show_central_view", None))
        self._build()
        self._unsubscribe = []
        if callable(getattr(host, "on_store_changed", None)):
            self._unsubscribe.append(host.on_store_changed(self._offer_resume))
        self._update_actions()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        """The panel, top to bottom: filters and counts, the resume bar, the photo and the table
        (or the table alone when the photo is in the host's central area), the action buttons."""
        top = build_filters(self)
        self.open_button.clicked.connect(self._ask_open_predictions)
        self.resume_bar = ResumeBar()
        self.resume_bar.continue_requested.connect(self._continue_review)
        build_table(self)
        self.rows = ReviewRows(self.table, self.model, self.filter_combo, self.structure_combo,
                               self._show_current, self._update_actions)
        self._build_viewer()
        self.splitter = None
        if not self.central:
            splitter = QSplitter(Qt.Vertical)
            splitter.addWidget(self.viewer)
            splitter.addWidget(self.table)
            splitter.setStretchFactor(0, 2)  # the photo gets the room; the table shows ~8 rows
            splitter.setStretchFactor(1, 1)
            splitter.setSizes([660, 330])
            self.splitter = splitter
        grid = build_buttons(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.resume_bar)
        layout.addWidget(self.splitter if self.splitter is not None else self.table, 1)
        layout.addLayout(grid)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setFocusProxy(self.table)
        self.keys = ReviewKeys(self)
        self.keys.watch([self, self.table, self.table.viewport(), self.canvas, self.canvas.view,
                         self.canvas.view.viewport(), self.viewer] + self.findChildren(QPushButton))

    def _build_viewer(self) -> None:
        """The photo (``ReviewViewer``) and its drawing tools, wired to this review."""
        self.viewer = ReviewViewer(self._edit_source, self._polygon_replaces, self.undo, self.redo)
        self.canvas, self.tools, self.toolbar = self.viewer.canvas, self.viewer.tools, self.viewer.toolbar
        self.canvas.clicked.connect(self._on_canvas_click)
        self.tools.edited.connect(self._on_drawn)
        self.tools.tool_changed.connect(lambda name: name and self.set_fix_mode(False))
        self.viewer.image_ready.connect(lambda _path: self._show_current(force=True))
        self.viewer.image_failed.connect(self._on_image_failed)

    # ------------------------------------------------------------------ sessions
    def set_session(self, session: ReviewSession | None, session_path: str | Path | None = None) -> None:
        """Review ``session``; it is saved to ``session_path`` after every change (None: not saved)."""
        if self._autosave.isActive():
            self.save_session()  # the previous one's last changes
        if self.session is not None and self._on_session_changed in self.session.listeners:
            self.session.listeners.remove(self._on_session_changed)
        self.set_fix_mode(False)
        self.viewer.forget_requests()  # a photo of the previous review is no longer wanted
        self.session = session
        self.session_path = Path(session_path) if session_path else None
        self._shown_item = None
        if session is not None:
            session.listeners.append(self._on_session_changed)
            self.canvas.colors.assign(session.structure_names())
            self.resume_bar.hide()
        self.rows.show_session(session)  # Continue: where the reviewer stopped
        if not self.model.rows:
            self._show_current()
        self._update_actions()

    def load_run_results(self, results, run_dir: str | Path | None) -> ReviewSession:
        """Review a run's fresh results: the predictions file and the review live in ``run_dir``."""
        predictions = Path(run_dir) / PREDICTIONS_FILE if run_dir is not None else None
        return self.load_results(results, predictions_path=predictions)

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
        done, opened = self._act("Cannot open the predictions", lambda: (
            ReviewSession.open_predictions(path), find_review_for(path) or review_path_for(path)))
        if not done:
            return None
        session, session_path = opened
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
        """Where "Open predictions..." starts (``jobs.review_files.predictions_folder``)."""
        store = getattr(self.host, "store", None)
        return predictions_folder(self.session_path, getattr(store, "path", None))

    # ------------------------------------------------------------------ resuming
    def _offer_resume(self, store: Any) -> None:
        """A project was opened (or changed): offer its newest saved review if nothing is open here."""
        if self.session is not None and self.session.items:
            return
        self.resume_bar.offer_for(store)

    def offered_review(self) -> Path | None:
        """The review the resume bar offers (None when it offers nothing)."""
        return self.resume_bar.offered()

    def resume_offered(self) -> ReviewSession | None:
        """"Continue": open the offered review with every decision."""
        offered = self.resume_bar.offered_path()
        return self._continue_review(offered) if offered is not None else None

    def _continue_review(self, path: Path) -> ReviewSession | None:
        session = self.open_predictions(path)
        if session is not None:
            self.resume_bar.hide()
        return session

    def close_panel(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    # ------------------------------------------------------------------ drawing
    def _edit_source(self) -> np.ndarray | None:
        item = self.rows.current_item()
        return None if item is None else item.current_mask

    def _polygon_replaces(self) -> bool:
        """A polygon drawn over a prediction (or a click fix of it) is the new outline; once the
        outline was drawn by hand, more polygons add parts to it (six legs, say)."""
        item = self.rows.current_item()
        return item is not None and not item.hand_edited

    def _on_drawn(self, mask: np.ndarray, what: str) -> None:
        """A hand edit of the shown structure: it replaces the outline (one undoable step)."""
        item = self.rows.current_item()
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
        self.rows.refresh_after(self.rows.current_row(), item, advance=False)

    def redo(self) -> None:
        self._undo_or_redo(redo=True)

    def _undo_or_redo(self, redo: bool) -> None:
        """Undo (or redo) the last change and select the item it restored."""
        if self.session is None or not (self.session.can_redo if redo else self.session.can_undo):
            self.host.show_status("Nothing to redo" if redo else "Nothing to undo")
            return
        row = self.rows.current_row()
        self.set_fix_mode(False)
        restored = self.session.redo() if redo else self.session.undo()
        self.rows.refresh_after(row, restored[0] if restored else None, advance=False)

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

    # ------------------------------------------------------------------ actions
    def _act(self, what: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """Run a review action -> (done, its value); a problem is shown, the panel stays usable."""
        return shown_errors(self.host, what, fn)

    def _set_current_state(self, state: str) -> None:
        item = self.rows.current_item()
        if item is None or self.session is None:
            return
        row = self.rows.current_row()
        self.set_fix_mode(False)
        if not self._act("Review", lambda: self.session.set_state(item, state))[0]:
            return
        self.rows.refresh_after(row, item, advance=True)

    def accept_current(self) -> None:
        """Accept the selected structure and go to the next one."""
        self._set_current_state(ACCEPTED)

    def reject_current(self) -> None:
        """Reject the selected structure and go to the next one."""
        self._set_current_state(REJECTED)

    def _set_specimen_state(self, state: str) -> None:
        item = self.rows.current_item()
        if item is None or self.session is None:
            return
        row = self.rows.current_row()
        self.set_fix_mode(False)
        done, n = self._act("Review", lambda: self.session.set_target_state(item.target, state))
        if not done:
            return
        if n == 0:
            self.host.show_status(f"{item.target.label}: every structure is reviewed already")
        self.rows.refresh_after(row, item, advance=True)

    def accept_specimen(self) -> None:
        self._set_specimen_state(ACCEPTED)

    def reject_specimen(self) -> None:
        self._set_specimen_state(REJECTED)

    def undo(self) -> None:
        self._undo_or_redo(redo=False)

    def add_as_template(self) -> None:
        item = self.rows.current_item()
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
        """Check, ask, then write the accepted structures into the host's store (see the module
        docstring and ``gui.write_back_dialog``)."""
        if self.session is None:
            return
        row, item = self.rows.current_row(), self.rows.current_item()

        def after_write() -> None:
            self.set_fix_mode(False)
            self.save_session()
            self.rows.refresh_after(row, item, advance=False)

        summary = write_back_with_dialogs(self, self.host, self.session, self.replace_existing, after_write)
        if summary is not None:
            self.written_back.emit(summary)

    # ------------------------------------------------------------------ fix mode
    def set_fix_mode(self, on: bool) -> None:
        """In fix mode, clicks on the photo re-segment the selected structure with SAM2."""
        on = bool(on) and self.fix.can_fix(self.rows.current_item())
        self.fix.set_active(on)
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
        return self.fix.active

    @property
    def reprompt(self) -> Reprompt | None:
        return self.fix.reprompt

    def set_reprompt(self, reprompt: Reprompt | None) -> None:
        """Set (or remove) the re-segmentation callable, e.g. once a model is loaded."""
        self.fix.reprompt = reprompt
        if reprompt is None:
            self.set_fix_mode(False)
        self._update_actions()

    def _on_canvas_click(self, x: float, y: float, button: str) -> None:
        item = self.rows.current_item()
        if not self.fix.active or item is None:
            return
        points = self.fix.click(item, x, y, button)
        self.canvas.set_points([(px, py, lab == 1) for px, py, lab in points])

    def _on_fixed(self, item: ReviewItem, points: list, mask: np.ndarray | None) -> None:
        """SAM2's new outline from the fix's points: it replaces the prediction (one undoable step)."""
        if self.session is None or item not in self.session.items:
            return
        if not self._act("Fix", lambda: self.session.correct(item, mask, points))[0]:
            return
        shown = item if self.rows.current_item() is item else None
        self.rows.refresh_after(self.rows.current_row(), shown, advance=False)
        self.host.show_status(f"{item.label}: fixed with {len(points)} point(s). "
                              "A to accept, Ctrl+Z to undo", 8000)

    def reprompt_running(self) -> bool:
        return self.fix.running()

    # ------------------------------------------------------------------ display
    def _show_current(self, force: bool = False) -> None:
        item = self.rows.current_item()
        if item is self._shown_item and not force:
            return
        if item is not self._shown_item and self.fix_mode:
            self.set_fix_mode(False)
        self._shown_item = item
        if item is not None and self.session is not None:
            self.session.position = item.index  # saved with the next change: Continue comes back here
        self.viewer.set_title(item)
        self._update_counts()
        if item is None:
            self.viewer.show_nothing("Nothing to review yet" if self.session is None or not self.session.items
                                     else "Nothing here: choose another filter")
            return
        self._show_viewer()
        path = self._image_path(item)
        if path is None:
            self.viewer.show_nothing(f"Image file not found: {item.target.label}")
            return
        self._follow_in_host(path)
        self.viewer.show_item(item, self.session.items_of(item.target), path)

    def _on_image_failed(self, path: str, message: str) -> None:
        self._show_current(force=True)
        self.host.show_status(f"Cannot load {path}: {message}", 10000)

    def image_loading(self) -> bool:
        return self.viewer.loading()

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
        item = self.rows.current_item()
        has = item is not None
        editable = has and not item.written
        for b in (self.accept_button, self.reject_button, self.accept_specimen_button,
                  self.reject_specimen_button):
            b.setEnabled(editable)
        self.template_button.setEnabled(has)
        self.fix_button.setEnabled(editable and self.reprompt is not None)
        self.fix_button.setToolTip(
            "Fix the outline with clicks (key F): left click = part of the structure, right click = not. "
            "SAM2 re-segments after each click; Ctrl+Z undoes a click."
            if self.reprompt is not None
            else "Fixing needs the SAM2 model loaded: press \u201cOutline on the image\u201d once in the "
            "Templates panel"
        )
        self.tools.set_enabled(editable)
        can_redo = self.session is not None and self.session.can_redo
        self.toolbar.redo_button.setEnabled(can_redo)
        can_undo = self.session is not None and self.session.can_undo
        self.toolbar.undo_button.setEnabled(can_undo)
        self.undo_button.setEnabled(can_undo)
        undo = f"Undo: {self.session.undo_text()} (Ctrl+Z)" if can_undo else "Nothing to undo"
        self.undo_button.setToolTip(undo)
        self.write_button.setEnabled(self.session is not None and any(
            i.state == ACCEPTED and not i.written for i in self.session.items))
        self._update_counts()
