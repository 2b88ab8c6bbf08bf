"""Read and write Descriptron's COCO annotation store (.json + .rlejson); json only, no torch, no Qt.

See ``store.py`` for the file conventions (session files saved in place with a
``.bak-<time>`` backup; per-image ``_final_<ts>`` files saved as a new, newer pair) and for
the modules behind its ``AnnotationStore`` front (discovery, validation, categories, saving).
"""

from descriptron_sam2pal.store.coco import CocoDocument, StoreError
from descriptron_sam2pal.store.lock import StoreBusyError, store_lock
from descriptron_sam2pal.store.saving import StoreChangedError
from descriptron_sam2pal.store.stem import find_image_files, normalized_stem
from descriptron_sam2pal.store.store import (
    PER_IMAGE,
    SESSION,
    AnnotationRecord,
    AnnotationStore,
    ImageRecord,
)

__all__ = [
    "AnnotationRecord",
    "AnnotationStore",
    "CocoDocument",
    "ImageRecord",
    "PER_IMAGE",
    "SESSION",
    "StoreBusyError",
    "StoreChangedError",
    "StoreError",
    "find_image_files",
    "normalized_stem",
    "store_lock",
]
