"""Hand tools on the real canvas (mouse events): no fragment below the minimum area is ever
made or saved, vertex mode inserts a vertex where an edge is clicked."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PyQt5.QtCore import Qt

from descriptron_sam2pal.gui.canvas import ImageCanvas
from descriptron_sam2pal.gui.drawing_tools import DrawingTools
from descriptron_sam2pal.imaging.drawing import (
    drop_fragments,
    fragment_area,
    parts_apart_from,
    vertex_polygons_to_mask,
)
from descriptron_sam2pal.imaging.masks import mask_to_polygons, segmentation_to_mask
from descriptron_sam2pal.store import AnnotationStore
from tests.helpers.plugin_gui import click_on, drag_on, wait_image


def parts(mask) -> int:
    return cv2.connectedComponents(np.asarray(mask, np.uint8), connectivity=8)[0] - 1


def polygon_areas(mask) -> list[float]:
    """Areas of the polygons a file would get for ``mask``."""
    return [
        abs(cv2.contourArea(np.asarray(flat, np.float32).reshape(-1, 2))) for flat in mask_to_polygons(mask)
    ]


def test_drop_fragments_and_parts_apart_from():
    mask = np.zeros((100, 100), bool)
    mask[10:40, 10:40] = True  # kept
    mask[60, 60] = True  # one pixel: a zero-area polygon
    mask[80, 10:70] = True  # a one-pixel line, 60 px long: zero area too
    mask[50:54, 70:74] = True  # 4 x 4: outline area 9 = the minimum, kept
    assert fragment_area((100, 100)) == 9.0 and fragment_area((3000, 4500)) == 225.0
    clean = drop_fragments(mask)
    assert parts(clean) == 2 and clean[20, 20] and clean[51, 71] and not clean[60, 60] and not clean[80, 30]
    assert min(polygon_areas(clean)) >= 9.0
    covered = np.zeros_like(mask)
    covered[12:38, 12:38] = True  # nearly covers the square only
    apart = parts_apart_from(mask, covered)
    assert not apart[10, 10] and apart[60, 60] and apart[80, 30] and apart[51, 71]


class Owner:
    """What a panel does with the tools: keeps the mask, takes every edit."""

    def __init__(self, mask):
        self.mask = mask
        self.edits: list[str] = []

    def take(self, mask, what):
        self.mask = mask
        self.edits.append(what)


@pytest.fixture
def canvas(qtbot):
    c = ImageCanvas()
    qtbot.addWidget(c)
    c.resize(600, 600)
    c.show()
    qtbot.waitExposed(c)
    c.set_image(np.full((200, 200, 3), 90, np.uint8))
    return c


def disc(shape=(200, 200), centre=(100, 100), r=60):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= r * r


def test_deleting_and_moving_vertices_leaves_no_fragments(qtbot, canvas):
    owner = Owner(disc())
    tools = DrawingTools(canvas, lambda: owner.mask)
    tools.edited.connect(lambda m, what: (owner.take(m, what), tools.refresh()))
    tools.set_tool("vertices")
    n = len(tools.vertex_polygons[0])
    assert n >= 8
    vertex = tools.vertex_polygons[0][n // 3]
    click_on(qtbot, canvas, *vertex, Qt.RightButton)  # delete it
    assert owner.edits == ["vertices"]
    assert parts(owner.mask) == 1  # no pixels left outside the new outline
    assert np.array_equal(owner.mask, vertex_polygons_to_mask(tools.vertex_polygons, owner.mask.shape))
    assert min(polygon_areas(owner.mask)) >= fragment_area(owner.mask.shape)
    assert len(tools.vertex_polygons[0]) == n - 1
    a = tools.vertex_polygons[0][0]
    drag_on(qtbot, canvas, [a, (a[0] + 15, a[1] - 10)])  # move a vertex outward
    assert owner.edits == ["vertices", "vertices"] and parts(owner.mask) == 1


def test_a_click_on_an_edge_inserts_a_vertex_that_stays(qtbot, canvas):
    square = np.zeros((200, 200), bool)
    square[50:150, 50:150] = True
    owner = Owner(square)
    tools = DrawingTools(canvas, lambda: owner.mask)
    tools.edited.connect(lambda m, what: (owner.take(m, what), tools.refresh()))  # as the panels do
    tools.set_tool("vertices")
    [ring] = tools.vertex_polygons
    assert len(ring) == 4
    top = min(ring, key=lambda p: p[1])[1]
    click_on(qtbot, canvas, 100, top)  # the middle of the top edge
    [ring] = tools.vertex_polygons
    assert len(ring) == 5 and any(abs(x - 100) <= 1 and abs(y - top) <= 1 for x, y in ring)
    tools.refresh()  # the owner redraws: the new vertex is still there
    assert len(tools.vertex_polygons[0]) == 5
    drag_on(qtbot, canvas, [(100, top), (100, top - 30)])  # and can be dragged: a peak on the top edge
    assert owner.mask[int(top) - 20, 100] and not owner.mask[int(top) - 20, 60]


def test_a_brushed_speck_is_never_kept(qtbot, canvas):
    owner = Owner(disc())
    tools = DrawingTools(canvas, lambda: owner.mask)
    tools.edited.connect(lambda m, what: (owner.take(m, what), tools.refresh()))
    tools.set_tool("brush")
    tools.set_brush_radius(1)
    click_on(qtbot, canvas, 190, 10)  # a dot away from the outline
    assert owner.edits == [] and not owner.mask[10, 190]
    tools.set_tool("eraser")
    tools.set_brush_radius(3)
    drag_on(qtbot, canvas, [(100, 30), (100, 100), (100, 170)])  # cut the disc in two
    assert owner.edits == ["eraser"] and parts(owner.mask) == 2
    assert min(polygon_areas(owner.mask)) >= fragment_area(owner.mask.shape)


def test_accepting_a_template_drops_specks_and_refuses_only_specks(
    qtbot, window, specimens, session, messages
):
    from descriptron_sam2pal.gui.templates_panel import TemplatesPanel

    assert window.open_path(specimens)
    wait_image(qtbot, window, "specimen_01.png")
    panel = TemplatesPanel(window, session)
    window.add_dock_panel("SAM2-PAL Templates", panel)
    record = window.current_image()
    h, w = record.height, record.width
    specks = np.zeros((h, w), bool)
    specks[5, 5] = specks[60, 100:110] = True
    panel.proposal = specks
    panel.name_combo.setEditText("elytra")
    panel.accept_proposal()
    assert [t for t, _ in messages.seen] == ["Cannot add the structure"] and "specks" in messages.seen[0][1]
    assert window.store.annotations_for(record.id) == []

    outline = specks.copy()
    outline[20:50, 30:80] = True
    panel.proposal = outline
    panel.accept_proposal()
    window.save_store()
    reopened = AnnotationStore.open(specimens)  # what the file holds
    [ann] = reopened.annotations_for(reopened.image_by_file(specimens / "specimen_01.png").id)
    [polygon] = ann.raw["segmentation"]
    assert abs(cv2.contourArea(np.asarray(polygon, np.float32).reshape(-1, 2))) > 1000
    assert np.array_equal(segmentation_to_mask(ann.raw["segmentation"], h, w), drop_fragments(outline))
