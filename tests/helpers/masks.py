"""Boolean masks for tests."""

from __future__ import annotations

import numpy as np


def box(h, w, y0, y1, x0, x1) -> np.ndarray:
    """An ``h`` x ``w`` mask, True on rows ``y0:y1`` and columns ``x0:x1``."""
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m
