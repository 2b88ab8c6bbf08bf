"""Images and mask geometry: loading (raw pixel frame, as Descriptron), letterboxing, polygons/RLE.

numpy, OpenCV, PIL, shapely and pycocotools only; never torch or Qt.
"""

from descriptron_sam2pal.imaging.io import (
    IMAGE_EXTENSIONS,
    ImageError,
    exif_orientation,
    is_image_file,
    load_image,
    read_image_size,
)
from descriptron_sam2pal.imaging.letterbox import Letterbox
from descriptron_sam2pal.imaging.masks import (
    SegmentationError,
    fill_holes,
    has_hole,
    mask_area,
    mask_bbox,
    mask_to_polygons,
    mask_to_rle,
    polygons_to_mask,
    rle_to_mask,
    segmentation_to_mask,
    simplify_polygon,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageError",
    "exif_orientation",
    "Letterbox",
    "SegmentationError",
    "fill_holes",
    "has_hole",
    "is_image_file",
    "load_image",
    "mask_area",
    "mask_bbox",
    "mask_to_polygons",
    "mask_to_rle",
    "polygons_to_mask",
    "read_image_size",
    "rle_to_mask",
    "segmentation_to_mask",
    "simplify_polygon",
]
