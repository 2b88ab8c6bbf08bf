import numpy as np
import pytest
from PyQt5.QtCore import QEvent, QPoint, QPointF, Qt
from PyQt5.QtGui import QMouseEvent
from PyQt5.QtTest import QTest
from PyQt5.QtWidgets import QApplication

from descriptron_sam2pal.gui.canvas import (
    STRUCTURE_PALETTE,
    ImageCanvas,
    StructureColors,
    compose_overlay,
    mask_outline,
)


@pytest.fixture
def canvas(qtbot):
    c = ImageCanvas()
    qtbot.addWidget(c)
    c.resize(500, 400)
    c.show()
    qtbot.waitExposed(c)
    img = np.zeros((60, 80, 3), np.uint8)
    img[..., 0] = np.arange(80, dtype=np.uint8)[None, :] * 3
    c.set_image(img)
    return c


def _send(widget, kind, pos, button, buttons, modifiers=Qt.NoModifier):
    event = QMouseEvent(kind, QPointF(pos), button, buttons, modifiers)
    QApplication.sendEvent(widget, event)


def _drag(canvas, start, end, modifiers=Qt.NoModifier):
    """Press, move, release with the button held (QTest.mouseMove cannot hold one).

    pyqtgraph drops moves closer than 10 ms apart (mouseRateLimit), hence the waits.
    """
    vp = canvas.view.viewport()
    a, b = canvas.map_to_widget(*start), canvas.map_to_widget(*end)
    _send(vp, QEvent.MouseButtonPress, a, Qt.LeftButton, Qt.LeftButton, modifiers)
    for t in (0.25, 0.5, 0.75, 1.0):
        p = QPoint(int(a.x() + (b.x() - a.x()) * t), int(a.y() + (b.y() - a.y()) * t))
        QTest.qWait(11)
        _send(vp, QEvent.MouseMove, p, Qt.NoButton, Qt.LeftButton, modifiers)
    _send(vp, QEvent.MouseButtonRelease, b, Qt.LeftButton, Qt.NoButton, modifiers)


def test_click_emits_image_pixel_coordinates(qtbot, canvas):
    for button, name in ((Qt.LeftButton, "left"), (Qt.RightButton, "right")):
        with qtbot.waitSignal(canvas.clicked, timeout=2000) as blocker:
            qtbot.mouseClick(canvas.view.viewport(), button, pos=canvas.map_to_widget(30.5, 20.5))
        x, y, got = blocker.args
        assert got == name
        assert (int(x), int(y)) == (30, 20)


def test_click_outside_image_emits_nothing(qtbot, canvas):
    canvas.viewbox.setRange(xRange=(-200, 200), yRange=(-200, 200), padding=0)
    with qtbot.assertNotEmitted(canvas.clicked):
        qtbot.mouseClick(canvas.view.viewport(), Qt.LeftButton, pos=canvas.map_to_widget(-50, -50))


def test_shift_drag_draws_a_box_in_image_coordinates(qtbot, canvas):
    with qtbot.waitSignal(canvas.box_drawn, timeout=2000) as blocker:
        _drag(canvas, (50, 40), (10, 5), Qt.ShiftModifier)
    x0, y0, x1, y1 = blocker.args
    assert x0 < x1 and y0 < y1
    assert abs(x0 - 10) < 1.5 and abs(y0 - 5) < 1.5 and abs(x1 - 50) < 1.5 and abs(y1 - 40) < 1.5


def test_plain_drag_pans_unless_box_mode(qtbot, canvas):
    before = canvas.viewbox.viewRange()
    with qtbot.assertNotEmitted(canvas.box_drawn):
        _drag(canvas, (40, 30), (20, 10))
    assert canvas.viewbox.viewRange() != before
    canvas.set_box_mode(True)
    with qtbot.waitSignal(canvas.box_drawn, timeout=2000):
        _drag(canvas, (45, 35), (60, 50))


def test_overlay_colours_are_stable_and_legend_toggles(canvas):
    mask = np.zeros((60, 80), bool)
    mask[10:30, 10:40] = True
    eye = np.zeros((60, 80), bool)
    eye[40:50, 50:70] = True
    assert canvas.set_masks({"scape": mask, "eye": eye, "bad": np.ones((5, 5), bool)}) == ["bad"]
    rgba = canvas.overlay_rgba()
    assert rgba.shape == (60, 80, 4)
    scape_rgb = tuple(rgba[20, 20, :3])
    assert scape_rgb == canvas.colors.color("scape")
    assert rgba[20, 20, 3] == 90 and rgba[10, 20, 3] == 255  # fill inside, outline on the edge
    assert rgba[0, 0, 3] == 0
    assert canvas.legend.names() == ["scape", "eye"]
    canvas.legend.checkbox("scape").setChecked(False)
    assert canvas.overlay_rgba()[20, 20, 3] == 0
    assert canvas.overlay_rgba()[45, 60, 3] > 0
    canvas.set_structure_visible("scape", True)
    assert canvas.legend.checkbox("scape").isChecked()
    assert canvas.overlay_rgba()[20, 20, 3] == 90


