"""The Review panel's photo: the selected specimen with the selected structure highlighted (full
colour, in the legend) and the specimen's other outlines dimmed, its title and review state
above it, and the drawing tools of :mod:`.drawing_tools`. Photos are decoded off the GUI thread
(``LatestImageLoader``: only the latest wish counts) and the last few are kept."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pyqtgraph as pg
from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from descriptron_sam2pal.gui.canvas import ImageCanvas, compose_overlay
from descriptron_sam2pal.gui.drawing_tools import DrawingToolbar, DrawingTools
from descriptron_sam2pal.gui.image_loader import LatestImageLoader
from descriptron_sam2pal.gui.review_table import STATE_COLORS, item_tooltip, score_text, state_text
from descriptron_sam2pal.jobs.review import REJECTED, ReviewItem

DIM_ALPHA = 0.4  # how much of the normal overlay the non-selected structures keep
IMAGE_CACHE_SIZE = 4


class ReviewViewer(QWidget):
    """Title and state, the drawing toolbar, and the canvas.

    ``edit_source()`` gives the mask the drawing tools edit, ``polygon_replaces()`` whether a
    polygon replaces it; ``on_undo`` / ``on_redo`` are the toolbar's Undo and Redo. Signals:
    ``image_ready(path)`` when a requested photo is decoded, ``image_failed(path, message)``
    when it cannot be (the panel shows its current item again either way)."""

    image_ready = pyqtSignal(str)
    image_failed = pyqtSignal(str, str)

    def __init__(
        self,
        edit_source: Callable[[], np.ndarray | None],
        polygon_replaces: Callable[[], bool],
        on_undo: Callable[[], None],
        on_redo: Callable[[], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
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
        self.dim_item = pg.ImageItem(axisOrder="row-major")
        self.dim_item.setZValue(5)  # over the photo, under the highlighted structure
        self.canvas.viewbox.addItem(self.dim_item)
        self.tools = DrawingTools(self.canvas, edit_source, self, polygon_replaces=polygon_replaces)
        self.toolbar = DrawingToolbar(self.tools, on_undo=on_undo, on_redo=on_redo)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 0)
        layout.addLayout(title_row)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.canvas, 1)
        self._image_cache: dict[str, np.ndarray] = {}
        self._image_errors: dict[str, str] = {}
        self.image_loader = LatestImageLoader(self)
        self.image_loader.loaded.connect(self._on_pixels)
        self.image_loader.failed.connect(lambda path, message, _details: self._on_pixels_error(path, message))

    def show_nothing(self, message: str) -> None:
        """No photo: ``message`` in its place."""
        self.dim_item.clear()
        self.canvas.set_image(None, message)

    def show_item(self, item: ReviewItem, siblings: list[ReviewItem], path: str) -> None:
        """``item`` on its photo at ``path`` with its ``siblings`` (the specimen's other
        structures) dimmed; the photo is loaded first when it is not at hand."""
        if path in self._image_cache:
            self.draw(item, siblings, self._image_cache[path])
        elif path in self._image_errors:
            self.show_nothing(f"Cannot show {item.target.label}: {self._image_errors[path]}")
        else:
            self.show_nothing(f"Loading {Path(path).name}\u2026")
            self.image_loader.request(path, path)

    def draw(self, item: ReviewItem, siblings: list[ReviewItem], pixels: np.ndarray) -> None:
        shape = pixels.shape[:2]
        if self.canvas.image() is not pixels:
            self.canvas.set_image(pixels)
        else:
            self.canvas.clear_points()
            self.canvas.set_message("")
        mask = item.current_mask
        skipped = self.canvas.set_masks({} if item.absent else {item.structure: mask})
        if skipped:
            self.canvas.set_message(
                f"The prediction is {mask.shape[1]} x {mask.shape[0]} px, the photo "
                f"{shape[1]} x {shape[0]} px: not drawn"
            )
        elif item.absent:
            self.canvas.set_message(
                f"{item.structure}: predicted absent.\nA confirms it is missing; F and a click outlines it."
            )
        others = {
            i.structure: i.current_mask
            for i in siblings
            if i is not item and not i.absent and i.state != REJECTED and i.current_mask.shape == shape
        }
        if others:
            rgba = compose_overlay(shape, others, self.canvas.colors, fill_alpha=90)
            rgba[..., 3] = (rgba[..., 3] * DIM_ALPHA).astype(np.uint8)
            self.dim_item.setImage(rgba, levels=(0, 255), autoLevels=False)
        else:
            self.dim_item.clear()
        if item.points:
            self.canvas.set_points([(x, y, lab == 1) for x, y, lab in item.points])
        self.tools.refresh()

    def set_title(self, item: ReviewItem | None) -> None:
        """The specimen, structure and Score of ``item``, and its review state in its colour."""
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
        self.state_label.setStyleSheet(
            f"QLabel {{ background: rgb{bg}; color: rgb{fg}; padding: 4px 10px; border-radius: 4px; }}"
        )

    def forget_requests(self) -> None:
        """A photo asked for earlier is no longer wanted."""
        self.image_loader.forget()

    def loading(self) -> bool:
        return self.image_loader.busy

    def _on_pixels(self, path: str, pixels: np.ndarray) -> None:
        self._image_cache[path] = pixels
        while len(self._image_cache) > IMAGE_CACHE_SIZE:
            self._image_cache.pop(next(iter(self._image_cache)))
        self.image_ready.emit(path)

    def _on_pixels_error(self, path: str, message: str) -> None:
        self._image_errors[path] = message
        self.image_failed.emit(path, message)
