"""A controlled toy task on which palindrome training measurably improves target IoU.

Real sam2 code, the small randomly initialised ``sam2pal_mini`` model at 128 px,
CPU. Numbers, seeds and what mattered: docs/design/toy_task.md.

The task: a family of synthetic specimens (``make_posed_specimen``): a brown
head, a dark eye and a yellow scape on a textured background; every specimen
has its own pose (the layout moves by up to 12 % of the image side and scales
by +-10 %) and colour jitter. One template specimen with its structure outlined,
an unlabeled pool of 12 specimens, and 8 held-out targets with ground truth.
Pool, targets and template are disjoint seeds; the targets' masks are only used
to score, never given to training.

What the test shows, with the real ``train`` and ``propagate``:
- the untrained model's target IoU is near zero (object-score head biased to
  "present", so it is scored on its masks, not on saying "absent");
- after palindrome training the target IoU rises by far more than the margin;
- it beats copying the template's mask onto each target (the targets' pose
  differs, so the model must find the structure, not repeat its position);
- what is learned follows the template's outline: trained from the eye
  template the model segments eyes, from the scape template scapes, with the
  same pool of unlabeled images; neither segments the other's structure.

One structure per template (K=1): on this random model, with K >= 2 structures
in one template all objects collapse to one shared mask (see the design note).
"""

from __future__ import annotations

import numpy as np
import pytest

from descriptron_sam2pal.engine.evaluate import iou
from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.engine.memory_propagation import propagate
from descriptron_sam2pal.engine.prepared_templates import Template
from descriptron_sam2pal.engine.trainer import TrainConfig, train
from descriptron_sam2pal.model.build import MINI_CONFIG, build_model
from tests.helpers.mini_models import set_object_score_bias
from tests.helpers.synthetic import make_posed_specimen

SIZE = 128
DRAWN = ("head", "eye", "scape")  # every specimen has all three; a template outlines one
POOL, TARGETS = 12, 8


def toy_data(seed: int):
    """(template specimen, unlabeled pool, held-out targets) of one toy task; seeds disjoint."""
    base = 1000 * seed
    template = make_posed_specimen(base, SIZE, DRAWN)
    pool = [prepare_image(make_posed_specimen(base + 100 + i, SIZE, DRAWN)[0], SIZE, source=f"pool-{i}")
            for i in range(POOL)]
    targets = [make_posed_specimen(base + 500 + i, SIZE, DRAWN) for i in range(TARGETS)]
    return template, pool, targets


def toy_template(template, structure: str) -> Template:
    image, masks = template
    return Template(f"template-{structure}", prepare_image(image, SIZE, source="template"),
                    {structure: masks[structure]})


def fresh_model(seed: int = 0):
    model = build_model(MINI_CONFIG, image_size=SIZE, seed=seed)
    set_object_score_bias(model, 3.0)  # untrained: masks reported (and scored), not "absent"
    return model


def target_ious(model, template: Template, targets, truth: str | None = None) -> list[float]:
    """IoU per target of the propagated structure vs ground truth ``truth`` (default: the same)."""
    (name,) = template.structures
    results = propagate(model, [template], [image for image, _ in targets], confidence=False)
    out = []
    for r, (_, masks) in zip(results, targets):
        s = r.structures[name]
        out.append(iou(s.mask, masks[truth or name]) if s.mask is not None else 0.0)
    return out


def train_toy(model, template: Template, pool, run_dir, steps: int = 150, seed: int = 0):
    # Full fine-tuning of the memory / decoder modules, default loss weights. The learning
    # rate is far above the full-mode default (1e-5, for pretrained weights): random
    # weights do not move at 1e-5 in 150 steps. LoRA at 3e-3 also learns, less evenly
    # over seeds (design note).
    config = TrainConfig(steps=steps, full=True, lr=1e-3, seed=seed, validate_every=0)
    return train(model, [template], pool, run_dir, config)


def run_toy(seed: int, structure: str, run_dir, steps: int = 150) -> dict:
    """Before/after/copy mean IoU of one toy run (also used by the design note's sweep)."""
    template_specimen, pool, targets = toy_data(seed)
    template = toy_template(template_specimen, structure)
    model = fresh_model(seed)
    before = float(np.mean(target_ious(model, template, targets)))
    result = train_toy(model, template, pool, run_dir, steps, seed)
    after = float(np.mean(target_ious(model, template, targets)))
    copy = float(np.mean([iou(template.masks[structure], m[structure]) for _, m in targets]))
    return {"before": before, "after": after, "copy": copy, "model": model, "template": template,
            "targets": targets, "pool": pool, "result": result}


@pytest.mark.slow
def test_palindrome_training_improves_target_iou_on_toy_task(tmp_path):
    eye = run_toy(0, "eye", tmp_path / "eye")
    scape = run_toy(0, "scape", tmp_path / "scape")

    for name, run in (("eye", eye), ("scape", scape)):
        result = run["result"]
        assert result.steps_done == 150 and not result.cancelled
        # Training never saw a target: the pool and the targets are different images.
        target_keys = {prepare_image(image, SIZE).key for image, _ in run["targets"]}
        assert not target_keys & {im.key for im in run["pool"]}
        # The palindrome objective itself was learned (cycle IoU on the template ~0 -> ~1).
        cycle = [e["cycle_iou"] for e in result.history]
        assert np.mean(cycle[:10]) < 0.3 and np.mean(cycle[-10:]) > 0.8, (name, cycle[:10], cycle[-10:])
        # Untrained: near zero. Trained: a large, clear gain (+0.46 or more over 12 seed x
        # structure runs, +0.62 / +0.64 for these two; see the note).
        assert run["before"] < 0.1, (name, run["before"])
        assert run["after"] >= run["before"] + 0.3, (name, run["before"], run["after"])
        # Not the template's position repeated: the targets are posed differently.
        assert run["after"] >= run["copy"] + 0.2, (name, run["copy"], run["after"])

    # Same pool, same family: what the model learned is what the template outlined.
    eye_as_scape = np.mean(target_ious(eye["model"], eye["template"], eye["targets"], truth="scape"))
    scape_as_eye = np.mean(target_ious(scape["model"], scape["template"], scape["targets"], truth="eye"))
    assert eye_as_scape < 0.1 and scape_as_eye < 0.1, (eye_as_scape, scape_as_eye)
