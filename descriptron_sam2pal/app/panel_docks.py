"""Where the plugins' panels live in the workspace window: dock panels tabbed per side, each
side panel keeping its own width, and the big central area that shows the image canvas, the
start page or a panel's own view (the Review panel's viewer) as its tab is raised."""

from __future__ import annotations

from typing import Callable

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QDockWidget, QMainWindow, QMenu, QStackedWidget, QWidget

from descriptron_sam2pal.gui.fitting import guard_wheel

AREAS = {
    "left": Qt.LeftDockWidgetArea,
    "right": Qt.RightDockWidgetArea,
    "top": Qt.TopDockWidgetArea,
    "bottom": Qt.BottomDockWidgetArea,
}
SIDES = (Qt.LeftDockWidgetArea, Qt.RightDockWidgetArea)


class CentralArea(QStackedWidget):
    """The image canvas, the start page (shown while ``project_open()`` is False) and the
    panels' views."""

    def __init__(
        self,
        canvas: QWidget,
        start_page: QWidget,
        project_open: Callable[[], bool],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.canvas, self.start_page, self.project_open = canvas, start_page, project_open
        self.view_owners: dict[QWidget, QWidget] = {}  # panel -> its central view
        self.addWidget(canvas)
        self.addWidget(start_page)
        self.setCurrentWidget(start_page)

    def show_view(self, widget: QWidget | None, owner: QWidget | None = None) -> None:
        """Show ``widget`` (``owner``: the panel it belongs to); None shows the canvas, or the
        start page without an open project."""
        if widget is None:
            widget = self.canvas if self.project_open() else self.start_page
        else:
            if self.indexOf(widget) < 0:
                self.addWidget(widget)
            if owner is not None:
                self.view_owners[owner] = widget
        self.setCurrentWidget(widget)

    def follow_panel(self, dock: QDockWidget) -> None:
        """A panel's tab was raised: show its central view, or the canvas if it has none."""
        view = self.view_owners.get(dock.widget())
        if view is not None:
            self.setCurrentWidget(view)
        elif self.currentWidget() in self.view_owners.values():
            self.show_view(None)


class PanelDocks:
    """The plugins' dock panels of ``window``, listed in ``panels_menu``."""

    #: Side panels take at most this share of the window, so the image keeps its room.
    MAX_PANEL_SHARE = 0.6

    def __init__(self, window: QMainWindow, panels_menu: QMenu, central: CentralArea) -> None:
        self.window, self.panels_menu, self.central = window, panels_menu, central
        self.last: dict[Qt.DockWidgetArea, QDockWidget] = {}  # the newest panel of each area
        self.widths: dict[QDockWidget, int] = {}  # width each side panel had when last shown
        self.shown_tab: dict[Qt.DockWidgetArea, QDockWidget] = {}
        window.tabifiedDockWidgetActivated.connect(self.on_tab_activated)
        window.tabifiedDockWidgetActivated.connect(central.follow_panel)

    def add(self, title: str, widget: QWidget, area: str = "right") -> QDockWidget:
        if area not in AREAS:
            raise ValueError(f"area must be one of {sorted(AREAS)}, not {area!r}")
        window = self.window
        dock = QDockWidget(title, window)
        dock.setObjectName(f"plugin:{title}")
        dock.setWidget(widget)
        guard_wheel(widget)  # scrolling over a panel never changes its settings
        qt_area = AREAS[area]
        previous = self.last.get(qt_area)
        window.addDockWidget(qt_area, dock)
        if previous is not None:
            window.tabifyDockWidget(previous, dock)
            dock.raise_()
        self.last[qt_area] = dock
        # Also when a tab is raised from code (tabifiedDockWidgetActivated is for the user's clicks).
        dock.visibilityChanged.connect(lambda on, d=dock: on and self.central.follow_panel(d))
        self.panels_menu.addAction(dock.toggleViewAction())
        if area in ("left", "right"):
            self.shown_tab[qt_area] = dock
            self.fit(dock)
        return dock

    def width_of(self, dock: QDockWidget) -> int:
        """The width a side panel gets when shown: what the user last gave it, else what it asks for."""
        if dock in self.widths:
            return self.widths[dock]
        wanted = dock.widget().sizeHint().width() if dock.widget() is not None else 320
        return max(260, min(wanted, int(self.window.width() * self.MAX_PANEL_SHARE)))

    def on_tab_activated(self, dock: QDockWidget) -> None:
        """Tabbed side panels each keep their own width (a review needs more room than a form)."""
        area = self.window.dockWidgetArea(dock)
        if area not in SIDES or dock.isFloating():
            return
        previous = self.shown_tab.get(area)
        if previous is dock:
            return
        if previous is not None and self.window.isVisible() and previous.width() > 0:
            self.widths[previous] = previous.width()
        self.shown_tab[area] = dock
        self.fit(dock)

    def fit(self, dock: QDockWidget) -> None:
        if self.window.isVisible():  # before that the layout is not settled; fit_shown does it
            self.window.resizeDocks([dock], [self.width_of(dock)], Qt.Horizontal)

    def fit_shown(self) -> None:
        """Once the window is shown: give each side area's visible panel its width (a tab raised
        before the window was shown sends no activation signal)."""
        shown = [
            d
            for d in self.window.findChildren(QDockWidget)
            if d.objectName().startswith("plugin:")
            and d.isVisible()
            and not d.isFloating()
            and self.window.dockWidgetArea(d) in SIDES
        ]
        for dock in shown:
            self.shown_tab[self.window.dockWidgetArea(dock)] = dock
            self.fit(dock)
