"""The Review panel's keys, while the panel or any part of it has the focus; they win over the
host's shortcuts there (e.g. its own Ctrl+Z): **A** accept, **R** reject, **Shift+A / Shift+R**
the whole specimen, **Down/Right** next, **Up/Left** previous, **F** fix mode, **Esc** leaves
the drawing tool or fix mode, **Ctrl+Z** undo, **Ctrl+Shift+Z** / **Ctrl+Y** redo."""

from __future__ import annotations

from typing import Any, Callable

from PyQt5.QtCore import QEvent, QObject, Qt
from PyQt5.QtGui import QKeySequence


def key_action(panel: Any, event: Any) -> Callable[[], None] | None:
    """What ``event`` (a key event) does in ``panel`` (a ReviewPanel), or None."""
    key, mods = event.key(), event.modifiers() & ~Qt.KeypadModifier
    if event.matches(QKeySequence.Undo) or (key == Qt.Key_Z and mods == Qt.ControlModifier):
        return panel.undo
    if (
        event.matches(QKeySequence.Redo)
        or (key == Qt.Key_Y and mods == Qt.ControlModifier)
        or (key == Qt.Key_Z and mods == Qt.ControlModifier | Qt.ShiftModifier)
    ):
        return panel.redo
    if mods == Qt.NoModifier:
        return {
            Qt.Key_A: panel.accept_current,
            Qt.Key_R: panel.reject_current,
            Qt.Key_Down: panel.rows.next_item,
            Qt.Key_Right: panel.rows.next_item,
            Qt.Key_Up: panel.rows.previous_item,
            Qt.Key_Left: panel.rows.previous_item,
            Qt.Key_F: lambda: panel.set_fix_mode(not panel.fix_mode),
            Qt.Key_Escape: lambda: panel.tools.cancel() if panel.tools.tool else panel.set_fix_mode(False),
        }.get(key)
    if mods == Qt.ShiftModifier:
        return {Qt.Key_A: panel.accept_specimen, Qt.Key_R: panel.reject_specimen}.get(key)
    return None


class ReviewKeys(QObject):
    """An event filter giving ``panel``'s keys to the widgets it is installed on (:meth:`watch`)."""

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.panel = panel

    def watch(self, widgets: list) -> None:
        for w in widgets:
            w.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        kind = event.type()
        if kind == QEvent.ShortcutOverride and key_action(self.panel, event) is not None:
            event.accept()  # ours here, not the host's menu shortcut (e.g. its own Ctrl+Z)
            return True
        if kind == QEvent.KeyPress:
            action = key_action(self.panel, event)
            if action is not None:
                action()
                return True
        return super().eventFilter(obj, event)
