"""Hand-drawing tools on an :class:`~descriptron_sam2pal.gui.canvas.ImageCanvas`: polygon, brush,
eraser, vertex editing, fill holes; a toolbar for them; an undo history for a mask.

The geometry is in :mod:`descriptron_sam2pal.imaging.drawing`; this module is
the state machine. :class:`DrawingTools` reads the mask to edit from its owner
(``mask_source()``), and reports each finished edit with ``edited(mask, what)``;
the owner keeps the undo history (the Templates panel a :class:`MaskHistory`,
the Review panel its ``jobs.review.ReviewSession``, one step per
edit) and calls :meth:`DrawingTools.refresh` when the mask shown changes.

While a tool is on, the canvas gives it the left mouse button: clicks and
drags draw instead of panning (the wheel still zooms; the middle button pans).

Tools and keys (shown in the tooltips):
  **P** polygon: click the vertices; double-click, Enter or a click on the first
  vertex closes it (added to the mask); Backspace or right click takes back the
  last vertex; Esc drops it.
  **B** brush / **E** eraser: drag to paint / erase; **-** and **=** change the size.
  **V** vertices: drag a vertex of the outline; click on an edge inserts one;
  right click on a vertex deletes it.
  **H** fill holes. **Esc** (no polygon open) puts the tool away.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import pyqtgraph as pg
from PyQt5.QtCore import QEvent, QObject, QPointF, QRectF, Qt, pyqtSignal
from PyQt5.QtGui import QColor, QKeySequence, QPainterPath, QPen
from PyQt5.QtWidgets import (QGraphicsEllipseItem, QGraphicsPathItem, QHBoxLayout, QLabel, QShortcut,
                             QSpinBox, QToolButton, QVBoxLayout, QWidget)

from descriptron_sam2pal.imaging.drawing import (delete_vertex, drop_fragments, edit_scale, fill_mask_holes,
                                                 insert_vertex, mask_to_vertex_polygons, move_vertex,
                                                 nearest_edge, nearest_vertex, paint, parts_apart_from,
                                                 polygon_to_mask, stroke_mask, vertex_polygons_to_mask)

POLYGON, BRUSH, ERASER, VERTICES = "polygon", "brush", "eraser", "vertices"
TOOLS = (POLYGON, BRUSH, ERASER, VERTICES)
#: Tool -> (button text, key, what it does): the toolbar's buttons, tooltips and shortcuts.
TOOL_INFO = {
    POLYGON: ("Polygon", "P", "click the vertices; double-click, Enter or a click on the first vertex "
                              "closes it; Backspace takes back a vertex; Esc drops it"),
    BRUSH: ("Brush", "B", "drag to paint the structure; - and = change the size"),
    ERASER: ("Eraser", "E", "drag to erase; - and = change the size"),
    VERTICES: ("Vertices", "V", "drag a vertex; click an edge to add one; right click a vertex deletes it"),
}
FILL_KEY = "H"
HANDLE_PX = 7        # how near (screen px) a click must be to a vertex or edge
EDIT_COLOR = (255, 235, 59)


class MaskHistory:
    """Undo/redo of one mask: a list of states and a position (plain Python, no Qt).

    ``push(mask, what, data)`` records a new state (dropping what was undone);
    ``undo()`` / ``redo()`` move and return the mask now current. ``tag`` of a
    state says what made it (e.g. "polygon", "sam2"), ``data`` anything the owner
    needs to redo it (e.g. the click that made a SAM2 proposal)."""

    def __init__(self, mask: Optional[np.ndarray] = None, limit: int = 40) -> None:
        self.limit = limit
        self._states: list[tuple[Optional[np.ndarray], str, object]] = [(mask, "start", None)]
        self._pos = 0

    @property
    def mask(self) -> Optional[np.ndarray]:
        return self._states[self._pos][0]

    @property
    def tag(self) -> str:
        return self._states[self._pos][1]

    @property
    def data(self) -> object:
        return self._states[self._pos][2]

    def push(self, mask: Optional[np.ndarray], what: str, data: object = None) -> None:
        del self._states[self._pos + 1:]
        self._states.append((None if mask is None else np.asarray(mask, bool), what, data))
        if len(self._states) > self.limit:
            del self._states[0]
        self._pos = len(self._states) - 1

    @property
    def can_undo(self) -> bool:
        return self._pos > 0

    @property
    def can_redo(self) -> bool:
        return self._pos < len(self._states) - 1

    def undo(self) -> Optional[np.ndarray]:
        if self.can_undo:
            self._pos -= 1
        return self.mask

    def redo(self) -> Optional[np.ndarray]:
        if self.can_redo:
            self._pos += 1
        return self.mask

    def undo_tag(self) -> str:
        """What the next undo takes back ("" when nothing)."""
        return self._states[self._pos][1] if self.can_undo else ""


def _pen(rgb, width: float, cosmetic: bool = True, style=Qt.SolidLine) -> QPen:
    pen = QPen(QColor(*rgb))
    pen.setCosmetic(cosmetic)
    pen.setWidthF(width)
    pen.setStyle(style)
    pen.setCapStyle(Qt.RoundCap)
    pen.setJoinStyle(Qt.RoundJoin)
    return pen


class _Handles(pg.ScatterPlotItem):
    """Vertex markers that leave every click and drag to the canvas (the tool decides)."""

    def mouseClickEvent(self, ev):
        ev.ignore()

    def mouseDragEvent(self, ev):
        ev.ignore()

    def hoverEvent(self, ev):
        pass


class DrawingTools(QObject):
    """The drawing state machine for one canvas (see the module docstring).

    Signals: ``edited(mask, what)`` after every finished edit (the whole new
    (H, W) bool mask; ``what`` is "polygon", "brush", "eraser", "vertices" or
    "fill holes"); ``tool_changed(name)`` ("" when no tool is on).

    Every edited mask is cleaned of parts smaller than ``imaging.drawing.fragment_area``
    (a pixel cut off by an edit never reaches a file). ``polygon_replaces()``, when given
    and true, makes the next closed polygon replace the mask instead of adding to it (the
    Review: a polygon drawn over a prediction not yet edited by hand is the new outline).
    """

    edited = pyqtSignal(object, str)
    tool_changed = pyqtSignal(str)

    def __init__(self, canvas, mask_source: Callable[[], Optional[np.ndarray]],
                 parent: QObject | None = None, polygon_replaces: Callable[[], bool] | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.mask_source = mask_source
        self.polygon_replaces = polygon_replaces
        self.tool = ""
        self.brush_radius = 8.0
        self.enabled = True
        self.polygon: list[tuple[float, float]] = []     # vertices of the polygon being drawn
        self.stroke: list[tuple[float, float]] = []      # points of the brush stroke being drawn
        self.vertex_polygons: list[list[tuple[float, float]]] = []
        self._untouched: np.ndarray | None = None  # whole parts of the mask without handles
        self._vertex_mask: np.ndarray | None = None  # the mask the vertex polygons last made
        self._dragging: tuple[int, int] | None = None
        canvas.tool_handler = self
        canvas.view.installEventFilter(self)  # Enter, Backspace, Esc while the canvas has the focus
        vb = canvas.viewbox
        self._path_item = QGraphicsPathItem()
        self._path_item.setZValue(35)
        vb.addItem(self._path_item, ignoreBounds=True)
        self._handles = _Handles(size=9, pxMode=True, pen=pg.mkPen(20, 20, 20),
                                           brush=pg.mkBrush(*EDIT_COLOR))
        self._handles.setZValue(36)
        vb.addItem(self._handles, ignoreBounds=True)
        self._cursor = QGraphicsEllipseItem()
        self._cursor.setPen(_pen((255, 255, 255), 1.5, style=Qt.DashLine))
        self._cursor.setZValue(37)
        self._cursor.hide()
        vb.addItem(self._cursor, ignoreBounds=True)

    def eventFilter(self, obj, event) -> bool:
        """Enter closes the polygon, Backspace takes back a vertex, Esc drops it or puts the tool
        away: keys of the canvas (not window shortcuts, so Enter still works in a text field)."""
        if event.type() == QEvent.KeyPress and self.tool and event.modifiers() in (Qt.NoModifier,
                                                                                    Qt.KeypadModifier):
            action = {Qt.Key_Return: self.finish_polygon, Qt.Key_Enter: self.finish_polygon,
                      Qt.Key_Backspace: self.remove_last_vertex, Qt.Key_Escape: self.cancel}.get(event.key())
            if action is not None:
                action()
                return True
        return super().eventFilter(obj, event)

    # -- state ---------------------------------------------------------------------
    def is_active(self) -> bool:
        return bool(self.tool) and self.enabled and self.canvas.has_image()

    def set_tool(self, name: str) -> None:
        """Turn a tool on ("polygon", "brush", "eraser", "vertices") or off ("")."""
        if name and name not in TOOLS:
            raise ValueError(f"unknown tool {name!r}")
        self.polygon, self.stroke, self._dragging = [], [], None
        self.tool = name
        self.canvas.view.setCursor(Qt.CrossCursor if name else Qt.ArrowCursor)
        self.refresh()
        self.tool_changed.emit(name)

    def set_enabled(self, on: bool) -> None:
        """Off: the tools ignore the mouse (e.g. nothing to edit)."""
        self.enabled = bool(on)
        self.refresh()

    def set_brush_radius(self, radius: float) -> None:
        self.brush_radius = float(min(max(radius, 1.0), 500.0))

    def shape(self) -> tuple[int, int] | None:
        return self.canvas.image_shape()

    def current_mask(self) -> np.ndarray | None:
        """The owner's mask, or an empty one of the image's size (None without an image)."""
        shape = self.shape()
        if shape is None:
            return None
        mask = self.mask_source()
        if mask is None or np.asarray(mask).shape != shape:
            return np.zeros(shape, bool)
        return np.asarray(mask, bool)

    def refresh(self) -> None:
        """Redraw the tool's marks (call after the owner's mask changed)."""
        if self.tool == VERTICES and self.is_active() and self._dragging is None:
            mask = self.current_mask()
            if mask is None:
                self.vertex_polygons, self._untouched, self._vertex_mask = [], None, None
            elif self._vertex_mask is None or not np.array_equal(mask, self._vertex_mask):
                # New outline (else keep the handles as edited: an inserted vertex changes no pixel,
                # and simplifying the outline again would take it away).
                tolerance, min_area = edit_scale(mask.shape)
                self.vertex_polygons = mask_to_vertex_polygons(mask, tolerance, 48, min_area)
                # Parts without handles stay as they are when a vertex moves; the pixels of a part
                # that its handles' polygon does not quite cover go with the part (no slivers).
                covered = vertex_polygons_to_mask(self.vertex_polygons, mask.shape)
                self._untouched = parts_apart_from(mask, covered)
                self._vertex_mask = None
        elif self.tool != VERTICES:
            self.vertex_polygons, self._vertex_mask = [], None
        self._draw_marks()

    # -- edits that need no mouse ------------------------------------------------------
    def fill_holes(self) -> bool:
        mask = self.current_mask()
        if mask is None or not mask.any():
            return False
        filled = fill_mask_holes(mask)
        if (filled == mask).all():
            return False
        self._emit(filled, "fill holes")
        return True

    def finish_polygon(self) -> bool:
        """Close the polygon being drawn and add it to the mask (False: fewer than 3 vertices)."""
        shape = self.shape()
        points, self.polygon = self.polygon, []
        self._draw_marks()
        if shape is None or len(points) < 3:
            return False
        region = polygon_to_mask(points, shape)
        replace = self.polygon_replaces is not None and self.polygon_replaces()
        self._emit(region if replace else paint(self.current_mask(), region), POLYGON)
        return True

    def cancel(self) -> None:
        """Esc: drop the polygon being drawn, or else put the tool away."""
        if self.polygon:
            self.polygon = []
            self._draw_marks()
        else:
            self.set_tool("")

    def remove_last_vertex(self) -> None:
        if self.polygon:
            self.polygon.pop()
            self._draw_marks()

    def _emit(self, mask: np.ndarray, what: str) -> None:
        """Report an edit, cleaned of fragments; nothing when that leaves the mask as it was."""
        mask = drop_fragments(mask)
        before = self.current_mask()
        if before is not None and np.array_equal(mask, before):  # e.g. only a speck was painted
            self._draw_marks()
            return
        self.edited.emit(mask, what)
        self.refresh()

    # -- mouse (called by the canvas, image coordinates) ---------------------------------
    def _tolerance(self) -> float:
        px = self.canvas.viewbox.viewPixelSize()
        return HANDLE_PX * max(px[0], px[1], 1e-6)

    def click(self, x: float, y: float, button: str, double: bool = False) -> bool:
        """A click; True when the tool used it."""
        if not self.is_active():
            return False
        if self.tool == POLYGON:
            if button == "right":
                self.remove_last_vertex()
            elif double:
                self.finish_polygon()
            elif len(self.polygon) >= 3 and np.hypot(x - self.polygon[0][0],
                                                     y - self.polygon[0][1]) <= self._tolerance():
                self.finish_polygon()
            else:
                self.polygon.append((float(x), float(y)))
                self._draw_marks()
            return True
        if self.tool in (BRUSH, ERASER):
            if button == "left":
                self._paint_stroke([(x, y)])
            return True
        if self.tool == VERTICES:
            tol = self._tolerance()
            hit = nearest_vertex(self.vertex_polygons, x, y, tol)
            if button == "right":
                if hit is not None:
                    self._apply_vertices(delete_vertex(self.vertex_polygons, hit))
                return True
            if hit is None:
                edge = nearest_edge(self.vertex_polygons, x, y, tol)
                if edge is not None:
                    self._apply_vertices(insert_vertex(self.vertex_polygons, edge, x, y))
            return True
        return False

    def drag(self, x: float, y: float, start: tuple[float, float], is_start: bool, is_finish: bool) -> bool:
        """A left-button drag step; True when the tool used it."""
        if not self.is_active():
            return False
        if self.tool == POLYGON:
            if is_finish:  # a drag in polygon mode is a click that moved a little
                self.click(x, y, "left")
            return True
        if self.tool in (BRUSH, ERASER):
            if is_start:
                self.stroke = [start]
            self.stroke.append((float(x), float(y)))
            if is_finish:
                stroke, self.stroke = self.stroke, []
                self._paint_stroke(stroke)
            else:
                self._draw_marks()
            return True
        if self.tool == VERTICES:
            if is_start:
                self._dragging = nearest_vertex(self.vertex_polygons, start[0], start[1], self._tolerance())
            if self._dragging is None:
                return True
            self.vertex_polygons = move_vertex(self.vertex_polygons, self._dragging, x, y)
            if is_finish:
                self._dragging = None
                self._apply_vertices(self.vertex_polygons)
            else:
                self._draw_marks()
            return True
        return False

    def hover(self, x: float, y: float) -> None:
        if self.is_active() and self.tool in (BRUSH, ERASER):
            r = self.brush_radius
            self._cursor.setRect(QRectF(x - r, y - r, 2 * r, 2 * r))
            self._cursor.show()
        else:
            self._cursor.hide()

    def _paint_stroke(self, points) -> None:
        shape = self.shape()
        if shape is None:
            return
        region = stroke_mask(points, self.brush_radius, shape)
        mask = self.current_mask()
        new = paint(mask, region, erase=self.tool == ERASER)
        self._draw_marks()
        if not (new == mask).all():
            self._emit(new, self.tool)

    def _apply_vertices(self, polygons) -> None:
        shape = self.shape()
        self.vertex_polygons = [list(p) for p in polygons]
        if shape is not None:
            mask = vertex_polygons_to_mask(self.vertex_polygons, shape)
            if self._untouched is not None and self._untouched.shape == shape:
                mask |= self._untouched
            mask = drop_fragments(mask)
            self._vertex_mask = mask
            self.edited.emit(mask, VERTICES)
            if not np.array_equal(self.current_mask(), mask):  # the owner did not take it
                self._vertex_mask = None
                self.refresh()
        self._draw_marks()

    # -- marks on the canvas ------------------------------------------------------------
    def _draw_marks(self) -> None:
        path = QPainterPath()
        if self.tool == POLYGON and self.polygon:
            path.moveTo(QPointF(*self.polygon[0]))
            for p in self.polygon[1:]:
                path.lineTo(QPointF(*p))
            self._path_item.setPen(_pen(EDIT_COLOR, 2))
            self._handles.setData(pos=np.array(self.polygon))
        elif self.tool in (BRUSH, ERASER) and self.stroke:
            path.moveTo(QPointF(*self.stroke[0]))
            for p in self.stroke[1:]:
                path.lineTo(QPointF(*p))
            color = (255, 80, 80) if self.tool == ERASER else EDIT_COLOR
            self._path_item.setPen(_pen(color, 2 * self.brush_radius, cosmetic=False))
            self._handles.clear()
        elif self.tool == VERTICES and self.vertex_polygons:
            for poly in self.vertex_polygons:
                path.moveTo(QPointF(*poly[0]))
                for p in poly[1:]:
                    path.lineTo(QPointF(*p))
                path.closeSubpath()
            self._path_item.setPen(_pen(EDIT_COLOR, 1.5))
            self._handles.setData(pos=np.array([p for poly in self.vertex_polygons for p in poly]))
        else:
            self._handles.clear()
        self._path_item.setPath(path)
        if not (self.tool in (BRUSH, ERASER) and self.is_active()):
            self._cursor.hide()


class DrawingToolbar(QWidget):
    """Buttons for the tools (P, B, E, V), the brush size, Fill holes (H), and optional Refine,
    Undo and Redo buttons calling the owner's ``on_refine``, ``on_undo``, ``on_redo``.

    Its keyboard shortcuts work in the whole window while the toolbar is visible
    (a hidden panel's tools stay quiet)."""

    def __init__(self, tools: DrawingTools, on_undo: Callable | None = None, on_redo: Callable | None = None,
                 on_refine: Callable | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tools = tools
        self.buttons: dict[str, QToolButton] = {}
        rows = QVBoxLayout(self)  # two short rows: fits a narrow side panel
        rows.setContentsMargins(0, 0, 0, 0)
        rows.setSpacing(2)
        row = QHBoxLayout()
        row.setSpacing(3)
        actions = QHBoxLayout()
        actions.setSpacing(3)
        rows.addLayout(row)
        rows.addLayout(actions)
        self._shortcuts: list[QShortcut] = []
        for name in TOOLS:
            text, key, what = TOOL_INFO[name]
            b = QToolButton()
            b.setText(text)
            b.setCheckable(True)
            b.setToolTip(f"<b>{text} ({key})</b>: {what}. Press again or Esc to put it away.")
            b.setFocusPolicy(Qt.NoFocus)
            b.clicked.connect(lambda on, n=name: tools.set_tool(n if on else ""))
            row.addWidget(b)
            self.buttons[name] = b
            self._shortcut(key, lambda n=name: tools.set_tool("" if tools.tool == n else n))
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 300)
        self.size_spin.setValue(int(tools.brush_radius))
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Brush and eraser radius in image pixels (- smaller, = larger)")
        self.size_spin.valueChanged.connect(lambda v: tools.set_brush_radius(v))
        row.addWidget(QLabel("Size:"))
        row.addWidget(self.size_spin)
        row.addStretch(1)
        self.fill_button = self._button("Fill holes", f"Fill the holes inside the outline ({FILL_KEY})",
                                        tools.fill_holes)
        actions.addWidget(self.fill_button)
        self._shortcut(FILL_KEY, tools.fill_holes)
        self._shortcut("-", lambda: self.size_spin.setValue(max(1, int(self.size_spin.value() / 1.25))))
        self._shortcut("=", lambda: self.size_spin.setValue(int(self.size_spin.value() * 1.25) + 1))
        self._shortcut("+", lambda: self.size_spin.setValue(int(self.size_spin.value() * 1.25) + 1))
        self.refine_button = None
        if on_refine is not None:
            self.refine_button = self._button(
                "Refine (S)", "Let SAM2 refine the outline you drew: its box and a few points inside it "
                "become a prompt; the result is shown as a proposal to keep or discard (S)", on_refine)
            actions.addWidget(self.refine_button)
            self._shortcut("S", on_refine)
        self.undo_button = self.redo_button = None
        if on_undo is not None:
            self.undo_button = self._button("\u21b6 Undo", "Undo (Ctrl+Z)", on_undo)
            actions.addWidget(self.undo_button)
        if on_redo is not None:
            self.redo_button = self._button("\u21b7 Redo", "Redo (Ctrl+Shift+Z or Ctrl+Y)", on_redo)
            actions.addWidget(self.redo_button)
        actions.addStretch(1)
        tools.tool_changed.connect(self._on_tool_changed)

    def _button(self, text: str, tip: str, slot) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setToolTip(tip)
        b.setFocusPolicy(Qt.NoFocus)
        b.clicked.connect(lambda _on=False: slot())
        return b

    def _shortcut(self, key, slot) -> None:
        sc = QShortcut(QKeySequence(key), self)
        sc.setContext(Qt.WindowShortcut)
        sc.activated.connect(slot)
        sc.setEnabled(False)  # on while visible (showEvent)
        self._shortcuts.append(sc)

    def _on_tool_changed(self, name: str) -> None:
        for tool, b in self.buttons.items():
            b.setChecked(tool == name)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        for sc in self._shortcuts:
            sc.setEnabled(True)

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        for sc in self._shortcuts:
            sc.setEnabled(False)
        if self.tools.tool:
            self.tools.set_tool("")
