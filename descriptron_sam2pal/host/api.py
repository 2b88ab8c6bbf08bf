"""The contract between a host application (Descriptron, or our standalone workspace) and its plugins.

A plugin is a callable ``register(host)`` published under the entry point
group ``descriptron.plugins``; the host calls it once at start-up with an
object that offers the members of :class:`Host`. Everything a plugin needs
from the host goes through these members, so any Qt host that implements
them can run any plugin. See docs/host_contract.md.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Protocol, runtime_checkable

if TYPE_CHECKING:  # the contract itself imports neither Qt, numpy nor the store at run time
    import numpy as np
    from PyQt5.QtWidgets import QAction, QDockWidget, QWidget

    from descriptron_sam2pal.store import AnnotationStore, ImageRecord

log = logging.getLogger(__name__)

#: Bumped when a member is removed or changes meaning; adding members keeps it.
HOST_API_VERSION = 1

#: The entry point group plugins are published under.
PLUGIN_GROUP = "descriptron.plugins"


@runtime_checkable
class Host(Protocol):
    """What a host offers its plugins.

    All members are called in the GUI thread. Errors the user can act on are
    raised as ``descriptron_sam2pal.UserError`` (the host's own menu actions
    show them in a dialog; a plugin calling these methods shows them with
    :meth:`show_error`).
    """

    api_version: int

    # -- user interface -----------------------------------------------------
    def main_window(self) -> "QWidget":
        """The top-level window: the parent for a plugin's dialogs."""

    def add_menu_action(self, menu: str, text: str, callback: Callable[[], Any],
                        shortcut: Optional[str] = None) -> "QAction":
        """Add an action to the top-level menu titled ``menu`` (created if missing).

        ``shortcut`` is a QKeySequence string such as "Ctrl+T". Returns the
        QAction so the plugin can enable/disable or check it.
        """

    def add_dock_panel(self, title: str, widget: "QWidget", area: str = "right") -> "QDockWidget":
        """Show ``widget`` in a dockable panel; ``area`` is "left", "right", "top" or "bottom"."""

    def show_error(self, title: str, message: str, details: str = "") -> None:
        """Tell the user something went wrong (a dialog); ``details`` (e.g. a traceback) folded."""

    def show_status(self, message: str, timeout_ms: int = 5000) -> None:
        """A short, non-blocking message (the status bar)."""

    # -- the annotation store ------------------------------------------------
    @property
    def store(self) -> Optional["AnnotationStore"]:
        """The open annotation store, or None when nothing is open."""

    def open_store(self, path: str) -> Optional["AnnotationStore"]:
        """Open a Descriptron annotation file or a folder of images as the current store.

        If the current store has unsaved changes the user is asked first;
        returns None when they cancel. Raises ``StoreError`` if ``path``
        cannot be opened (the current store stays open then).
        """

    def save_store(self) -> None:
        """Write the current store back to its files (raises ``StoreError`` on failure)."""

    def notify_store_changed(self) -> None:
        """Call after changing the store (e.g. ``store.add_structure``): the host
        redraws, marks the project unsaved, and calls the store-changed callbacks."""

    def on_store_changed(self, callback: Callable[[Optional["AnnotationStore"]], None]
                         ) -> Callable[[], None]:
        """Call ``callback(store)`` whenever a store is opened or changed; returns an unsubscribe."""

    # -- images ----------------------------------------------------------------
    def images(self) -> list["ImageRecord"]:
        """The store's images, in the order the host lists them ([] without a store)."""

    def current_image(self) -> Optional["ImageRecord"]:
        """The image the user is looking at, or None."""

    def current_image_array(self) -> Optional["np.ndarray"]:
        """Pixels of :meth:`current_image` as (H, W, 3) uint8 RGB in the file's raw pixel frame
        (EXIF orientation not applied, as Descriptron), or None."""

    def set_current_image(self, image_id: Any) -> None:
        """Show the image with this store id. The switch may complete asynchronously
        (after the pixels are loaded); the current-image callbacks fire then."""

    def on_current_image_changed(self, callback: Callable[[Optional["ImageRecord"]], None]
                                 ) -> Callable[[], None]:
        """Call ``callback(record)`` after the current image changed; returns an unsubscribe."""

    # -- long work ------------------------------------------------------------
    def register_worker(self, worker: Any) -> None:
        """Tell the host that long work is running, so closing asks first and stops it.

        ``worker`` offers ``cancel()``, ``is_running()`` and a ``finished``
        signal (``descriptron_sam2pal.gui.workers.EngineWorker`` does); the host
        forgets it when ``finished`` is emitted. (The standalone workspace announces it in
        the one registry of running work, ``gui.workers.running_work``.)
        """


