"""Helpers for tests that drive the workspace window."""


def wait_shown(qtbot, win, file_name: str) -> None:
    """Until ``file_name`` is the current image and no load is pending."""
    qtbot.waitUntil(lambda: win.current_image() is not None and win.current_image().file_name == file_name
                    and not win.image_loader.busy, timeout=5000)
