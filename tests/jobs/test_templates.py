"""Templates from a store, a binary mask PNG or a colour mask PNG: one set of rules, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal import UserError
from descriptron_sam2pal.jobs.templates import (load_templates, spec_from_color_png, spec_from_mask_png,
                                                specs_from_store, template_specs)
from descriptron_sam2pal.store import AnnotationStore
from tests.helpers.synthetic import make_specimen


def template_from_mask_png(image, mask, structure, size):
    return load_templates([spec_from_mask_png(image, mask, structure)], size)[0]


def template_from_color_png(image, mask, colors, size):
    return load_templates([spec_from_color_png(image, mask, colors)], size)[0]


def templates_from_store(store, size, **kwargs):
    return load_templates(specs_from_store(store, **kwargs), size)


def write_specimen(tmp_path, name, seed, size=(90, 120)):
    image, masks = make_specimen(seed, size=size)
    path = tmp_path / name
    Image.fromarray(image).save(path)
    return path, masks


def test_from_binary_and_colour_pngs(tmp_path):
    path, masks = write_specimen(tmp_path, "spec.png", 1)
    Image.fromarray(masks["scape"].astype(np.uint8) * 255).save(tmp_path / "scape.png")
    t = template_from_mask_png(path, tmp_path / "scape.png", "scape", 128)
    assert t.structures == ["scape"] and np.array_equal(t.masks["scape"], masks["scape"])
    assert t.image.size == 128 and t.image.letterbox.height == 90

    colour = np.zeros((90, 120, 3), np.uint8)
    colour[masks["head"]] = (200, 0, 0)
    colour[masks["eye"]] = (0, 0, 255)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    t = template_from_color_png(path, tmp_path / "colour.png", "head=200,0,0;eye=0,0,255;leg=0,255,0", 128)
    assert t.structures == ["head", "eye"]  # leg's colour does not occur: not on this template
    assert np.array_equal(t.masks["eye"], masks["eye"])


def test_empty_or_mis_sized_masks_are_clear_user_errors(tmp_path):
    path, masks = write_specimen(tmp_path, "spec.png", 1)
    Image.fromarray(np.zeros((90, 120), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(UserError, match="empty"):
        template_from_mask_png(path, tmp_path / "empty.png", "scape", 128)
    Image.fromarray(np.full((120, 90), 255, np.uint8)).save(tmp_path / "rotated.png")
    with pytest.raises(UserError, match="90x120 px but the image"):
        template_from_mask_png(path, tmp_path / "rotated.png", "scape", 128)
    Image.fromarray(np.zeros((90, 120, 3), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(UserError, match="none of the colours"):
        template_from_color_png(path, tmp_path / "black.png", "head=200,0,0", 128)


def test_from_a_store_uses_annotated_images_or_chosen_ids(tmp_path):
    p1, m1 = write_specimen(tmp_path, "a.png", 1)
    p2, m2 = write_specimen(tmp_path, "b.png", 2, size=(100, 80))
    write_specimen(tmp_path, "c.png", 3)  # not annotated
    store = AnnotationStore.create(tmp_path / "session.json")
    ids = {r.file_name: r.id for r in store.images}
    store.add_structure(ids["a.png"], "head", m1["head"])
    store.add_structure(ids["a.png"], "eye", m1["eye"])
    store.add_structure(ids["b.png"], "scape", m2["scape"])
    store.save()

    templates = templates_from_store(tmp_path / "session.json", 128)
    assert [t.structures for t in templates] == [["head", "eye"], ["scape"]]
    assert np.array_equal(templates[1].masks["scape"], m2["scape"])
    reopened = AnnotationStore.open(tmp_path / "session.json")
    [only_b] = templates_from_store(reopened, 128, image_ids=[ids["b.png"]])
    assert only_b.image_id == ids["b.png"]
    [heads] = templates_from_store(reopened, 128, structures=["head"])
    assert heads.structures == ["head"]
    with pytest.raises(UserError, match="no structure outlined"):
        templates_from_store(reopened, 128, image_ids=[ids["c.png"]])


def test_predictions_in_the_store_are_not_template_outlines(tmp_path):
    """Merged or reviewed predictions must not silently become training labels."""
    from descriptron_sam2pal.store.provenance import template_images, template_masks

    image, masks = make_specimen(3, size=(80, 100))
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(image).save(tmp_path / "b.png")
    store = AnnotationStore.create(tmp_path / "s.json", images=[tmp_path / "a.png", tmp_path / "b.png"])
    a, b = store.images
    store.add_structure(a.id, "head", masks["head"], attributes={"source": "sam2pal-template"})
    store.add_structure(a.id, "eye", masks["eye"], attributes={"source": "sam2pal", "score": 0.9})
    store.add_structure(b.id, "head", masks["head"], attributes={"source": "sam2pal", "score": 0.4})
    assert list(template_masks(store, a.id)) == ["head"]
    assert [(r.id, names) for r, names in template_images(store)] == [(a.id, ["head"])]
    templates = templates_from_store(store, 128)
    assert [t.image_id for t in templates] == [a.id] and templates[0].structures == ["head"]


def test_no_template_at_all_says_how_to_give_one(tmp_path):
    with pytest.raises(UserError, match="--templates STORE"):
        template_specs()
    path, masks = write_specimen(tmp_path, "a.png", 1)
    with pytest.raises(UserError, match="one --template-mask for each"):
        template_specs(images=[str(path)], masks=[])


def test_a_photo_replaced_after_outlining_is_caught_when_preparing(tmp_path):
    path, masks = write_specimen(tmp_path, "a.png", 1)
    Image.fromarray(masks["head"].astype(np.uint8) * 255).save(tmp_path / "head.png")
    spec = spec_from_mask_png(path, tmp_path / "head.png", "head")
    write_specimen(tmp_path, "a.png", 2, size=(60, 60))
    with pytest.raises(UserError, match="was the photo replaced"):
        load_templates([spec], 128)
