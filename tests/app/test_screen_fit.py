"""The workspace opens within the screen it is on (a laptop's 1366x768 or 1280x720), with the
plugin panels' tab bar on screen; the mouse wheel changes no setting the user did not focus."""

from __future__ import annotations

import pytest
from PyQt5.QtCore import QPoint, QPointF, QRect, Qt
from PyQt5.QtGui import QWheelEvent
from PyQt5.QtWidgets import QApplication, QComboBox, QSpinBox, QTabBar

from descriptron_sam2pal.gui.fitting import FRAME, available_geometry


@pytest.mark.parametrize("screen", [(1366, 768), (1280, 720)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_workspace_with_its_panels_fits_the_screen(qtbot, tmp_path, dialogs, screen):
    from PyQt5.QtCore import QSettings

    from descriptron_sam2pal.app.workspace import Workspace

    window = Workspace(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(window)
    window.load_plugins()
    assert {r.name for r in window.plugin_results if r.ok} >= {"sam2pal"}
    area = QRect(0, 24, screen[0], screen[1] - 24 - 32)  # a top panel and a task bar, as on a laptop
    size = window.fit_to_screen(area)
    window.show()
    qtbot.waitExposed(window)
    assert window.width() == size.width() and window.height() == size.height()
    assert size.width() + FRAME.width() <= area.width() and size.height() + FRAME.height() <= area.height()
    assert area.contains(window.geometry())
    [tabs] = [t for t in window.findChildren(QTabBar) if "SAM2-PAL Templates" in
              [t.tabText(i) for i in range(t.count())]]
    assert tabs.isVisible()
    bottom = tabs.mapTo(window, QPoint(0, tabs.height())).y()
    assert 0 < bottom <= window.statusBar().mapTo(window, QPoint(0, 0)).y()  # above the status bar: seen
    assert available_geometry(window).isValid()
    window.close()


def wheel(widget, steps: int = -3) -> None:
    """``steps`` notches of the mouse wheel over ``widget`` (negative: towards the user)."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(widget.rect().center())), QPoint(),
                        QPoint(0, 120 * steps), Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_over_an_unfocused_spin_box_or_combo_changes_nothing(qtbot, window, project):
    from descriptron_sam2pal.gui.fitting import guard_wheel
    from PyQt5.QtWidgets import QFormLayout, QWidget

    form = QWidget()
    layout = QFormLayout(form)
    spin, combo, other = QSpinBox(), QComboBox(), QSpinBox()
    spin.setRange(1, 1000)
    spin.setValue(300)
    combo.addItems(["Quick", "Balanced", "Thorough"])
    combo.setCurrentIndex(1)
    layout.addRow("Steps", spin)
    layout.addRow("Preset", combo)
    layout.addRow("Other", other)
    guard_wheel(form)
    qtbot.addWidget(form)
    form.show()
    qtbot.waitExposed(form)
    QApplication.setActiveWindow(form)
    other.setFocus()
    qtbot.waitUntil(other.hasFocus)
    wheel(spin)
    wheel(combo)
    assert spin.value() == 300 and combo.currentIndex() == 1 and other.hasFocus()
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    wheel(spin)
    assert spin.value() == 297  # focused: the wheel is the user's choice
