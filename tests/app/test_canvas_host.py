"""The optional CanvasHost members of the workspace: prompts in, proposal out."""

import numpy as np

from descriptron_sam2pal.host.api import CanvasHost, Host
from tests.helpers.workspace_project import wait_shown


def test_clicks_boxes_and_proposal(qtbot, window, project):
    assert isinstance(window, Host) and isinstance(window, CanvasHost)
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    clicks, boxes = [], []
    unsubscribe = window.on_image_clicked(lambda *a: clicks.append(a))
    window.on_box_drawn(lambda *a: boxes.append(a))
    window.canvas.clicked.emit(5.0, 6.0, "right")
    window.canvas.box_drawn.emit(1.0, 2.0, 30.0, 20.0)
    assert clicks == [(5.0, 6.0, "right")] and boxes == [(1.0, 2.0, 30.0, 20.0)]
    unsubscribe()
    window.canvas.clicked.emit(5.0, 6.0, "left")
    assert len(clicks) == 1

    window.set_box_drawing(True)
    assert window.canvas.box_mode
    mask = np.zeros((60, 80), bool)
    mask[20:30, 20:40] = True
    window.show_proposal(mask, "antenna", points=[(25, 25, True)], box=(20, 20, 40, 30))
    shown = window.canvas.masks()
    stored = set(window.store.structure_masks(window.current_image().id))
    assert set(shown) == stored | {"antenna (proposal)"}  # drawn over the stored structures
    assert window.canvas.points() == [(25.0, 25.0, True)]
    window.notify_store_changed()  # a redraw keeps the proposal
    assert "antenna (proposal)" in window.canvas.masks()
    window.show_proposal(None)
    assert "antenna (proposal)" not in window.canvas.masks() and window.canvas.points() == []

    window.show_proposal(mask, "antenna")
    window.set_current_image(2)  # another image: the proposal belonged to the first
    wait_shown(qtbot, window, "ant_02.png")
    assert not any("proposal" in n for n in window.canvas.masks())
