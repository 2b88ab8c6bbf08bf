"""Image loading: raw pixel frame (no EXIF transpose), pixel modes, formats and clear errors."""

import cv2
import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal import UserError
from descriptron_sam2pal.imaging.io import (
    IMAGE_EXTENSIONS,
    ImageError,
    exif_orientation,
    is_image_file,
    load_image,
    read_image_size,
)

ORIENTATION = 0x0112


def _marked_rgb(height=40, width=60):
    """Grey image with a red block at the top-left and a blue block at the top-right."""
    arr = np.full((height, width, 3), 128, np.uint8)
    arr[:10, :10] = (255, 0, 0)
    arr[:10, -10:] = (0, 0, 255)
    return arr


def _save_jpeg_with_orientation(path, arr, orientation):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(arr).save(path, quality=95, exif=exif)


def _is_red(pixel):
    return pixel[0] > 200 and pixel[1] < 60 and pixel[2] < 60


def _is_blue(pixel):
    return pixel[2] > 200 and pixel[0] < 60 and pixel[1] < 60


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_not_applied_raw_frame_as_descriptron(tmp_path, orientation):
    """Descriptron opens images with PIL and no transpose: every coordinate in its store is in
    the file's raw pixel frame, so ours must be too, whatever the EXIF tag says."""
    path = tmp_path / f"o{orientation}.jpg"
    _save_jpeg_with_orientation(path, _marked_rgb(30, 50), orientation)
    with Image.open(path) as pil:
        expected = np.asarray(pil.convert("RGB"))      # Descriptron: np.array(Image.open(p).convert("RGB"))
    img = load_image(path)
    np.testing.assert_array_equal(img, expected)
    assert img.shape == (30, 50, 3)
    assert _is_red(img[5, 5]) and _is_blue(img[5, 45])
    assert read_image_size(path) == (30, 50)
    assert exif_orientation(path) == orientation


def test_result_is_contiguous_rgb_uint8(tmp_path):
    path = tmp_path / "rot6.jpg"
    _save_jpeg_with_orientation(path, _marked_rgb(), 6)
    img = load_image(path)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.flags.c_contiguous


def test_png_without_exif(tmp_path):
    arr = _marked_rgb()
    path = tmp_path / "plain.png"
    Image.fromarray(arr).save(path)
    np.testing.assert_array_equal(load_image(path), arr)
    assert read_image_size(path) == (40, 60)


def test_grey_becomes_three_equal_channels(tmp_path):
    grey = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    path = tmp_path / "grey.png"
    Image.fromarray(grey).save(path)
    img = load_image(path)
    assert img.shape == (20, 30, 3)
    for channel in range(3):
        np.testing.assert_array_equal(img[..., channel], grey)


def test_bilevel_image(tmp_path):
    bits = np.zeros((8, 9), bool)
    bits[2:5, 3:7] = True
    path = tmp_path / "bits.png"
    Image.fromarray(bits).save(path)
    img = load_image(path)
    np.testing.assert_array_equal(img[..., 0], bits.astype(np.uint8) * 255)


def test_grey_alpha_drops_alpha(tmp_path):
    la = np.zeros((6, 7, 2), np.uint8)
    la[..., 0] = 90
    la[..., 1] = 0
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    np.testing.assert_array_equal(load_image(path), np.full((6, 7, 3), 90, np.uint8))


def test_rgba_drops_alpha_without_compositing(tmp_path):
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., :3] = (10, 200, 30)
    rgba[:5, ..., 3] = 0  # transparent half keeps its colour values
    rgba[5:, ..., 3] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    np.testing.assert_array_equal(load_image(path), rgba[..., :3])


def test_palette_image_with_transparency(tmp_path):
    rgb = _marked_rgb(12, 14)
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.info["transparency"] = 0
    path = tmp_path / "pal.png"
    pal.save(path, transparency=0)
    expected = np.asarray(pal.convert("RGB"))
    np.testing.assert_array_equal(load_image(path), expected)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(_marked_rgb()).convert("CMYK").save(path, quality=95)
    img = load_image(path)
    assert img.shape == (40, 60, 3)
    assert _is_red(img[5, 5]) and _is_blue(img[5, 55])


def test_16bit_grey_png_scaled_by_type_range(tmp_path):
    values = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as pil:
        assert pil.mode.startswith("I")
    img = load_image(path)
    np.testing.assert_array_equal(img[..., 0], np.arange(256, dtype=np.uint8).reshape(16, 16))
    assert img[..., 0].max() == 255 and img.dtype == np.uint8


