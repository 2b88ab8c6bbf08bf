"""An image canvas for specimen photos: named mask overlays, zoom/pan, click and box prompts.

Coordinates in every signal and method are IMAGE pixel coordinates: x to the
right, y down, pixel (col, row) covering [col, col+1) x [row, row+1). Callers
that need a pixel index take ``int(x), int(y)``.

Mouse: wheel zooms, left-drag pans, right-drag zooms, double-click fits the
image. A left or right click on the image emits ``clicked``; shift+left-drag
(or a plain left-drag in box mode) draws a box and emits ``box_drawn``.
"""

from __future__ import annotations

import json
import logging
from typing import Iterable, Mapping, Sequence

import numpy as np
import pyqtgraph as pg
from PyQt5.QtCore import QRectF, Qt, pyqtSignal
from PyQt5.QtGui import QColor, QIcon, QPen, QPixmap
from PyQt5.QtWidgets import (QCheckBox, QGraphicsRectItem, QHBoxLayout,
                             QScrollArea, QVBoxLayout, QWidget)

log = logging.getLogger(__name__)

#: Colours for structures, colour-blind safe for the first 12: all from Paul Tol's schemes
#: (personal.sron.nl/~pault), ordered so that any first n are as far apart as possible for
#: normal vision and simulated protanopia, deuteranopia and tritanopia (CIELAB distance at
#: least 13 for all 12, 21 for the first five); none darker than L* 45, so they show on dark
#: specimens. Beyond 12 the colours repeat the hues in lighter or darker shades.
STRUCTURE_PALETTE: tuple[tuple[int, int, int], ...] = (
    (170, 68, 153), (187, 204, 51), (34, 136, 51), (153, 221, 255), (255, 170, 187), (238, 51, 119),
    (238, 136, 102), (119, 170, 221), (238, 221, 136), (204, 121, 167), (204, 51, 17), (153, 153, 51),
    (51, 187, 238), (0, 153, 136), (238, 119, 51), (68, 119, 170), (136, 204, 238), (221, 204, 119),
)

POSITIVE_COLOR = (40, 200, 60)
NEGATIVE_COLOR = (230, 40, 40)


#: QSettings key holding the colour of every structure name seen (JSON {name: [r, g, b]});
#: "_cb": from the colour-blind-safe palette (colours kept under the earlier key are not reused).
COLORS_SETTINGS_KEY = "structure_colors_cb"
#: How a host labels a structure's proposal on the canvas ("eye (proposal)"): same colour as "eye".
PROPOSAL_SUFFIX = " (proposal)"


class StructureColors:
    """One colour per structure name, the same in every view and every session.

    A name gets the first palette colour not taken yet the first time it is seen
    (:meth:`assign` for a project's names in order, or :meth:`color`); a name keeps
    its colour for good. With :meth:`use_settings` the colours are kept in a
    ``QSettings`` and restored at the next start. :func:`shared_colors` is the
    instance every canvas uses unless given another.
    """

    def __init__(self, palette: Sequence[tuple[int, int, int]] = STRUCTURE_PALETTE, settings=None) -> None:
        self.palette = tuple(palette)
        self._assigned: dict[str, tuple[int, int, int]] = {}
        self.settings = None
        if settings is not None:
            self.use_settings(settings)

    def use_settings(self, settings) -> None:
        """Take the colours kept in ``settings`` (a QSettings) and keep new ones there."""
        self.settings = settings
        raw = settings.value(COLORS_SETTINGS_KEY, "", str) if settings is not None else ""
        self._assigned = {}
        try:
            stored = json.loads(raw) if raw else {}
        except ValueError:
            stored = {}
        if isinstance(stored, dict):
            for name, rgb in stored.items():
                if isinstance(rgb, list) and len(rgb) == 3 and all(isinstance(v, int) for v in rgb):
                    self._assigned[str(name).lower()] = tuple(rgb)

    def assign(self, names: Iterable[str]) -> None:
        """Give the names not seen yet the next free colours, in order."""
        added = False
        for name in dict.fromkeys(n.lower() for n in names):
            if name not in self._assigned:
                self._assigned[name] = self._next_free()
                added = True
        if added:
            self._save()

    def color(self, name: str) -> tuple[int, int, int]:
        """The structure's colour; "eye (proposal)" has the colour of "eye"."""
        key = name.lower()
        if key.endswith(PROPOSAL_SUFFIX) and len(key) > len(PROPOSAL_SUFFIX):
            key = key[:-len(PROPOSAL_SUFFIX)]
        if key not in self._assigned:
            self.assign([key])
        return self._assigned[key]

    def set_color(self, name: str, rgb: tuple[int, int, int]) -> None:
        self._assigned[name.lower()] = tuple(int(v) for v in rgb)
        self._save()

    def _next_free(self) -> tuple[int, int, int]:
        used = set(self._assigned.values())
        for rgb in self.palette:
            if rgb not in used:
                return rgb
        return self.palette[len(self._assigned) % len(self.palette)]

    def _save(self) -> None:
        if self.settings is not None:
            self.settings.setValue(COLORS_SETTINGS_KEY, json.dumps(
                {n: list(rgb) for n, rgb in self._assigned.items()}))


