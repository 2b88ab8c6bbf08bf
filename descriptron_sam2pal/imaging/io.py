"""Reading specimen images the one way every code path uses.

Every image enters the program through :func:`load_image`: converted to
contiguous RGB ``uint8`` of shape (H, W, 3) in the file's **raw pixel frame**
(EXIF orientation is *not* applied). Descriptron opens images with PIL's
``Image.open`` and no transpose, and every coordinate, RLE size and
height/width in its store is in that raw frame; training, propagation, GUI
display and write-back therefore all use the same grid as Descriptron (an
EXIF-rotated JPEG read one way here and another way there once misaligned
every mask). :func:`read_image_size` gives the same (height, width) from the
header alone; :func:`exif_orientation` reports the tag for callers that want
to tell the user.

Decoding is done by PIL; files PIL cannot identify or decode (some 16-bit or
float RGB TIFFs) are read with OpenCV's ``IMREAD_UNCHANGED`` and
``IMREAD_IGNORE_ORIENTATION`` (the raw frame as well).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from descriptron_sam2pal import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")

_EXIF_ORIENTATION_TAG = 0x0112
_UINT16_MAX = 65535


class ImageError(UserError):
    """An image file that cannot be read; the message names the file and what to do."""


def is_image_file(path: str | os.PathLike) -> bool:
    """True for names ending in one of :data:`IMAGE_EXTENSIONS` (any case).

    macOS AppleDouble companions (``._name.jpg``, left by copying to FAT/exFAT
    drives) are not images and are rejected.
    """
    name = Path(path).name
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("._")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as contiguous (H, W, 3) RGB uint8 in the file's raw pixel frame
    (EXIF orientation ignored, as Descriptron does).

    Grey, grey+alpha, RGBA and palette images become RGB (alpha is dropped, not
    composited); CMYK is converted by PIL. 16-bit images are scaled by their
    type's range (65535 -> 255), so every image of a collection is scaled the
    same way. 32-bit integer images holding values in 0..65535 are treated as
    16-bit; other integer or float images are scaled from [0, 1] when they lie
    in it and min-max stretched otherwise.

    Raises :class:`ImageError` for a missing, unreadable, corrupt or truncated
    file, or one that is not an image.
    """
    path = Path(path)
    _check_readable_file(path)
    try:
        with warnings.catch_warnings():
            # Palette transparency warnings are irrelevant: alpha is dropped.
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(path) as img:
                img.load()
                rgb = _pil_to_rgb_uint8(img)
    except UnidentifiedImageError:
        rgb = _load_with_cv2(path, not_image_hint=True)
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"Cannot read {path}: it has more pixels than the safety limit ({err}). "
            "Downscale the image (e.g. to 50 megapixels) and try again."
        ) from err
    except OSError as err:
        if _is_truncation(err):
            raise _corrupt_error(path, err) from err
        rgb = _load_with_cv2(path, not_image_hint=False, pil_error=err)
    except (ValueError, SyntaxError, EOFError) as err:
        rgb = _load_with_cv2(path, not_image_hint=False, pil_error=err)
    return np.ascontiguousarray(rgb)


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of the image as :func:`load_image` returns it (raw pixel frame,
    EXIF orientation ignored), from the header. A file PIL cannot identify is decoded
    with OpenCV to get its size.
    """
    path = Path(path)
    _check_readable_file(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
    except UnidentifiedImageError:
        height, width = _load_with_cv2(path, not_image_hint=True).shape[:2]
        return int(height), int(width)
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"Cannot read {path}: it has more pixels than the safety limit ({err}). "
            "Downscale the image (e.g. to 50 megapixels) and try again."
        ) from err
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise _corrupt_error(path, err) from err
    return int(height), int(width)


def exif_orientation(path: str | os.PathLike) -> int:
    """The EXIF orientation tag (1-8) of an image file; 1 when absent or unreadable.

    Informational only: pixels and coordinates stay in the raw frame (see the module
    docstring)."""
    try:
        with Image.open(path) as img:
            return _exif_orientation(img)
    except Exception:  # noqa: BLE001 - not an image PIL can open: no orientation to report
        return 1


def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise ImageError(
            f"Image not found: {path}. Check that the file exists; if the image "
            "folder was moved or renamed, point the project at its new location."
        )
    if not path.is_file():
        raise ImageError(f"Not an image file: {path} is a folder or a special file.")
    if not os.access(path, os.R_OK):
        raise ImageError(
            f"Cannot open {path}: permission denied. Make the file readable for your user."
        )


def _corrupt_error(path: Path, err: BaseException) -> ImageError:
    return ImageError(
        f"Cannot read {path}: the file is corrupt or truncated ({err}). "
        "Copy it again from the original source or re-export it."
    )


def _is_truncation(err: BaseException) -> bool:
    text = str(err).lower()
    return "truncated" in text or "broken data stream" in text or "premature end" in text


def _load_with_cv2(
    path: Path, *, not_image_hint: bool, pil_error: BaseException | None = None
) -> np.ndarray:
    """Decode with OpenCV (raw frame, no EXIF handling) and convert to RGB uint8."""
    data = np.fromfile(path, dtype=np.uint8)  # imdecode also handles non-ASCII paths
    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    arr = cv2.imdecode(data, flags) if data.size else None
    if arr is None:
        if not_image_hint:
            raise ImageError(
                f"Cannot read {path}: not an image, or an image format that is not "
                f"supported. Convert it to PNG, JPEG or TIFF "
                f"({', '.join(IMAGE_EXTENSIONS)})."
            )
        raise _corrupt_error(path, pil_error or ValueError("undecodable"))
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)[..., :3]
        elif arr.shape[2] == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
        elif arr.shape[2] == 1:
            arr = arr[..., 0]
        else:
            raise ImageError(
                f"Cannot read {path}: it has {arr.shape[2]} channels. "
                "Save it as an RGB or greyscale image."
            )
    return _to_rgb_uint8(_scale_to_uint8(arr))


def _exif_orientation(img: Image.Image) -> int:
    """EXIF orientation 1-8 of an opened image; 1 when absent or unreadable."""
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - malformed EXIF must not make the image unreadable
        return 1
    return value if 1 <= value <= 8 else 1



def _pil_to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert a loaded PIL image of any common mode to (H, W, 3) uint8 RGB."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _to_rgb_uint8(_scale_to_uint8(np.asarray(img)))
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
    return np.asarray(img.convert("RGB"))


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale integer or float pixel values to uint8 (see :func:`load_image`)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    values = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.dtype.itemsize <= 2 and not np.issubdtype(arr.dtype, np.signedinteger):
            top = float(np.iinfo(arr.dtype).max)
            return np.rint(values * (255.0 / top)).astype(np.uint8)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low >= 0 and high <= _UINT16_MAX:
            return np.rint(values * (255.0 / _UINT16_MAX)).astype(np.uint8)
    else:
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low >= 0.0 and high <= 1.0:
            return np.rint(values * 255.0).astype(np.uint8)
    if high <= low:
        return np.zeros(arr.shape, np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _to_rgb_uint8(arr: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 1|3) uint8 to (H, W, 3)."""
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    return arr
