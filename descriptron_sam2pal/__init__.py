"""SAM2-PAL for Descriptron: one-shot structure segmentation of specimen photos.

Layers (see docs/design/layers.md): ``store`` and ``imaging`` (no torch, no Qt),
``model`` (SAM2 build/load, checkpoints, LoRA), ``engine`` (training,
propagation, evaluation; no Qt), ``jobs`` (the use cases both faces call),
``gui`` (PyQt5 panels), ``app`` (the standalone workspace), ``cli``;
``host/api.py`` is the plugin contract.
"""

__version__ = "0.1.0"


class UserError(Exception):
    """An error the user can act on: the message says what went wrong and what to do.

    The CLI prints it without a traceback and exits non-zero; the GUI shows it
    in a dialog.
    """
