"""The second pass for small structures: which structures, where the crop goes on the target,
what it changes in a propagation (real SAM2 code, the mini model at 128 px, synthetic files)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.engine.memory_propagation import propagate
from descriptron_sam2pal.engine.results import StructureResult, TargetResult
from descriptron_sam2pal.engine.small_structures import (
    SmallStructurePass,
    is_small,
    make_small_pass,
    mask_box,
    small_structure_names,
    square_box,
)
from descriptron_sam2pal.engine.prepared_templates import Template

from tests.helpers.synthetic import make_specimen
from tests.engine.test_memory_propagation import count_encoder_images


def _template_file(tmp_path, seed=0, size=(400, 400)):
    image, masks = make_specimen(seed, size)
    path = tmp_path / f"template-{seed}.png"
    Image.fromarray(image).save(path)
    return Template("t", prepare_image(path, 128), masks)


def test_small_means_small_on_the_template_at_the_models_scale(tmp_path):
    t = _template_file(tmp_path)
    # At 128 px the eye (radius 7% of the side) is about 16 x 16 model pixels: small; the head and
    # the scape (a bar 46 model pixels long) are not.
    assert small_structure_names([t]) == ["eye"]
    assert not is_small(t, "head") and not is_small(t, "scape")
    # A stricter size leaves nothing small.
    assert small_structure_names([t], small_side=5) == []


def test_the_crop_box_follows_the_specimen_onto_the_target():
    assert square_box((10, 10, 20, 30), 1.0, 100, 100) == (
        5,
        10,
        25,
        30,
    )  # a square on the longer side, centred
    assert square_box((0, 0, 10, 10), 2.0, 100, 100) == (0, 0, 20, 20)  # shifted into the image
    # The template's specimen box (its large structures) is (20, 20)-(60, 60); on the target the
    # specimen is twice as large and moved to (40, 100)-(120, 180): the crop box moves and grows alike.
    pass_ = SmallStructurePass.__new__(SmallStructurePass)
    pass_.context = 1.0
    anchor = np.zeros((200, 200), bool)
    anchor[20:60, 20:60] = True
    crop = type("C", (), {"anchors": {"head": anchor}, "box": (30, 30, 40, 40), "names": ["eye"]})()
    target_mask = np.zeros((300, 300), bool)
    target_mask[40:120, 100:180] = True
    result = TargetResult(
        "x", None, 300, 300, {"head": StructureResult("head", True, target_mask, 0.5, 0.9, 0.9)}
    )
    assert pass_.target_box(crop, result) == (60, 120, 80, 140)
    result.structures["head"] = StructureResult("head", False, None, None, 0.1, 0.1)
    assert pass_.target_box(crop, result) is None  # nothing to place the crop by


def test_the_second_pass_redoes_only_the_small_structures_inside_a_crop(present_model, tmp_path):
    template = _template_file(tmp_path)
    target_image, _ = make_specimen(7, (300, 360))
    target = tmp_path / "target.png"
    Image.fromarray(target_image).save(target)
    seen = count_encoder_images(present_model)

    [plain] = propagate(present_model, [template], [target], confidence=False, small_structures=False)
    after_plain = seen["images"]
    [second] = propagate(present_model, [template], [target], confidence=False, small_structures=True)

    # The template crop and the target crop: one more encoder pass each beside the first pass.
    assert seen["images"] - after_plain == after_plain + 2
    for name in ("head", "scape"):  # large: the first pass's results, unchanged
        assert second.structures[name].present == plain.structures[name].present
        if plain.structures[name].present:
            assert np.array_equal(second.structures[name].mask, plain.structures[name].mask)
    eye = second.structures["eye"]
    pass_ = make_small_pass(present_model, [template])
    box = pass_.target_box(pass_.crops[0], plain)
    assert box is not None
    if eye.present:  # the eye's new mask lies in the crop, on the target's own grid
        y0, x0, y1, x1 = box
        assert eye.mask.shape == (300, 360)
        assert not eye.mask[:y0].any() and not eye.mask[y1:].any()
        assert not eye.mask[:, :x0].any() and not eye.mask[:, x1:].any()
        assert 0.0 <= eye.score <= 1.0


def test_no_second_pass_without_the_full_resolution_pixels(present_model, tmp_path):
    image, masks = make_specimen(0, (400, 400))
    from_array = Template("t", prepare_image(image, 128), masks)  # no file behind it
    assert make_small_pass(present_model, [from_array]) is None
    template = _template_file(tmp_path)
    prepared = prepare_image(make_specimen(7, (300, 360))[0], 128)
    [a] = propagate(present_model, [template], [prepared], confidence=False, small_structures=False)
    [b] = propagate(present_model, [template], [prepared], confidence=False, small_structures=True)
    for name in a.structures:  # a prepared target keeps its first-pass results
        assert a.structures[name].present == b.structures[name].present
        if a.structures[name].present:
            assert np.array_equal(a.structures[name].mask, b.structures[name].mask)


def test_mask_box_is_end_exclusive():
    m = np.zeros((10, 10), bool)
    assert mask_box(m) is None
    m[2:5, 3:9] = True
    assert mask_box(m) == (2, 3, 5, 9)