def test_structure_colors_first_come_kept_and_persisted(tmp_path):
    from PyQt5.QtCore import QSettings

    colors = StructureColors()
    colors.assign(["scape", "eye", "Antenna"])
    assert colors.color("scape") == colors.palette[0]
    assert colors.color("antenna") == colors.palette[2]
    colors.assign(["eye", "pronotum", "scape"])  # a new order does not move anyone's colour
    assert colors.color("eye") == colors.palette[1] and colors.color("pronotum") == colors.palette[3]
    settings = QSettings(str(tmp_path / "colors.ini"), QSettings.IniFormat)
    kept = StructureColors(settings=settings)
    kept.color("legs")
    kept.assign(["elytra"])
    again = StructureColors(settings=QSettings(str(tmp_path / "colors.ini"), QSettings.IniFormat))
    assert again.color("elytra") == kept.color("elytra") == again.palette[1]
    assert again.color("Legs") == again.palette[0]


def test_points_and_box_markers(canvas):
    canvas.set_points([(5, 5, True), (10, 12, False)])
    assert canvas.points() == [(5, 5, True), (10, 12, False)]
    canvas.set_box((1, 2, 30, 40))
    assert canvas._box_item.isVisible()
    canvas.set_image(np.zeros((10, 10, 3), np.uint8))
    assert canvas.points() == [] and not canvas._box_item.isVisible()


def test_outline_is_closed_at_the_image_border():
    mask = np.zeros((10, 10), bool)
    mask[:, :5] = True
    edge = mask_outline(mask, 1)
    assert edge[0, 2] and edge[5, 0] and edge[5, 4] and not edge[5, 2]
    overlay = compose_overlay((10, 10), {"x": mask}, StructureColors())
    assert overlay[5, 4, 3] == 255 and overlay[5, 2, 3] == 90


def test_rejects_non_rgb_uint8(canvas):
    with pytest.raises(ValueError):
        canvas.set_image(np.zeros((5, 5), np.float32))


#: Machado, Oliveira & Fernandes (2009) full-severity simulation matrices in linear RGB.
CVD = {
    "protanopia": [
        [0.152286, 1.052583, -0.204868],
        [0.114503, 0.786281, 0.099216],
        [-0.003882, -0.048116, 1.051998],
    ],
    "deuteranopia": [
        [0.367322, 0.860646, -0.227968],
        [0.280085, 0.672501, 0.047413],
        [-0.011820, 0.042940, 0.968881],
    ],
    "tritanopia": [
        [1.255528, -0.076749, -0.178779],
        [-0.078411, 0.930809, 0.147602],
        [0.004733, 0.691367, 0.303900],
    ],
}


def _linear(rgb):
    c = np.asarray(rgb, float) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lab_of_linear(lin):
    xyz = lin @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], -1)


def _closest_pair(lab):
    d = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    d[np.eye(len(lab), dtype=bool)] = np.inf
    return float(d.min())


def test_the_first_twelve_structure_colours_stay_apart_for_colour_blind_eyes_and_on_dark_specimens(qtbot):
    twelve = STRUCTURE_PALETTE[:12]
    assert len(set(twelve)) == 12
    lin = _linear(twelve)
    assert _closest_pair(_lab_of_linear(lin)) >= 13
    for name, matrix in CVD.items():
        seen = np.clip(lin @ np.asarray(matrix).T, 0, 1)
        assert _closest_pair(_lab_of_linear(seen)) >= 13, name
    assert _closest_pair(_lab_of_linear(lin[:5])) >= 20  # a five-structure project: far apart
    assert _lab_of_linear(lin)[:, 0].min() >= 45  # no dark colour to vanish on a black beetle

    canvas = ImageCanvas(colors=StructureColors())
    qtbot.addWidget(canvas)
    canvas.set_image(np.full((40, 130, 3), 20, np.uint8))  # a dark specimen
    names = [
        "head",
        "pronotum",
        "elytra",
        "legs",
        "antennae",
        "eyes",
        "mouthparts",
        "scutellum",
        "abdomen",
        "tarsi",
        "mandibles",
        "palps",
    ]
    masks = {}
    for i, name in enumerate(names):
        m = np.zeros((40, 130), bool)
        m[10:30, 10 * i + 2 : 10 * i + 9] = True
        masks[name] = m
    canvas.set_masks(masks)
    rgba = canvas.overlay_rgba()
    shown = [tuple(rgba[20, 10 * i + 5, :3]) for i in range(12)]
    assert shown == list(twelve) and canvas.legend.names() == names
