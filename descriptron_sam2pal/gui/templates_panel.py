"""The Templates panel: outline structures on a few specimens with SAM2 clicks.

On the current image a left click marks a point on the structure, a right
click a point off it, a drag draws a box; SAM2 proposes the mask at once (the
image is encoded once in the background; each click then only runs the mask
decoder, also in the background: a click made while one is being answered replaces it, and only
the latest answer is shown). The user names the structure and accepts it: it goes into the
store as an annotation with ``attributes.source = "sam2pal-template"``.

On a host that lends its canvas (``image_canvas()``, the standalone workspace
does) the structure can also be drawn or corrected by hand, with no model at
all: polygon (P), brush (B), eraser (E), vertex editing (V), fill holes (H)
(see :mod:`.drawing_tools`); Refine (S) asks SAM2 to redo a hand-drawn outline
from its box and a few points inside it, shown as a proposal to keep or
discard. Every change of the proposed mask (SAM2's or a hand edit) is one step
of a :class:`~.drawing_tools.MaskHistory`: Ctrl+Z / Ctrl+Shift+Z undo and redo
them; with nothing left to undo, Ctrl+Z takes back the last accepted structure.

Needs a host with the optional canvas members (``host.api.CanvasHost``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PyQt5.QtCore import Qt
from PyQt5.QtGui import QKeySequence
from PyQt5.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QListWidget,
                             QListWidgetItem, QProgressBar, QPushButton, QShortcut, QVBoxLayout, QWidget)

from descriptron_sam2pal import UserError
from descriptron_sam2pal.store.merge import find_image
from descriptron_sam2pal.store.provenance import TEMPLATE_SOURCE, template_images
from descriptron_sam2pal.host.api import CanvasHost
from descriptron_sam2pal.gui.drawing_tools import TOOL_INFO, DrawingToolbar, DrawingTools, MaskHistory
from descriptron_sam2pal.gui.errors import shown_errors
from descriptron_sam2pal.gui.model_session import CheckpointPicker, ModelSession
from descriptron_sam2pal.gui.workers import EngineWorker, LatestCall
from descriptron_sam2pal.gui.fitting import VerticalScroll
from descriptron_sam2pal.imaging.drawing import drop_fragments, fragment_area
from descriptron_sam2pal.jobs.prompt_masks import PromptedMask, mask_from_prompts, read_image, refine_outline


COMMON_STRUCTURES = ("scape", "antenna", "eye", "head", "pronotum", "elytra", "legs")
_ID_ROLE = Qt.UserRole
OUTLINE_OFF_TEXT = "Outline on the image"
OUTLINE_ON_TEXT = "Outlining: click on the image (press to stop)"


def remove_annotation(store, image_id: Any, ann_id: Any) -> None:
    """Take an annotation back out of the store (Undo of an accepted structure)."""
    try:
        store.remove_annotation(image_id, ann_id)
    except UserError as exc:
        raise UserError(f"{exc}; nothing to undo") from exc


@dataclass
class _Prompts:
    """The clicks and box on the current image, in the order given (for Undo)."""

    # ("point", x, y, positive) or ("box", (x0, y0, x1, y1))
    events: list[tuple] = field(default_factory=list)

    def points(self) -> list[tuple[float, float, bool]]:
        return [(e[1], e[2], e[3]) for e in self.events if e[0] == "point"]

    def box(self) -> tuple[float, float, float, float] | None:
        boxes = [e[1] for e in self.events if e[0] == "box"]
        return boxes[-1] if boxes else None

    def __bool__(self) -> bool:
        return bool(self.events)


class TemplatesPanel(QWidget):
    """Dock panel: click on the image, name the structure, accept; the list of templates."""

    def __init__(self, host: Any, session: ModelSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.session = session
        self.can_prompt = isinstance(host, CanvasHost)
        self.prompts = _Prompts()
        self.proposal: np.ndarray | None = None
        self.score: float | None = None
        self.accepted: list[dict] = []  # undo stack of accepted structures
        self.history: MaskHistory | None = None  # the proposal's changes (SAM2 and hand edits)
        self._refine_wanted = False  # Refine pressed while SAM2 was loading or reading the image
        self.tools: DrawingTools | None = None
        canvas_of = getattr(host, "image_canvas", None)
        if self.can_prompt and callable(canvas_of):
            self.tools = DrawingTools(canvas_of(), lambda: self.proposal, self)
            self.tools.edited.connect(self._on_drawn)
            self.tools.tool_changed.connect(lambda _name: self._update())
        self._encoded_id: Any = None  # image whose features the segmenter holds
        self._encoder: EngineWorker | None = None
        # Clicks, boxes and Refine run SAM2 off the GUI thread; only the latest answer is shown.
        self.prompter = LatestCall(self, host.register_worker, "SAM2 proposal")
        self.prompter.answered.connect(self._on_sam2_answer)
        self.prompter.failed.connect(self._on_sam2_failed)
        self.prompter.idle.connect(self._on_prompter_idle)
        self._shown_events: tuple = ()  # the clicks and box the shown SAM2 proposal answers
        self._problem = ""  # why SAM2 cannot be used now (no checkpoint), shown until that changes
        self._unsubscribe: list = []
        self._build()
        if self.can_prompt:
            self._unsubscribe += [host.on_image_clicked(self._on_click), host.on_box_drawn(self._on_box)]
        self._unsubscribe += [host.on_current_image_changed(self._on_image_changed),
                              host.on_store_changed(lambda _store: self.refresh())]
        session.ready.connect(self._on_model_ready)
        session.loading.connect(lambda _on: self._update())
        session.failed.connect(self._on_model_failed)
        session.choice_changed.connect(lambda _c: self._reset_model_state())
        self.refresh()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        self.picker = CheckpointPicker(self.session)

        self.active_button = QPushButton(OUTLINE_OFF_TEXT)
        self.active_button.setCheckable(True)
        self.active_button.setStyleSheet(  # plainly visible when clicks on the image go to SAM2
            "QPushButton:checked { background: rgb(46, 110, 200); color: white; font-weight: bold; "
            "border: 1px solid rgb(30, 80, 150); border-radius: 3px; padding: 5px; }")
        self.active_button.setToolTip("When on, clicks on the image are SAM2 prompts: left click on the "
                                      "structure, right click off it, drag a box around it")
        self.active_button.toggled.connect(self._on_active_toggled)
        self.help_label = QLabel(
            "<b>Left click</b>: on the structure &nbsp; <b>Right click</b>: not on it<br>"
            "<b>Drag</b>: a box around it &nbsp; <b>Ctrl+Z</b>: undo")
        self.help_label.setWordWrap(True)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setTextVisible(False)
        self.busy.setMaximumHeight(10)
        self.busy.hide()
        self.status = QLabel()
        self.status.setWordWrap(True)

        self.name_combo = QComboBox()
        self.name_combo.setEditable(True)
        self.name_combo.setInsertPolicy(QComboBox.NoInsert)
        self.name_combo.setToolTip("The structure's name: choose one or type a new one "
                                   "(the same name on every template)")
        self.name_combo.lineEdit().setPlaceholderText("structure name, e.g. scape")
        self.name_combo.lineEdit().returnPressed.connect(self.accept_proposal)
        self.name_combo.editTextChanged.connect(lambda _t: self.proposal is not None and self._show())
        self.accept_button = QPushButton("Accept")
        self.accept_button.setToolTip("Save the proposed mask as this structure on this image (Enter)")
        self.accept_button.clicked.connect(self.accept_proposal)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Take back the last click, or else the last accepted structure (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Forget the clicks on this image and start again")
        self.clear_button.clicked.connect(self.clear_prompts)
        self.score_label = QLabel("")
        self.score_label.setToolTip("SAM2's own estimate of the mask quality (0 to 1)")
        self.toolbar = None
        self.discard_refine_button = QPushButton("Back to my outline")
        self.discard_refine_button.setToolTip(
            "Discard SAM2's refinement and keep the outline you drew (Ctrl+Z)"
        )
        self.discard_refine_button.clicked.connect(self.undo)
        self.discard_refine_button.hide()
        if self.tools is not None:
            self.toolbar = DrawingToolbar(self.tools, on_undo=self.undo, on_redo=self.redo,
                                          on_refine=self.refine)

        outline = QGroupBox("Outline a structure")
        form = QFormLayout()
        form.addRow("Structure:", self.name_combo)
        buttons = QHBoxLayout()
        for b in (self.accept_button, self.undo_button, self.clear_button):
            buttons.addWidget(b)
        box_layout = QVBoxLayout(outline)
        box_layout.addWidget(self.active_button)
        box_layout.addWidget(self.help_label)
        if self.toolbar is not None:
            draw_title = QLabel("<b>Or draw it by hand</b> (no model needed):")
            box_layout.addWidget(draw_title)
            box_layout.addWidget(self.toolbar)
            box_layout.addWidget(self.discard_refine_button)
        box_layout.addWidget(self.busy)
        box_layout.addWidget(self.status)
        box_layout.addLayout(form)
        box_layout.addWidget(self.score_label)
        box_layout.addLayout(buttons)

        self.template_list = QListWidget()
        self.template_list.setToolTip("Images with outlined structures; double-click to show one")
        self.template_list.itemDoubleClicked.connect(self._on_template_activated)
        self.template_summary = QLabel()
        self.template_summary.setWordWrap(True)

        content = QWidget()  # scrolls on a short screen instead of making the window taller than it
        layout = QVBoxLayout(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(VerticalScroll(content))
        layout.addWidget(self.picker)
        layout.addWidget(outline)
        templates_title = QLabel("<b>Templates</b> (images with outlined structures)")
        templates_title.setWordWrap(True)
        layout.addWidget(templates_title)
        layout.addWidget(self.template_list, 1)
        layout.addWidget(self.template_summary)

        undo = QShortcut(QKeySequence.Undo, self)
        undo.setContext(Qt.WindowShortcut)
        undo.activated.connect(self.undo)
        self._undo_shortcut = undo
        self._redo_shortcuts = []
        keys = {QKeySequence(k).toString(): QKeySequence(k) for k in ("Ctrl+Shift+Z", "Ctrl+Y")}
        for key in keys.values():
            redo = QShortcut(key, self)
            redo.setContext(Qt.WindowShortcut)
            redo.activated.connect(self.redo)
            self._redo_shortcuts.append(redo)
        if not self.can_prompt:
            self.active_button.setEnabled(False)
            self.active_button.setToolTip("This host does not pass image clicks to plugins")
        self._update()

    def sizeHint(self):
        hint = super().sizeHint()
        hint.setWidth(max(hint.width(), 400))  # room for the help lines and the model line
        return hint

    def refresh(self) -> None:
        """Re-read structure names and templates from the store."""
        store = self.host.store
        if store is not getattr(self, "_store", None):
            self._store = store
            self.accepted = []  # undo entries belong to the store they were made in
        current = self.name_combo.currentText()
        names = list(dict.fromkeys((store.structure_names() if store is not None else [])
                                   + list(COMMON_STRUCTURES)))
        self.name_combo.blockSignals(True)
        self.name_combo.clear()
        self.name_combo.addItems(names)
        self.name_combo.setEditText(current)
        self.name_combo.blockSignals(False)

        self.template_list.clear()
        templates = template_images(store)
        for record, structures in templates:
            item = QListWidgetItem(f"{record.file_name}: {', '.join(structures)}")
            item.setData(_ID_ROLE, record.id)
            item.setToolTip(str(record.path or record.file_name))
            self.template_list.addItem(item)
        n = len(templates)
        self.template_summary.setText(
            "No templates yet: outline a structure on a specimen and accept it." if n == 0 else
            f"{n} template{'s' * (n != 1)}" + (" (one or two more help the training)" if n < 3 else ""))
        self._update()

    def _update(self) -> None:
        has_image = self.host.current_image_array() is not None
        working = self.session.is_loading or self._encoder is not None or self.prompter.busy
        self.busy.setVisible(working)
        self.accept_button.setEnabled(self.proposal is not None)
        can_undo_edit = self.history is not None and self.history.can_undo
        self.undo_button.setEnabled(bool(self.prompts) or bool(self.accepted) or can_undo_edit)
        refined = self.history is not None and self.history.tag == "refine"
        self.discard_refine_button.setVisible(refined)
        if self.toolbar is not None:
            self.toolbar.undo_button.setEnabled(self.undo_button.isEnabled())
            self.toolbar.redo_button.setEnabled(self.history is not None and self.history.can_redo)
            self.toolbar.refine_button.setEnabled(self.proposal is not None and not self.session.is_loading)
        self.clear_button.setEnabled(bool(self.prompts))
        if self._problem and not self.session.is_ready:
            self.status.setText(self._problem)
        elif self.session.is_loading:
            self.status.setText("Loading SAM2... (the first time takes a while)")
        elif self._encoder is not None:
            self.status.setText("Reading the image with SAM2...")
        elif refined:
            self.status.setText(
                "SAM2's refinement is shown: name it and accept it, or go back to your outline."
            )
        elif self.proposal is not None and self.tools is not None and self.tools.tool:
            self.status.setText("Keep drawing, or name the structure and accept it (Enter in the name box).")
        elif self.tools is not None and self.tools.tool:
            text, key, what = TOOL_INFO[self.tools.tool]
            self.status.setText(f"{text} ({key}): {what}.")
        elif not self.active_button.isChecked():
            self.status.setText(f"Press \u201c{OUTLINE_OFF_TEXT}\u201d to start, or draw it by hand.")
        elif not has_image:
            self.status.setText("Open an image to outline its structures.")
        elif self.proposal is None:
            self.status.setText("Click on the structure.")
        else:
            self.status.setText("Add clicks to correct the mask, then name it and accept.")
        self.score_label.setText("" if self.score is None else f"SAM2 quality estimate: {self.score:.2f}")

    # --------------------------------------------------------------- prompts
    def _on_active_toggled(self, on: bool) -> None:
        self.active_button.setText(OUTLINE_ON_TEXT if on else OUTLINE_OFF_TEXT)
        if self.can_prompt:
            self.host.set_box_drawing(on)
        if on:
            self._prepare()
        else:
            self.clear_prompts()
        self._update()

    def set_active(self, on: bool = True) -> None:
        self.active_button.setChecked(on)

    def _prepare(self) -> bool:
        """True when the model is loaded and the current image encoded; otherwise starts that work
        (the image is read once no SAM2 call of this panel runs: they share the segmenter)."""
        try:
            self._problem = ""
            if not self.session.ensure_loaded():
                return False
        except UserError as exc:
            self._problem = str(exc)
            self.host.show_status(str(exc), 10000)
            return False
        record = self.host.current_image()
        pixels = self.host.current_image_array()
        if record is None or pixels is None:
            return False
        if self._encoder is not None:
            return False
        if self._encoded_id == record.id and self.session.loaded.segmenter.image is not None:
            return True
        if not self.prompter.busy:
            self._start_encoding(record.id, pixels)
        return False

    def _start_encoding(self, image_id: Any, pixels: np.ndarray) -> None:
        segmenter = self.session.loaded.segmenter
        worker = EngineWorker(read_image, segmenter, pixels, description="Reading the image with SAM2")
        worker.result.connect(lambda _r, i=image_id: self._on_encoded(i))
        worker.error.connect(lambda message, details: self.host.show_error("SAM2", message, details))
        worker.finished.connect(self._on_encoder_finished)
        self._encoder = worker
        self.host.register_worker(worker)
        worker.start()
        self._update()

    def _on_encoded(self, image_id: Any) -> None:
        self._encoded_id = image_id

    def _on_encoder_finished(self) -> None:
        self._encoder = None
        record = self.host.current_image()
        if record is not None and record.id != self._encoded_id:
            self._encoded_id = None
            if self.active_button.isChecked():
                self._prepare()  # the user moved on while it ran
        elif self._refine_wanted:
            self.refine()
        elif self.prompts:
            self._predict()
        self._update()

    def _on_model_ready(self) -> None:
        if self._refine_wanted:
            if self._prepare():  # the image was read before: refine now; else once it is read
                self.refine()
        elif self.active_button.isChecked() and self._prepare() and self.prompts:
            self._predict()
        self._update()

    def _on_model_failed(self, message: str, details: str) -> None:
        self.host.show_error("Cannot load SAM2", message, details)
        self._update()

    def _reset_model_state(self) -> None:
        self._encoded_id = None
        self.prompter.forget()  # an answer of the model chosen before is not shown
        if self.active_button.isChecked():
            self._prepare()
        self._update()

    def _on_click(self, x: float, y: float, button: str) -> None:
        if not self.active_button.isChecked() or self.host.current_image() is None:
            return
        self.prompts.events.append(("point", float(x), float(y), button == "left"))
        self._prompts_changed()

    def _on_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        if not self.active_button.isChecked() or self.host.current_image() is None:
            return
        self.prompts.events.append(("box", (float(x0), float(y0), float(x1), float(y1))))
        self._prompts_changed()

    def _prompts_changed(self) -> None:
        if self._prepare():
            self._predict()
        self._show()  # the markers now, the mask once SAM2 answers

    def _predict(self) -> None:
        """Ask SAM2 (in the background) for the mask of the current clicks and box."""
        if not self.prompts:
            self.prompter.forget()
            self.proposal, self.score = None, None
            self._show()
            return
        segmenter = self.session.loaded.segmenter  # in the key: the same clicks on another model differ
        self.prompter.request(("sam2", tuple(self.prompts.events), segmenter), mask_from_prompts, segmenter,
                              self.prompts.points(), self.prompts.box())
        self._update()

    def _on_sam2_answer(self, key: tuple, answer: PromptedMask) -> None:
        kind, events = key[:2]
        if kind == "refine":
            if answer.mask is None:
                self.host.show_status("SAM2 found nothing there; your outline is kept", 8000)
                return
            self.proposal, self.score = answer.mask, answer.score
            self.history.push(answer.mask, "refine")
            self._show()
            return
        self.proposal, self.score = answer.mask, answer.score
        self._record(self.proposal, "sam2", (self._shown_events, events))  # undo goes back to the first
        self._shown_events = events
        if self.proposal is None:
            self.host.show_status(
                "SAM2 found nothing there; click elsewhere on the structure or draw a box", 8000
            )
        self._show()

    def _on_sam2_failed(self, key: tuple, message: str, details: str) -> None:
        # A refinement keeps the outline.
        what = "refine the outline" if key[0] == "refine" else "propose a mask"
        self.host.show_error("SAM2", f"SAM2 could not {what}: {message}", details)

    def _on_prompter_idle(self) -> None:
        record = self.host.current_image()
        if (self.active_button.isChecked() or self._refine_wanted) and record is not None \
                and record.id != self._encoded_id:
            self._prepare()  # the image changed while SAM2 answered a click
        self._update()

    def _record(self, mask, what: str, data=None) -> None:
        """One step of the proposal's history (started from the mask before it)."""
        if self.history is None:
            self.history = MaskHistory(None)
        self.history.push(mask, what, data)

    def _on_drawn(self, mask: np.ndarray, what: str) -> None:
        """A hand edit from the drawing tools: it is the proposal now."""
        if self.host.current_image() is None:
            return
        self.prompter.forget()
        if self.history is None:
            self.history = MaskHistory(self.proposal)
        self.proposal = mask if mask.any() else None
        self.score = None
        self.history.push(self.proposal, what)
        self._show()

    def refine(self) -> None:
        """Refine (S): SAM2 segments again from the drawn outline's box and a few points inside it;
        the result is the proposal (Ctrl+Z or "Back to my outline" discards it)."""
        if self.proposal is None:
            self.host.show_status("Draw an outline first, then let SAM2 refine it", 8000)
            return
        if not self._prepare():
            self._refine_wanted = self.session.is_loading or self._encoder is not None or self.prompter.busy
            if self._refine_wanted:
                self.host.show_status("Preparing SAM2 (loading the model, reading the image); "
                                      "it refines the outline then", 8000)
            self._update()
            return
        self._refine_wanted = False
        self.prompter.request(("refine", object()), refine_outline, self.session.loaded.segmenter,
                              self.proposal.copy())  # a key equal to no other: each outline differs
        self._update()

    def redo(self) -> None:
        if self.history is None or not self.history.can_redo:
            return
        self.prompter.forget()
        self.proposal = self.history.redo()
        if self.history.tag == "sam2" and self.history.data is not None:
            self._shown_events = self.history.data[1]
            self.prompts.events = list(self._shown_events)
        self.score = None
        self._show()

    def _show(self) -> None:
        if self.tools is not None:
            self.tools.refresh()
        if self.can_prompt:
            self.host.show_proposal(self.proposal, self.name_combo.currentText().strip(),
                                    points=self.prompts.points(), box=self.prompts.box())
        self._update()

    def clear_prompts(self) -> None:
        had = bool(self.prompts) or self.proposal is not None
        self.prompter.forget()
        self.history = None
        self.prompts = _Prompts()
        self._shown_events = ()
        self.proposal, self.score = None, None
        if had and self.can_prompt:
            self.host.show_proposal(None)
        self._update()

    def _on_image_changed(self, record) -> None:
        # The workspace dropped the proposal with the old image.
        self.prompter.forget()
        self.prompts = _Prompts()
        self._shown_events = ()
        self.history = None
        self._refine_wanted = False
        if self.tools is not None:
            self.tools.set_tool(self.tools.tool)  # a polygon begun on the old image is dropped
        self.proposal, self.score = None, None
        if record is None or record.id != self._encoded_id:
            if self.active_button.isChecked():
                self._prepare()
        self._update()

    # ------------------------------------------------------- accept and undo
    def accept_proposal(self) -> None:
        name = self.name_combo.currentText().strip()
        record = self.host.current_image()
        store = self.host.store
        if self.proposal is None or record is None or store is None:
            return
        if not name:
            self.host.show_status("Type or choose the structure's name first", 8000)
            self.name_combo.setFocus()
            return
        mask = drop_fragments(self.proposal)  # specks never reach the file
        if not mask.any():
            self.host.show_error("Cannot add the structure",
                                 f"The outline of {name} is only specks smaller than "
                                 f"{fragment_area(mask.shape):.0f} px\u00b2. Draw it larger, or Undo.")
            return
        try:
            ann_id = store.add_structure(record.id, name, mask, attributes={"source": TEMPLATE_SOURCE})
        except (UserError, ValueError) as exc:
            self.host.show_error("Cannot add the structure", str(exc))
            return
        self.accepted.append({"image_id": record.id, "ann_id": ann_id, "name": name,
                              "file_name": record.file_name})
        self.prompter.forget()
        self.prompts = _Prompts()
        self._shown_events = ()
        self.proposal, self.score = None, None
        self.history = None
        if self.can_prompt:
            self.host.show_proposal(None)
        if self.tools is not None:
            self.tools.refresh()
        self.host.notify_store_changed()  # redraws, marks unsaved, calls refresh()
        self.host.show_status(f"Added {name} to {record.file_name} (not saved yet: File > Save)", 8000)
        self.name_combo.setEditText("")
        self._update()

    def undo(self) -> None:
        """Take back the last click (or box) whose answer is not shown yet, else the proposal's last
        change (with the clicks it answered), else the last click, else the last accepted structure."""
        if tuple(self.prompts.events) != self._shown_events and self.prompts:
            self.prompts.events.pop()
            if tuple(self.prompts.events) == self._shown_events:
                self.prompter.forget()  # the proposal shown answers the clicks left
                self._show()
            elif self._prepare():
                self._predict()
            else:
                self._show()  # the markers left; SAM2 answers them once it is ready
            return
        if self.history is not None and self.history.can_undo:
            self.prompter.forget()
            tag, data = self.history.undo_tag(), self.history.data
            self.proposal = self.history.undo()
            if tag == "sam2" and data is not None:
                self._shown_events = data[0]
                self.prompts.events = list(self._shown_events)
            self.score = None
            self._show()
            return
        if not self.accepted:
            return
        last = self.accepted.pop()
        store = self.host.store
        try:
            remove_annotation(store, last["image_id"], last["ann_id"])
        except (UserError, KeyError) as exc:
            self.host.show_error("Undo", str(exc))
            return
        self.host.notify_store_changed()
        self.host.show_status(f"Removed {last['name']} from {last['file_name']}", 8000)
        self._update()

    # ------------------------------------------------- hand-offs from the plugin
    def add_template(self, image_id: Any, masks: dict) -> None:
        """Review's "Add as template": a specimen's reviewed masks become template structures
        (replacing the ones of the same names)."""
        store = self.host.store
        if store is None:
            return

        def add() -> None:
            for name, mask in masks.items():
                mask = drop_fragments(mask)  # specks never reach the file
                if mask.any():
                    store.add_structure(image_id, name, mask, attributes={"source": TEMPLATE_SOURCE},
                                        replace=True)

        if not shown_errors(self.host, "Add as template", add)[0]:
            return
        self.host.notify_store_changed()
        self.host.show_status(f"Added {len(masks)} structure(s) as a template", 8000)

    def template_ids(self) -> list:
        """Ids of the open project's images that are templates."""
        return [r.id for r, _ in template_images(self.host.store)]

    def find_record(self, image_id: Any, path: Any):
        """The open project's record of this image (by file first, then id), or None."""
        store = self.host.store
        return find_image(store, image_id, path) if store is not None else None

    def _on_template_activated(self, item: QListWidgetItem) -> None:
        try:
            self.host.set_current_image(item.data(_ID_ROLE))
        except KeyError as exc:
            self.host.show_status(str(exc), 8000)

    def close_panel(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