_SHARED_COLORS = StructureColors()


def shared_colors() -> StructureColors:
    """The colours every view of this process uses (the workspace ties them to its settings)."""
    return _SHARED_COLORS


def mask_outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Pixels of ``mask`` within ``thickness`` px of its border (4-neighbour erosion)."""
    eroded = mask.copy()
    for _ in range(thickness):
        inner = eroded.copy()
        inner[1:, :] &= eroded[:-1, :]
        inner[:-1, :] &= eroded[1:, :]
        inner[:, 1:] &= eroded[:, :-1]
        inner[:, :-1] &= eroded[:, 1:]
        # The image border counts as outside, so masks touching it are closed there.
        inner[0, :] = inner[-1, :] = False
        inner[:, 0] = inner[:, -1] = False
        eroded = inner
    return mask & ~eroded


def compose_overlay(shape: tuple[int, int], masks: Mapping[str, np.ndarray],
                    colors: StructureColors, fill_alpha: int = 90,
                    outline_px: int | None = None) -> np.ndarray:
    """One RGBA uint8 image with every mask as a translucent fill plus an opaque outline.

    Later masks paint over earlier ones where they overlap. Work is limited to
    each mask's bounding box, so small structures on large photos stay cheap.
    """
    h, w = shape
    overlay = np.zeros((h, w, 4), np.uint8)
    if outline_px is None:
        outline_px = max(1, round(max(h, w) / 600))
    for name, mask in masks.items():
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(mask.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        # One pixel of margin so the erosion sees the outside of the mask.
        r0m, r1m, c0m, c1m = max(r0 - 1, 0), min(r1 + 1, h), max(c0 - 1, 0), min(c1 + 1, w)
        crop = mask[r0m:r1m, c0m:c1m]
        edge = mask_outline(crop, outline_px)  # closed along the image border too
        region = overlay[r0m:r1m, c0m:c1m]
        color = np.array(colors.color(name), np.uint8)
        region[crop, :3] = color
        region[crop, 3] = fill_alpha
        region[edge, :3] = color
        region[edge, 3] = 255
    return overlay


class _CanvasViewBox(pg.ViewBox):
    """A ViewBox that turns clicks and shift-drags into prompts instead of menus."""

    def __init__(self, canvas: "ImageCanvas") -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._canvas = canvas
        self._drawing_box = False
        self._band = QGraphicsRectItem()
        pen = QPen(QColor(255, 255, 255))
        pen.setCosmetic(True)
        pen.setStyle(Qt.DashLine)
        pen.setWidth(1)
        self._band.setPen(pen)
        self._band.setZValue(30)
        self._band.hide()
        self.addItem(self._band, ignoreBounds=True)

    def _tool(self):
        tool = self._canvas.tool_handler
        return tool if tool is not None and tool.is_active() else None

    def mouseClickEvent(self, ev):
        tool = self._tool()
        if tool is not None and ev.button() in (Qt.LeftButton, Qt.RightButton):
            pos = self.mapSceneToView(ev.scenePos())
            if tool.click(pos.x(), pos.y(), "left" if ev.button() == Qt.LeftButton else "right", ev.double()):
                ev.accept()
                return
        if ev.double() and ev.button() == Qt.LeftButton:
            ev.accept()
            self._canvas.fit()
            return
        if ev.button() in (Qt.LeftButton, Qt.RightButton):
            ev.accept()
            pos = self.mapSceneToView(ev.scenePos())
            self._canvas._emit_click(pos.x(), pos.y(), ev.button())
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None):
        tool = self._tool()
        if tool is not None and ev.button() == Qt.LeftButton:
            start = self.mapSceneToView(ev.buttonDownScenePos(Qt.LeftButton))
            pos = self.mapSceneToView(ev.scenePos())
            if tool.drag(pos.x(), pos.y(), (start.x(), start.y()), ev.isStart(), ev.isFinish()):
                ev.accept()
                return
        if ev.isStart():
            self._drawing_box = (
                ev.button() == Qt.LeftButton
                and self._canvas.has_image()
                and (self._canvas.box_mode or bool(ev.modifiers() & Qt.ShiftModifier))
            )
        if not self._drawing_box:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        start = self.mapSceneToView(ev.buttonDownScenePos(Qt.LeftButton))
        end = self.mapSceneToView(ev.scenePos())
        rect = QRectF(start, end).normalized()
        if ev.isFinish():
            self._band.hide()
            self._drawing_box = False
            self._canvas._emit_box(rect.left(), rect.top(), rect.right(), rect.bottom())
        else:
            self._band.setRect(rect)
            self._band.show()


class _Legend(QWidget):
    """A row of check boxes, one per structure, with its colour: untick to hide it."""

    toggled = pyqtSignal(str, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(4, 2, 4, 2)
        self._row.setSpacing(12)
        self._boxes: dict[str, QCheckBox] = {}

    def set_entries(self, entries: Sequence[tuple[str, tuple[int, int, int], bool]]) -> None:
        while self._row.count():
            item = self._row.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self._boxes = {}
        for name, rgb, visible in entries:
            pix = QPixmap(12, 12)
            pix.fill(QColor(*rgb))
            box = QCheckBox(name)
            box.setIcon(QIcon(pix))
            box.setChecked(visible)
            box.setToolTip(f"Show or hide {name}")
            box.toggled.connect(lambda on, n=name: self.toggled.emit(n, on))
            self._row.addWidget(box)
            self._boxes[name] = box
        self._row.addStretch(1)

    def names(self) -> list[str]:
        return list(self._boxes)

    def checkbox(self, name: str) -> QCheckBox:
        return self._boxes[name]


class ImageCanvas(QWidget):
    """Shows one RGB image with named mask overlays, a legend, and prompt markers.

    Signals (image pixel coordinates):
      ``clicked(x, y, button)``: a click on the image; button is "left" or "right".
      ``box_drawn(x0, y0, x1, y1)``: a box dragged with shift (or in box mode),
        x0 <= x1, y0 <= y1, clipped to the image.
      ``hovered(x, y)``: the mouse moved over the image.
    """

    clicked = pyqtSignal(float, float, str)
    box_drawn = pyqtSignal(float, float, float, float)
    hovered = pyqtSignal(float, float)

    def __init__(self, parent: QWidget | None = None, colors: StructureColors | None = None) -> None:
        super().__init__(parent)
        self.colors = colors if colors is not None else shared_colors()
        self.box_mode = False
        #: Drawing tools (``gui.drawing_tools.DrawingTools``): while one is active it gets the left button.
        self.tool_handler = None
        self._image: np.ndarray | None = None
        self._masks: dict[str, np.ndarray] = {}
        self._hidden: set[str] = set()
        self._fill_alpha = 90

        self.view = pg.GraphicsView(background=(40, 40, 40))
        self.viewbox = _CanvasViewBox(self)
        self.view.setCentralItem(self.viewbox)
        self._image_item = pg.ImageItem(axisOrder="row-major")
        self._overlay_item = pg.ImageItem(axisOrder="row-major")
        self._overlay_item.setZValue(10)
        self._points_item = pg.ScatterPlotItem(size=11, pxMode=True)
        self._points_item.setZValue(20)
        self._box_item = QGraphicsRectItem()
        pen = QPen(QColor(255, 255, 0))
        pen.setCosmetic(True)
        pen.setWidth(2)
        self._box_item.setPen(pen)
        self._box_item.setZValue(25)
        self._box_item.hide()
        for item in (self._image_item, self._overlay_item, self._points_item):
            self.viewbox.addItem(item)
        self.viewbox.addItem(self._box_item, ignoreBounds=True)
        self._message = pg.TextItem("", color=(220, 220, 220), anchor=(0.5, 0.5))
        self._message.setZValue(40)
        self.viewbox.addItem(self._message, ignoreBounds=True)
        self.view.scene().sigMouseMoved.connect(self._on_mouse_moved)

        self.legend = _Legend()
        self.legend.toggled.connect(self._on_legend_toggled)
        legend_scroll = QScrollArea()
        legend_scroll.setWidget(self.legend)
        legend_scroll.setWidgetResizable(True)
        legend_scroll.setFrameShape(QScrollArea.NoFrame)
        legend_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        legend_scroll.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        legend_scroll.setFixedHeight(self.legend.sizeHint().height() + 16)
        self._legend_scroll = legend_scroll

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.view, 1)
        layout.addWidget(legend_scroll)

    # -- image and overlays -------------------------------------------------
    def set_image(self, image: np.ndarray | None, message: str = "") -> None:
        """Show an (H, W, 3) uint8 RGB image (or nothing, with ``message``); clears overlays,
        points and box, and fits the view."""
        self._image = None if image is None else np.ascontiguousarray(image)
        self._masks = {}
        self._overlay_item.clear()
        self.clear_points()
        self.set_box(None)
        if self._image is None:
            self._image_item.clear()
        else:
            if self._image.ndim != 3 or self._image.shape[2] != 3 or self._image.dtype != np.uint8:
                raise ValueError(f"expected an (H, W, 3) uint8 image, got {self._image.shape} "
                                 f"{self._image.dtype}")
            self._image_item.setImage(self._image, levels=(0, 255), autoLevels=False)
        self._update_legend()
        self.set_message(message)
        self.fit()

    def image(self) -> np.ndarray | None:
        return self._image

    def has_image(self) -> bool:
        return self._image is not None

    def image_shape(self) -> tuple[int, int] | None:
        return None if self._image is None else self._image.shape[:2]

    def set_masks(self, masks: Mapping[str, np.ndarray]) -> list[str]:
        """Overlay named boolean masks (image-sized); returns the names skipped
        because their shape does not match the image."""
        shape = self.image_shape()
        skipped: list[str] = []
        kept: dict[str, np.ndarray] = {}
        for name, mask in masks.items():
            mask = np.asarray(mask)
            if shape is None or mask.shape != shape:
                skipped.append(name)
                log.warning("mask %r has shape %s, image is %s: not shown", name, mask.shape, shape)
                continue
            kept[name] = mask.astype(bool, copy=False)
        self._masks = kept
        self._update_legend()
        self._refresh_overlay()
        return skipped

    def masks(self) -> dict[str, np.ndarray]:
        return dict(self._masks)

    def set_structure_visible(self, name: str, visible: bool) -> None:
        if visible:
            self._hidden.discard(name)
        else:
            self._hidden.add(name)
        if name in self.legend.names():
            box = self.legend.checkbox(name)
            if box.isChecked() != visible:
                box.setChecked(visible)  # emits toggled -> _on_legend_toggled, idempotent
        self._refresh_overlay()

    def set_overlay_opacity(self, alpha: float) -> None:
        """Fill opacity of the overlays, 0..1 (outlines stay opaque)."""
        self._fill_alpha = int(round(min(max(alpha, 0.0), 1.0) * 255))
        self._refresh_overlay()

    def overlay_rgba(self) -> np.ndarray | None:
        """The composed RGBA overlay currently shown (None when nothing is overlaid)."""
        return self._overlay_item.image

    def _refresh_overlay(self) -> None:
        visible = {n: m for n, m in self._masks.items() if n not in self._hidden}
        if self._image is None or not visible:
            self._overlay_item.clear()
            return
        rgba = compose_overlay(self._image.shape[:2], visible, self.colors, self._fill_alpha)
        self._overlay_item.setImage(rgba, levels=(0, 255), autoLevels=False)

    def _update_legend(self) -> None:
        names = list(self._masks)
        self.legend.set_entries([(n, self.colors.color(n), n not in self._hidden) for n in names])

    def _on_legend_toggled(self, name: str, visible: bool) -> None:
        if visible == (name not in self._hidden):
            return
        self.set_structure_visible(name, visible)

    # -- prompts -------------------------------------------------------------
    def set_points(self, points: Iterable[tuple[float, float, bool]]) -> None:
        """Show prompt markers: (x, y, positive) -> green (positive) or red (negative) dots."""
        pts = list(points)
        # Shape as well as colour tells them apart (red/green colour blindness).
        spots = [{
            "pos": (x, y),
            "brush": pg.mkBrush(*(POSITIVE_COLOR if positive else NEGATIVE_COLOR)),
            "pen": pg.mkPen("w", width=1.5) if positive else pg.mkPen(60, 0, 0, width=1),
            "symbol": "o" if positive else "x",
            "size": 11 if positive else 15,
        } for x, y, positive in pts]
        self._points_item.setData(spots=spots)

    def clear_points(self) -> None:
        self._points_item.clear()

    def points(self) -> list[tuple[float, float, bool]]:
        out = []
        for spot in self._points_item.points():
            pos = spot.pos()
            positive = spot.brush().color().getRgb()[:3] == POSITIVE_COLOR
            out.append((pos.x(), pos.y(), positive))
        return out

    def set_box(self, box: tuple[float, float, float, float] | None) -> None:
        """Show a prompt box (x0, y0, x1, y1), or hide it with None."""
        if box is None:
            self._box_item.hide()
            return
        x0, y0, x1, y1 = box
        self._box_item.setRect(QRectF(x0, y0, x1 - x0, y1 - y0).normalized())
        self._box_item.show()

    def set_box_mode(self, on: bool) -> None:
        """In box mode a plain left-drag draws a box; middle-drag still pans."""
        self.box_mode = bool(on)

    # -- view ----------------------------------------------------------------
    def fit(self) -> None:
        """Zoom to show the whole image."""
        if self._image is None:
            self.viewbox.setRange(QRectF(0, 0, 100, 100), padding=0)
            self._message.setPos(50, 50)
            return
        h, w = self._image.shape[:2]
        self.viewbox.setRange(QRectF(0, 0, w, h), padding=0.02)

    def set_message(self, text: str) -> None:
        """A line of text over the canvas (e.g. why there is no image); "" hides it."""
        self._message.setText(text)
        self._message.setVisible(bool(text))
        if self._image is not None:
            h, w = self._image.shape[:2]
            self._message.setPos(w / 2, h / 2)
        else:
            self._message.setPos(50, 50)

    def map_to_widget(self, x: float, y: float):
        """Widget (view viewport) position of image point (x, y): for tests and tooltips."""
        scene = self.viewbox.mapViewToScene(pg.Point(x, y))
        return self.view.mapFromScene(scene)

    # -- signal plumbing -----------------------------------------------------
    def _inside(self, x: float, y: float) -> bool:
        shape = self.image_shape()
        return shape is not None and 0 <= x < shape[1] and 0 <= y < shape[0]

    def _emit_click(self, x: float, y: float, button) -> None:
        if self._inside(x, y):
            self.clicked.emit(x, y, "left" if button == Qt.LeftButton else "right")

    def _emit_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        shape = self.image_shape()
        if shape is None:
            return
        h, w = shape
        x0, x1 = min(max(x0, 0.0), w), min(max(x1, 0.0), w)
        y0, y1 = min(max(y0, 0.0), h), min(max(y1, 0.0), h)
        if x1 - x0 < 1 or y1 - y0 < 1:
            return  # a box outside the image or thinner than a pixel is no prompt
        self.box_drawn.emit(x0, y0, x1, y1)

    def _on_mouse_moved(self, scene_pos) -> None:
        if self._image is None or not self.viewbox.sceneBoundingRect().contains(scene_pos):
            return
        pos = self.viewbox.mapSceneToView(scene_pos)
        if self.tool_handler is not None:
            self.tool_handler.hover(pos.x(), pos.y())
        if self._inside(pos.x(), pos.y()):
            self.hovered.emit(pos.x(), pos.y())
