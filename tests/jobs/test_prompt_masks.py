"""Masks from prompts (jobs/prompt_masks.py) on a real mini SAM2: the Review panel's Fix reads
each image from its file and answers as the click segmenter does."""

import numpy as np
from PIL import Image

from descriptron_sam2pal.imaging.io import load_image
from descriptron_sam2pal.jobs.prompt_masks import (
    fix_by_clicks,
    mask_from_prompts,
    prompt_model_for,
    read_image,
)
from tests.helpers.mini_models import set_object_score_bias


def test_fix_by_clicks_segments_the_file_of_each_image(tmp_path):
    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    model = build_model(MINI_CONFIG, image_size=128, seed=0)
    set_object_score_bias(model, 3.0)  # random masks, but masks
    rng = np.random.default_rng(0)
    files = {}
    for i, (h, w) in enumerate([(60, 100), (90, 70)]):
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        img[h // 4 : h // 2, w // 4 : w // 2] = 220
        files[f"id{i}"] = tmp_path / f"specimen_{i}.png"
        Image.fromarray(img).save(files[f"id{i}"])

    reprompt = fix_by_clicks(model, {"id0": files["id0"]})
    other = prompt_model_for(model).segmenter  # the panel's own segmenter, apart from Fix's
    for image_id, path in (("id0", files["id0"]), (str(files["id1"]), files["id1"])):  # an id, a path
        mask = reprompt(image_id, [(30.0, 20.0), (5.0, 5.0)], [1, 0])
        read_image(other, load_image(path))
        expected = mask_from_prompts(other, [(30.0, 20.0, True), (5.0, 5.0, False)]).mask
        assert mask is not None and mask.shape == load_image(path).shape[:2]
        assert np.array_equal(mask, expected)


def test_the_panels_segmenter_zooms_in_as_the_product_does():
    from descriptron_sam2pal.engine import zoom_in
    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    segmenter = prompt_model_for(build_model(MINI_CONFIG, image_size=128, seed=0)).segmenter
    assert isinstance(segmenter, zoom_in.ZoomInSegmenter) and segmenter.zoom is zoom_in.ON_BY_DEFAULT