def test_16bit_big_endian_tiff(tmp_path):
    values = (np.arange(100, dtype=np.uint16) * 257 * 2).reshape(10, 10)
    path = tmp_path / "grey16b.tif"
    Image.fromarray(values.astype(">u2")).save(path)
    with Image.open(path) as pil:
        assert pil.mode == "I;16B"
    np.testing.assert_array_equal(load_image(path)[..., 1], (np.arange(100) * 2).reshape(10, 10))


def test_32bit_integer_tiff_with_16bit_values(tmp_path):
    values = (np.arange(60, dtype=np.int32) * 257).reshape(6, 10)
    path = tmp_path / "int32.tif"
    Image.fromarray(values).save(path)
    with Image.open(path) as pil:
        assert pil.mode == "I"
    np.testing.assert_array_equal(load_image(path)[..., 2], np.arange(60).reshape(6, 10))


def test_float_grey_tiff_in_unit_range(tmp_path):
    values = np.linspace(0.0, 1.0, 50, dtype=np.float32).reshape(5, 10)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    img = load_image(path)
    np.testing.assert_array_equal(img[..., 0], np.rint(values * 255).astype(np.uint8))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_keeps_channel_order(tmp_path, suffix):
    rgb8 = np.random.default_rng(0).integers(0, 256, (9, 11, 3)).astype(np.uint16)
    path = tmp_path / f"rgb16{suffix}"
    cv2.imwrite(str(path), (rgb8 * 257)[..., ::-1])  # OpenCV writes BGR
    np.testing.assert_array_equal(load_image(path), rgb8.astype(np.uint8))


def test_float_rgb_tiff_read_through_opencv(tmp_path):
    rgb = np.random.default_rng(1).random((7, 8, 3)).astype(np.float32)
    path = tmp_path / "rgbf.tif"
    cv2.imwrite(str(path), rgb[..., ::-1])
    img = load_image(path)
    np.testing.assert_array_equal(img, np.rint(rgb * 255).astype(np.uint8))
    assert read_image_size(path) == (7, 8)


@pytest.mark.parametrize("suffix, options", [(".bmp", {}), (".webp", {"lossless": True}),
                                              (".tiff", {}), (".jpeg", {"quality": 100, "subsampling": 0})])
def test_other_formats(tmp_path, suffix, options):
    arr = _marked_rgb()
    path = tmp_path / f"img{suffix}"
    Image.fromarray(arr).save(path, **options)
    img = load_image(path)
    if suffix == ".jpeg":
        assert np.abs(img.astype(int) - arr).mean() < 2  # lossy
    else:
        np.testing.assert_array_equal(img, arr)
    assert read_image_size(path) == (40, 60)


def test_upper_case_extension_and_unicode_path(tmp_path):
    path = tmp_path / "Ameisenkopf_ü.JPG"
    Image.fromarray(_marked_rgb()).save(path, format="JPEG")
    assert load_image(path).shape == (40, 60, 3)


def _assert_image_error(path, *words):
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message.lower()
    assert isinstance(info.value, UserError)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    _assert_image_error(path, "not found")
    with pytest.raises(ImageError, match="not found"):
        read_image_size(path)


def test_folder_is_not_an_image(tmp_path):
    _assert_image_error(tmp_path, "folder")


def test_random_bytes_are_not_an_image(tmp_path):
    path = tmp_path / "junk.jpg"
    path.write_bytes(b"this is a text file, not a photograph\n" * 20)
    _assert_image_error(path, "not an image", "convert")
    with pytest.raises(ImageError):
        read_image_size(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _assert_image_error(path, "not an image")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_file_is_reported_not_half_loaded(tmp_path, suffix):
    noise = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(noise).save(whole)
    data = whole.read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    _assert_image_error(path, "corrupt or truncated", "copy it again")


def test_is_image_file():
    for ext in IMAGE_EXTENSIONS:
        assert is_image_file(f"a/b/specimen{ext}")
        assert is_image_file(f"specimen{ext.upper()}")
    assert is_image_file("name.with.dots.Tif")
    assert not is_image_file("specimen_final_123.json")
    assert not is_image_file("specimen.rlejson")
    assert not is_image_file("jpg")
    assert not is_image_file("._specimen.jpg")  # macOS AppleDouble companion


def test_imaging_imports_neither_torch_nor_qt():
    import subprocess
    import sys

    code = (
        "import sys, descriptron_sam2pal.imaging; "
        "print(sorted(m for m in ('torch', 'PyQt5') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
