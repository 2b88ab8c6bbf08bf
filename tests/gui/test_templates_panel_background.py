"""Templates panel: SAM2 answers clicks, boxes and Refine in the background, the latest request wins
(real canvas, real mini SAM2)."""

import numpy as np

from descriptron_sam2pal.gui import templates_panel as panel_module
from descriptron_sam2pal.jobs.prompt_masks import mask_from_prompts
from tests.helpers.plugin_gui import click_on, wait_image


def _ready_panel(qtbot, window, specimens, session):
    assert window.open_path(specimens)
    wait_image(qtbot, window, "specimen_01.png")
    panel = panel_module.TemplatesPanel(window, session)
    window.add_dock_panel("SAM2-PAL Templates", panel)
    panel.set_active(True)
    qtbot.waitUntil(
        lambda: panel.session.is_ready and panel._encoder is None and panel._encoded_id is not None,
        timeout=30000,
    )
    return panel


def _answered(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.prompter.busy, timeout=30000)


def _record_calls(monkeypatch):
    """Every mask_from_prompts the panel runs (the real one), with the clicks and box it got."""
    calls = []

    def recorded(segmenter, clicks=(), box=None):
        calls.append((list(clicks), box))
        return mask_from_prompts(segmenter, clicks, box)

    monkeypatch.setattr(panel_module, "mask_from_prompts", recorded)
    return calls


def test_quick_clicks_never_block_and_only_the_latest_answer_is_shown(
    qtbot, window, specimens, session, messages, monkeypatch
):
    panel = _ready_panel(qtbot, window, specimens, session)
    calls = _record_calls(monkeypatch)
    shown = []
    real_show = window.show_proposal
    monkeypatch.setattr(
        window, "show_proposal", lambda mask, *a, **k: (shown.append(mask), real_show(mask, *a, **k))
    )

    box = (25.0, 15.0, 90.0, 55.0)
    window.canvas.box_drawn.emit(*box)  # SAM2 starts on the box...
    assert panel.prompter.busy and panel.proposal is None  # ... and the panel went on at once
    window.canvas.clicked.emit(50.0, 35.0, "left")  # waits for the box's answer
    window.canvas.clicked.emit(60.0, 30.0, "right")  # replaces the waiting click
    assert panel.proposal is None and len(panel.prompts.points()) == 2
    _answered(qtbot, panel)

    clicks = [(50.0, 35.0, True), (60.0, 30.0, False)]
    assert calls == [([], box), (clicks, box)]  # the first click never ran
    expected = mask_from_prompts(session.loaded.segmenter, clicks, box).mask
    assert expected is not None and np.array_equal(panel.proposal, expected)
    assert [m is not None for m in shown] == [False, False, False, True]  # markers, then one mask
    assert np.array_equal(shown[-1], expected)
    assert messages.seen == []

    # Undo takes back what that one answer answered: the box and both clicks.
    panel.undo()
    assert not panel.prompts and panel.proposal is None
    panel.redo()
    assert panel.prompts.points() == clicks and np.array_equal(panel.proposal, expected)


def test_an_answer_for_an_image_left_behind_is_dropped(qtbot, window, specimens, session, messages):
    panel = _ready_panel(qtbot, window, specimens, session)
    window.canvas.box_drawn.emit(25.0, 15.0, 90.0, 55.0)
    assert panel.prompter.busy
    second = window.images()[1]
    window.set_current_image(second.id)
    wait_image(qtbot, window, "specimen_02.png")
    qtbot.waitUntil(
        lambda: not panel.prompter.busy and panel._encoder is None and panel._encoded_id == second.id,
        timeout=30000,
    )
    assert panel.proposal is None and not panel.prompts and panel.history is None
    window.canvas.box_drawn.emit(25.0, 15.0, 90.0, 55.0)  # the new image answers as usual
    _answered(qtbot, panel)
    assert panel.proposal is not None and panel.proposal.shape == (second.height, second.width)
    assert messages.seen == []


def test_refine_runs_in_the_background(qtbot, window, specimens, session, messages):
    panel = _ready_panel(qtbot, window, specimens, session)
    panel.set_active(False)
    panel.tools.set_tool("polygon")
    for x, y in [(30, 20), (80, 20), (80, 50), (30, 50)]:
        click_on(qtbot, window.canvas, x, y)
    assert panel.tools.finish_polygon()
    drawn = panel.proposal.copy()
    panel.refine()
    assert panel.prompter.busy and np.array_equal(
        panel.proposal, drawn
    )  # the outline stays until SAM2 answers
    _answered(qtbot, panel)
    assert panel.history.tag == "refine" and not np.array_equal(panel.proposal, drawn)
    assert messages.seen == []
