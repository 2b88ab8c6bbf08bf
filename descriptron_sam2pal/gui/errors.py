"""A problem in a GUI action becomes a message, and the window stays usable."""

from __future__ import annotations

import logging
import traceback
from typing import Any, Callable

from descriptron_sam2pal import UserError

log = logging.getLogger(__name__)


def shown_errors(host: Any, what: str, fn: Callable[[], Any], message: str = "{}",
                 unexpected: str = "{}") -> tuple[bool, Any]:
    """Run ``fn`` -> (done, its value). A ``UserError`` is shown with its message (it says what to
    do); anything else with its type and the traceback as details, and logged. ``what`` is the
    dialog's title; ``host`` offers ``show_error(title, message, details)``. ``message`` puts the
    error's text in a sentence (``{}``: the text); ``unexpected`` does so for errors that are not a
    ``UserError`` (after ``message``). This is the one place where a GUI action's exception
    becomes a dialog."""
    try:
        return True, fn()
    except UserError as exc:
        host.show_error(what, message.format(exc))
    except Exception as exc:  # noqa: BLE001 - shown to the user, the window stays usable
        log.exception("%s failed", what)
        text = unexpected.format(message.format(f"{type(exc).__name__}: {exc}"))
        host.show_error(what, text, traceback.format_exc())
    return False, None