@runtime_checkable
class CanvasHost(Protocol):
    """Optional members of a host that shows the current image on a canvas.

    They let a plugin take prompts on the image (clicks, boxes) and draw a
    proposal that is not in the store yet (e.g. an interactive SAM2 mask). A
    host may lack them: check ``isinstance(host, CanvasHost)`` first. The
    standalone workspace offers them. Coordinates are image pixels of
    :meth:`Host.current_image_array` (x right, y down). Called in the GUI thread.
    """

    def on_image_clicked(self, callback: Callable[[float, float, str], None]) -> Callable[[], None]:
        """Call ``callback(x, y, button)`` on a click on the current image; ``button`` is
        "left" or "right". Returns an unsubscribe."""

    def on_box_drawn(self, callback: Callable[[float, float, float, float], None]) -> Callable[[], None]:
        """Call ``callback(x0, y0, x1, y1)`` (x0 <= x1, y0 <= y1, inside the image) when the
        user drags a box on the current image. Returns an unsubscribe."""

    def set_box_drawing(self, on: bool) -> None:
        """While on, a plain left-drag on the image draws a box (instead of panning)."""

    def show_proposal(self, mask: Optional["np.ndarray"], name: str = "",
                      points: Iterable[tuple[float, float, bool]] = (),
                      box: Optional[tuple[float, float, float, float]] = None) -> None:
        """Draw a proposed mask (H, W) bool for structure ``name`` over the current image,
        with prompt markers ``points`` ((x, y, positive)) and ``box``; it is not stored.
        ``show_proposal(None)`` removes it; switching images removes it too."""


@dataclass
class PluginLoadResult:
    """What happened to one plugin: loaded, or why not."""

    name: str
    target: str  # the entry point's value, "module:attribute"
    ok: bool
    error: str = ""  # one line for the user
    details: str = ""  # the traceback

    @property
    def summary(self) -> str:
        return f"{self.name} ({self.target}): " + ("loaded" if self.ok else f"failed: {self.error}")


def plugin_entry_points() -> list[metadata.EntryPoint]:
    """Installed plugins, one per name (the first wins if two distributions publish the same)."""
    seen: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=PLUGIN_GROUP):
        seen.setdefault(ep.name, ep)
    return list(seen.values())


def load_plugins(host: Host, entry_points: Optional[Iterable[Any]] = None) -> list[PluginLoadResult]:
    """Import every plugin and call its ``register(host)``; a failing plugin is reported and skipped.

    ``entry_points`` defaults to the installed ``descriptron.plugins`` entry
    points; each item needs ``name``, ``value`` and ``load()``. The loaded
    object is either the register callable itself or a module with a
    ``register`` attribute. Nothing a plugin raises (SystemExit included)
    escapes: the host keeps working.
    """
    results: list[PluginLoadResult] = []
    for ep in (plugin_entry_points() if entry_points is None else entry_points):
        name, target = getattr(ep, "name", str(ep)), getattr(ep, "value", "")
        stage = "import"
        try:
            obj = ep.load()
            register = obj if callable(obj) else getattr(obj, "register", None)
            if not callable(register):
                raise TypeError(f"{target} is neither callable nor a module with register(host)")
            stage = "register"
            register(host)
        except BaseException as exc:  # noqa: BLE001 - a broken plugin must not take the host down
            if isinstance(exc, KeyboardInterrupt):
                raise
            message = f"{'could not be imported' if stage == 'import' else 'register(host) failed'}: " \
                      f"{type(exc).__name__}: {exc}"
            log.error("plugin %s (%s) %s", name, target, message, exc_info=True)
            results.append(PluginLoadResult(name, target, False, message, traceback.format_exc()))
        else:
            log.info("plugin %s (%s) loaded", name, target)
            results.append(PluginLoadResult(name, target, True))
    return results
