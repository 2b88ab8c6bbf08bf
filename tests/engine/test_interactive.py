"""Click-to-segment: one encoder pass per image, masks on the image's own grid."""

import numpy as np
import pytest

from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.interactive import InteractiveSegmenter
from descriptron_sam2pal.engine.preprocess import prepare_image


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    img[h // 4: h // 2, w // 4: w // 2] = 220  # a bright "structure"
    return img


@pytest.fixture
def segmenter(mini_model):
    return InteractiveSegmenter(mini_model, FeatureEncoder(mini_model))


def test_many_clicks_one_encoder_pass(segmenter):
    img = _image(96, 96)
    segmenter.set_image(img)
    points = []
    for i, (x, y) in enumerate([(30, 30), (40, 35), (80, 80), (10, 90)]):
        points.append((x, y))
        labels = [1] * (len(points) - 1) + [i % 2 == 0]
        mask, score = segmenter.predict(points, labels, previous_logits=segmenter.last_low_res_logits)
        assert mask.shape == (96, 96) and mask.dtype == bool
        assert np.isfinite(score)
    segmenter.set_image(img.copy())  # the same pixels again: served from the cache
    segmenter.predict([(30, 30)], [1])
    assert segmenter.encoder.encoder_passes == 1


def test_non_square_image_and_box(segmenter):
    img = _image(70, 190)
    segmenter.set_image(img)
    mask, _ = segmenter.predict([(50, 25)], [1])
    assert mask.shape == (70, 190)
    mask, score = segmenter.predict(box=(40, 15, 100, 40))
    assert mask.shape == (70, 190) and np.isfinite(score)
    mask, _ = segmenter.predict([(60, 30), (5, 5)], [1, 0], box=(40, 15, 100, 40))
    assert mask.shape == (70, 190)
    assert segmenter.encoder.encoder_passes == 1


def test_prepared_image_and_errors(segmenter, mini_model):
    prepared = prepare_image(_image(128, 64), mini_model.image_size)
    segmenter.set_image(prepared)
    assert segmenter.image_shape == (128, 64)
    with pytest.raises(ValueError):
        segmenter.predict()
    with pytest.raises(ValueError):
        segmenter.predict([(1, 1), (2, 2)], [1])
    with pytest.raises(RuntimeError):
        InteractiveSegmenter(mini_model).predict([(1, 1)], [1])


def test_points_follow_the_letterbox(segmenter, monkeypatch):
    """The prompt reaches the decoder in model-input pixels (letterbox applied)."""
    img = _image(50, 200)
    segmenter.set_image(img)
    seen = {}
    pe = segmenter.model.sam.sam_prompt_encoder
    original = pe.forward

    def spy(points, boxes, masks):
        seen["coords"] = points[0].clone()
        seen["labels"] = points[1].clone()
        return original(points, boxes, masks)

    monkeypatch.setattr(pe, "forward", spy)
    segmenter.predict([(100, 25)], [1], box=(0, 0, 200, 50))
    lb = segmenter.image.letterbox
    expected = lb.points_to_model(np.array([[0, 0], [200, 50], [100, 25]], np.float32))
    np.testing.assert_allclose(seen["coords"][0].numpy(), expected, atol=1e-4)
    assert seen["labels"][0].tolist() == [2, 3, 1]


def test_a_single_click_keeps_sam2s_other_answers(segmenter, monkeypatch):
    import torch

    img = _image(70, 190)
    segmenter.set_image(img)
    mask, score = segmenter.predict([(50, 25)], [1])  # one click: three answers, one chosen
    others = segmenter.alternatives()
    assert len(others) == 2 and all(m.shape == (70, 190) and m.dtype == bool for m, _ in others)
    # each is what the decoder gave for that output: each output in turn made the chosen one
    seen = []
    for k in range(3):
        monkeypatch.setattr(torch, "argmax", lambda t, *a, _k=k, **kw: torch.tensor(_k))
        seen.append(segmenter.predict([(50, 25)], [1])[0])
        monkeypatch.undo()
    chosen = next(k for k in range(3) if np.array_equal(seen[k], mask))
    rest = [k for k in range(3) if k != chosen]
    assert all(np.array_equal(m, seen[k]) for (m, _), k in zip(others, rest))
    assert all(iou <= score for _, iou in others)  # the chosen one is the surest
    segmenter.predict(box=(40, 15, 100, 40))  # one answer: nothing else
    assert segmenter.alternatives() == []
    segmenter.predict([(50, 25)], [1])
    segmenter.set_image(_image(70, 190, seed=1))
    assert segmenter.alternatives() == []
