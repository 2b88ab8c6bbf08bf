"""Widgets that fit a small screen and take no setting by accident.

:class:`VerticalScroll` lets a tall panel or form scroll instead of making the window
taller than the screen. :func:`guard_wheel` makes the mouse wheel change a spin box or a
combo box only once the user gave it the focus (a click or Tab): scrolling over a form
scrolls the form, it never changes Steps from 300 to 291 on the way.
"""

from __future__ import annotations

from PyQt5.QtCore import QEvent, QObject, QRect, QSize, Qt
from PyQt5.QtGui import QGuiApplication
from PyQt5.QtWidgets import QAbstractSpinBox, QComboBox, QFrame, QScrollArea, QWidget

__all__ = ["VerticalScroll", "guard_wheel", "fit_to_screen", "available_geometry", "FRAME"]

#: What a window manager adds around a window (title bar, borders), kept free when fitting.
FRAME = QSize(16, 40)


def available_geometry(widget: QWidget) -> QRect:
    """The usable part (without task bars and panels) of the screen ``widget`` is on, else of
    the primary screen."""
    screen = None
    parent = widget.parentWidget()
    for candidate in (widget, parent.window() if parent is not None else None):
        if candidate is not None and candidate.windowHandle() is not None:
            screen = candidate.windowHandle().screen()
            break
    screen = screen or QGuiApplication.primaryScreen()
    return screen.availableGeometry()


def fit_to_screen(
    window: QWidget, wanted: QSize, available: QRect | None = None, place: bool = False
) -> QSize:
    """Size ``window`` to ``wanted``, or less where the screen (``available``, default the
    window's screen) is smaller, frame included; with ``place``, centre it on that screen
    (a dialog is placed over its parent by Qt, inside the screen). Returns the size given. A window
    whose minimum size is larger than the screen still overflows: keep
    tall content in a :class:`VerticalScroll`."""
    area = available if available is not None else available_geometry(window)
    size = QSize(
        min(wanted.width(), area.width() - FRAME.width()),
        min(wanted.height(), area.height() - FRAME.height()),
    )
    size = size.expandedTo(window.minimumSizeHint()).expandedTo(window.minimumSize())
    window.resize(size)
    if place:
        x = area.x() + max(0, (area.width() - size.width() - FRAME.width()) // 2)
        y = area.y() + max(0, (area.height() - size.height() - FRAME.height()) // 2)
        window.move(x, y)
    return size


class VerticalScroll(QScrollArea):
    """Scrolls its widget up and down only: as wide as the widget wants (so nothing is cut
    off at the side), as short as the window needs."""

    def __init__(self, widget: QWidget | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        if widget is not None:
            self.setWidget(widget)

    def _width(self, hint: QSize) -> int:
        return hint.width() + self.verticalScrollBar().sizeHint().width()

    def sizeHint(self) -> QSize:
        inner = self.widget().sizeHint() if self.widget() else QSize(0, 0)
        return QSize(self._width(inner), inner.height())

    def minimumSizeHint(self) -> QSize:
        inner = self.widget().minimumSizeHint() if self.widget() else QSize(0, 0)
        return QSize(self._width(inner), min(inner.height(), 200))


class _UnfocusedWheel(QObject):
    """Passes a wheel event over an unfocused spin box or combo box on to its parent."""

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Wheel and not obj.hasFocus():
            event.ignore()  # ignored + filtered: Qt offers it to the parent (a scroll area scrolls)
            return True
        return False


def guard_wheel(root: QWidget) -> None:
    """Every spin box and combo box in ``root`` (now) changes with the wheel only while it has
    the focus, and the wheel never gives it the focus."""
    guard = root.findChild(_UnfocusedWheel, "wheel guard")
    if guard is None:
        guard = _UnfocusedWheel(root)
        guard.setObjectName("wheel guard")
    for widget in root.findChildren((QAbstractSpinBox, QComboBox)):
        widget.setFocusPolicy(Qt.StrongFocus)
        widget.removeEventFilter(guard)
        widget.installEventFilter(guard)
