"""Plugins' menu actions in the workspace's menu bar: "Title" or "Title/Submenu" paths."""

from __future__ import annotations

from PyQt5.QtWidgets import QMenu, QMenuBar


def strip_mnemonic(text: str) -> str:
    """``"&File"`` -> ``"File"`` (``"&&"`` is a literal ``&``)."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")


def menu_for_path(bar: QMenuBar, path: str, before: QMenu) -> QMenu:
    """The menu named by "Title" or "Title/Submenu", created when missing (a new top-level
    menu just before ``before``, the Help menu); "Plugins" when the path is empty."""
    parts = [p for p in path.split("/") if p.strip()] or ["Plugins"]
    parent_actions = bar.actions()
    menu: QMenu | None = None
    for depth, part in enumerate(parts):
        found = None
        for action in parent_actions:
            sub = action.menu()
            if sub is not None and strip_mnemonic(action.text()) == strip_mnemonic(part):
                found = sub
                break
        if found is None:
            if depth == 0:
                found = QMenu(part, bar.parentWidget())
                bar.insertMenu(before.menuAction(), found)
            else:
                found = menu.addMenu(part)
        menu = found
        parent_actions = menu.actions()
    return menu
