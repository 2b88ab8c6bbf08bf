"""The palindrome trainer: files, LoRA / full modes, cancel + resume, determinism, failures,
multi-template sampling and leave-one-template-out validation.

Real SAM2 code, the mini model at 128 px, synthetic specimens, CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from descriptron_sam2pal import UserError
from descriptron_sam2pal.engine import checkpoint_choice, trainer
from descriptron_sam2pal.engine.control import CancelToken
from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.engine.prepared_templates import Template
from descriptron_sam2pal.engine.trainer import TrainConfig, TrainingError, train
from descriptron_sam2pal.jobs.training import describe_result
from descriptron_sam2pal.model.adapter_file import load_adapter, read_adapter
from descriptron_sam2pal.model.build import MINI_CONFIG, build_model
from descriptron_sam2pal.model.dropout import memory_dropout_modules
from descriptron_sam2pal.model.lora import trainable_state_dict
from tests.helpers.recording import record_calls
from tests.helpers.synthetic import make_specimen, make_template


def _pool(seeds=(10, 11, 12), size=(128, 104)):
    return [prepare_image(make_specimen(s, size)[0], 128, source=f"unlabeled-{s}.png") for s in seeds]


def _fresh_model():
    return build_model(MINI_CONFIG, image_size=128, seed=0)


def _losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_lora_run_writes_adapter_settings_and_log(mini_model, tmp_path):
    template = make_template("t0", seed=0, size=(120, 128))
    good = tmp_path / "specimen.png"
    Image.fromarray(make_specimen(20, (96, 128))[0]).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    unlabeled = _pool((10, 11)) + [str(good), str(broken)]
    reports, messages = [], []
    run_dir = tmp_path / "run"

    result = train(mini_model, [template], unlabeled, run_dir,
                   TrainConfig(steps=6, validate_every=3, val_images=1, seed=3),
                   progress=reports.append, log_fn=messages.append)

    assert not result.cancelled and result.steps_done == 6
    # The unreadable image is skipped, and the user is told which one.
    assert [s["source"] for s in result.skipped_images] == [str(broken)]
    assert any("broken.jpg" in m for m in messages)

    lines = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(e["loss"]) and e["lr"] > 0 and e["seconds"] > 0 for e in lines)
    assert [e["step"] for e in lines if "val" in e] == [3, 6]
    assert result.val_metric == "pool_score" and 0.0 <= result.baseline_val <= 1.0

    settings = json.loads((run_dir / "settings.json").read_text())
    assert settings["seed"] == 3 and settings["config"]["steps"] == 6
    assert TrainConfig.from_dict(settings["config"]) == TrainConfig(
        steps=6, validate_every=3, val_images=1, seed=3
    )
    assert settings["structures"] == ["head", "eye", "scape"]
    assert [t["id"] for t in settings["templates"]] == ["t0"]
    assert settings["model"]["config_name"] == mini_model.config_name
    assert settings["model"]["image_size"] == 128 and "checkpoint_hash" in settings["model"]
    used = [im["source"] for im in settings["unlabeled"] + settings["validation"]["images"]]
    assert sorted(used) == sorted(["unlabeled-10.png", "unlabeled-11.png", str(good)])
    assert len(settings["validation"]["images"]) == 1  # held out, never trained on
    trained_on = {p["image"] for e in lines for p in e["pairs"]}
    assert not trained_on & {im["source"] for im in settings["validation"]["images"]}
    assert json.loads((run_dir / "result.json").read_text())["status"] == "finished"

    # Only adapter weights: a small fraction of the model, all LoRA.
    info, state = read_adapter(run_dir / "adapter.pt")
    assert state and all("lora_" in k for k in state)
    full_bytes = sum(v.numel() * v.element_size() for v in mini_model.sam.state_dict().values())
    assert (run_dir / "adapter.pt").stat().st_size < full_bytes / 4
    assert info.structures == ["head", "eye", "scape"] and info.template_ids == ["t0"]
    assert info.hyperparameters["best_step"] == result.best_step
    # The model is left holding the best weights, which are the adapter's.
    mine = trainable_state_dict(mini_model.sam)
    assert all(torch.equal(mine[k], state[k]) for k in state)
    fresh = _fresh_model()
    load_adapter(run_dir / "adapter.pt", fresh)
    assert all(torch.equal(trainable_state_dict(fresh.sam)[k], state[k]) for k in state)

    # Progress while reading the image files, then after every step with ETA and
    # metrics; val where validated.
    assert [(p.done, p.total) for p in reports if p.stage == "load"] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    reports = [p for p in reports if p.stage == "train"]
    # Step 0 carries the untrained model's validation (what training has to beat).
    assert [p.done for p in reports] == [0, 1, 2, 3, 4, 5, 6] and all(p.total == 6 for p in reports)
    assert reports[0].metrics == {"val": result.baseline_val, "val_metric": "pool_score"}
    assert all("loss" in p.metrics and "lr" in p.metrics for p in reports[1:])
    assert [p.done for p in reports if "val" in p.metrics] == [0, 3, 6]
    assert reports[-1].eta_s == 0 and all(p.eta_s is not None for p in reports[1:])

    # Features are computed once per image: 12 palindromes + validations, 4 images.
    assert result.encoder_passes <= 4


def test_no_readable_unlabeled_image_is_a_user_error(mini_model, tmp_path):
    template = make_template("t0", seed=0)
    missing = tmp_path / "gone.png"
    with pytest.raises(UserError, match="no usable unlabeled image"):
        train(mini_model, [template], [str(missing)], tmp_path / "run", TrainConfig(steps=2))
    # A template given again as "unlabeled" is not an unlabeled image either.
    with pytest.raises(UserError, match="no usable unlabeled image"):
        train(mini_model, [template], [template.image], tmp_path / "run2", TrainConfig(steps=2))


def test_full_finetune_trains_decoder_and_saves_it(mini_model, tmp_path):
    before = {k: v.clone() for k, v in mini_model.sam.state_dict().items()}
    result = train(mini_model, [make_template("t0", seed=0)], _pool((10, 11)), tmp_path / "run",
                   TrainConfig(steps=3, full=True, lr=1e-3, validate_every=0, accumulate=2))
    assert [len(e["pairs"]) for e in result.history] == [2, 2, 2]  # gradient accumulation
    after = mini_model.sam.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("sam_mask_decoder.") for k in changed)
    assert any(k.startswith("memory_attention.") for k in changed)
    assert not any(k.startswith("image_encoder.") for k in changed)
    info, state = read_adapter(result.adapter_path)
    assert info.mode == "full" and result.best_step == 3 and result.val_metric is None
    assert any(k.startswith("sam_mask_decoder.") for k in state)
    assert not any(k.startswith("image_encoder.") for k in state)
    assert all(torch.equal(state[k], after[k]) for k in state)  # validation off: the last weights


def test_cancel_resume_and_seed_reproduce_an_uninterrupted_run(tmp_path):
    template = make_template("t0", seed=0, size=(120, 128))
    config = TrainConfig(steps=5, validate_every=2, val_images=1, seed=7)

    straight = train(_fresh_model(), [template], _pool(), tmp_path / "straight", config)
    assert straight.steps_done == 5

    cancel = CancelToken()

    def stop_after_two(p):
        if p.done == 2:
            cancel.cancel()

    part = train(_fresh_model(), [template], _pool(), tmp_path / "split", config,
                 progress=stop_after_two, cancel=cancel)
    assert part.cancelled and part.steps_done == 2
    assert json.loads((tmp_path / "split" / "result.json").read_text())["status"] == "cancelled"
    load_adapter(tmp_path / "split" / "adapter.pt", _fresh_model())  # a usable checkpoint exists
    # Seeded: the first two steps are those of the uninterrupted run.
    assert _losses(tmp_path / "split") == _losses(tmp_path / "straight")[:2]

    # A run folder is never silently reused, and resuming needs the same inputs.
    with pytest.raises(UserError, match="already holds a training run"):
        train(_fresh_model(), [template], _pool(), tmp_path / "split", config)
    with pytest.raises(UserError, match="unlabeled images"):
        train(_fresh_model(), [template], _pool((10, 11)), tmp_path / "split", config, resume=True)

    resumed = train(_fresh_model(), [template], _pool(), tmp_path / "split", config, resume=True)
    assert not resumed.cancelled and resumed.steps_done == 5
    steps = [json.loads(x)["step"] for x in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    # Optimizer, schedule, sampling and random states restored: the same losses exactly.
    assert _losses(tmp_path / "split") == _losses(tmp_path / "straight")
    # and the validation after the resume is anchored to the same untrained masks (state.pt)
    assert [e.get("val") for e in resumed.history] == [e.get("val") for e in straight.history]
    assert resumed.baseline_val == straight.baseline_val

    other_seed = train(_fresh_model(), [template], _pool(), tmp_path / "seed8",
                       TrainConfig(steps=2, validate_every=0, seed=8))
    assert _losses(tmp_path / "seed8") != _losses(tmp_path / "straight")[:2]
    assert other_seed.steps_done == 2


def _failing_step(monkeypatch, fail_at: int, failure):
    real = trainer.palindrome_step
    calls = {"n": 0}

    def step(*args, **kwargs):
        out = real(*args, **kwargs)
        if torch.is_grad_enabled():  # training steps, not validation
            calls["n"] += 1
            if calls["n"] == fail_at:
                return failure(out)
        return out

    monkeypatch.setattr(trainer, "palindrome_step", step)


def test_nan_loss_is_a_clear_error_never_success(mini_model, tmp_path, monkeypatch):
    def nan(out):
        out.loss = out.loss * float("nan")
        return out

    _failing_step(monkeypatch, 2, nan)  # the second pass: step 2 with all structures in one pass
    with pytest.raises(TrainingError, match="diverged at step 2.*learning rate"):
        train(mini_model, [make_template("t0", seed=0)], _pool((10, 11)), tmp_path / "run",
              TrainConfig(steps=4, validate_every=0, objects_per_pass=99))
    status = json.loads((tmp_path / "run" / "result.json").read_text())
    assert status["status"] == "failed" and "diverged" in status["error"]
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 1


def test_exception_in_a_step_propagates(mini_model, tmp_path, monkeypatch):
    def boom(out):
        raise RuntimeError("boom")

    _failing_step(monkeypatch, 1, boom)
    with pytest.raises(RuntimeError, match="boom") as info:
        train(mini_model, [make_template("t0", seed=0)], _pool((10,)), tmp_path / "run",
              TrainConfig(steps=3, validate_every=0))
    assert any("training step 1" in note for note in info.value.__notes__)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "failed"


def test_templates_with_different_structures_and_leave_one_out_validation(mini_model, tmp_path, monkeypatch):
    templates = [make_template("t0", 0, structures=("head", "eye", "scape")),
                 make_template("t1", 1, size=(110, 128), structures=("head", "eye")),
                 make_template("t2", 2, structures=("head", "scape", "mandible"))]
    trained_k = []
    real_step = trainer.palindrome_step

    def spy_step(sam, template, masks, valid, target, weights):
        if torch.is_grad_enabled():
            trained_k.append(masks.shape[0])
        return real_step(sam, template, masks, valid, target, weights)

    monkeypatch.setattr(trainer, "palindrome_step", spy_step)
    # (sam, frame, memories) of the leave-one-out validation
    predictions = record_calls(monkeypatch, checkpoint_choice, "predict_from_memory")
    result = train(mini_model, templates, _pool((10, 11)), tmp_path / "run",
                   TrainConfig(steps=6, validate_every=3, seed=1, objects_per_pass=99, validation="loo_iou"))
    groups = [(frame.batch, len(memories)) for _, frame, memories in predictions]

    # Each step trains one template with its share of (and only) its structures.
    pairs = [p for e in result.history for p in e["pairs"]]
    assert {p["template"] for p in pairs} == {"t0", "t1", "t2"}
    own = {t.image_id: t.structures for t in templates}
    config = TrainConfig()
    for p in pairs:
        trained = p.get("structures", own[p["template"]])
        assert set(trained) <= set(own[p["template"]])
        assert len(trained) == len(config.step_structures(len(own[p["template"]]), 0))
    assert trained_k == [len(p.get("structures", own[p["template"]])) for p in pairs]

    # Leave-one-template-out: every held-out structure batch attends to exactly the
    # other templates that have those structures (mandible: only t2 has it, not predicted).
    assert result.val_metric == "loo_iou" and 0.0 <= result.best_val <= 1.0
    per_validation = sorted(groups[:len(groups) // 3])
    # t0: head <- {t1,t2}, eye <- {t1}, scape <- {t2}; t1: head <- {t0,t2}, eye <- {t0};
    # t2: head <- {t0,t1}, scape <- {t0}.
    assert per_validation == sorted([(1, 2), (1, 1), (1, 1), (1, 2), (1, 1), (1, 2), (1, 1)])
    assert len(groups) == 3 * len(per_validation)  # baseline, step 3, step 6
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["structures"] == ["head", "eye", "scape", "mandible"]
    assert [t["structures"] for t in settings["templates"]] == [["head", "eye", "scape"], ["head", "eye"],
                                                                ["head", "scape", "mandible"]]


def test_adapter_holds_the_best_validated_weights_not_the_last(mini_model, tmp_path, monkeypatch):
    scores = iter([0.5, 0.7, 0.6, 0.4])  # pool_score: untrained, steps 2, 4, 6 -> best at step 2
    monkeypatch.setattr(trainer._Run, "_pool_score", lambda self: next(scores))
    result = train(mini_model, [make_template("t0", seed=0)], _pool((10, 11)), tmp_path / "run",
                   TrainConfig(steps=6, validate_every=2, val_images=1))
    assert (result.best_step, result.best_val, result.baseline_val) == (2, 0.7, 0.5)
    assert result.improved and result.improvement == pytest.approx(0.2)
    info, best = read_adapter(result.adapter_path)
    assert info.hyperparameters["best_step"] == 2
    last = torch.load(tmp_path / "run" / "state.pt", weights_only=True)["trainable"]
    assert any(not torch.equal(best[k], last[k]) for k in best)  # step 6 differs from step 2
    mine = trainable_state_dict(mini_model.sam)
    assert all(torch.equal(mine[k], best[k]) for k in best)  # the model is left at the best step


def test_training_lowers_the_held_out_palindrome_loss(mini_model, tmp_path, monkeypatch):
    """End to end: the optimizer, schedule and loss move the weights the right way on held-out images
    (validated here on the palindrome loss of the held-out image, which no plan chooses any more:
    it falls whatever the targets do, engine.checkpoint_choice)."""
    monkeypatch.setattr(trainer._Run, "_pool_score", lambda self: -self._val_loss())
    result = train(mini_model, [make_template("t0", seed=0)], _pool((10, 11, 12)), tmp_path / "run",
                   TrainConfig(steps=16, lr=2e-3, validate_every=8, val_images=1))
    vals = [-e["val"] for e in result.history if "val" in e]
    assert vals[-1] < vals[0] < -result.baseline_val
    assert result.best_step == 16 and result.best_val == -vals[-1]


def test_a_run_that_never_beats_the_untrained_model_keeps_it_and_says_so(mini_model, tmp_path, monkeypatch):
    """Never worse than untrained: step 0 is the untrained model; when no trained step validates
    better, the adapter leaves the model unchanged and nothing says "improved"."""
    scores = iter([0.6, 0.55, 0.6, 0.3])  # untrained, steps 2, 4, 6: a tie is no improvement
    monkeypatch.setattr(trainer._Run, "_pool_score", lambda self: next(scores))
    messages = []
    result = train(mini_model, [make_template("t0", seed=0)], _pool((10, 11)), tmp_path / "run",
                   TrainConfig(steps=6, validate_every=2, val_images=1), log_fn=messages.append)
    assert (result.best_step, result.best_val) == (0, 0.6)
    assert result.improved is False and result.improvement == 0.0
    info, best = read_adapter(result.adapter_path)
    assert info.hyperparameters["best_step"] == 0
    assert all(not best[k].any() for k in best if "lora_B" in k)  # LoRA's B at zero: the untrained model
    written = json.loads((tmp_path / "run" / "result.json").read_text())
    assert written["improved"] is False and written["best_step"] == 0
    assert written["val_signal"] == {"name": "held-out review score", "against_labels": False}
    assert any("label-free proxy" in m and "held-out review score" in m for m in messages)
    assert any("never improved on the untrained model" in m for m in messages)


@pytest.mark.parametrize("n, held", [(2, 1), (5, 1), (12, 2), (30, 4)])
def test_validation_holds_out_at_most_a_fifth_of_a_small_pool(mini_model, tmp_path, n, held):
    run_dir = tmp_path / "run"
    train(
        mini_model,
        [make_template("t0", seed=0, size=(120, 128))],
        _pool(tuple(range(40, 40 + n))),
        run_dir,
        TrainConfig(steps=1, validate_every=1, seed=0),
    )  # default val_images (4)
    settings = json.loads((run_dir / "settings.json").read_text())
    assert len(settings["validation"]["images"]) == held
    assert len(settings["unlabeled"]) == n - held


def test_objects_one_pass_at_a_time_give_the_gradient_of_all_together(mini_model):
    """Splitting a palindrome's structures over several forward/backward passes only bounds
    the memory: the objects are independent batch rows, so the summed gradient is the same."""
    from descriptron_sam2pal.engine.features import FeatureEncoder
    from descriptron_sam2pal.engine.palindrome import palindrome_step
    from descriptron_sam2pal.model.lora import apply_lora, trainable_parameters

    template = make_template("t0", seed=0, size=(120, 128))
    k = len(template.structures)
    assert k >= 3
    apply_lora(mini_model.sam, rank=4, alpha=8)
    torch.manual_seed(0)
    for p in trainable_parameters(mini_model.sam):  # LoRA B starts at zero: give it weights
        p.data.normal_(0, 0.02)
    mini_model.sam.eval()  # no dropout: the two ways must see the same network
    feats0, feats1 = FeatureEncoder(mini_model).encode([template.image, _pool((10,))[0]])
    masks, valid = template.model_masks(template.structures), template.valid()
    params = trainable_parameters(mini_model.sam)

    def gradient(passes):
        for p in params:
            p.grad = None
        for rows in passes:
            palindrome_step(mini_model.sam, feats0, masks[rows], valid, feats1).loss.backward()
        return [p.grad.clone() for p in params]

    together = gradient(TrainConfig(objects_per_pass=k).object_rows(k, "cpu"))
    one = gradient(TrainConfig(objects_per_pass=1).object_rows(k, "cpu"))
    assert sum(float(g.abs().sum()) for g in together) > 0
    for a, b in zip(one, together):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_trainer_passes_cover_every_structure_once_per_palindrome(mini_model, tmp_path, monkeypatch):
    rows_seen = []
    real = trainer.palindrome_step

    def spy(sam, template, masks, valid, target, weights, **kwargs):
        if torch.is_grad_enabled():
            rows_seen.append(masks.shape[0])
        return real(sam, template, masks, valid, target, weights, **kwargs)

    monkeypatch.setattr(trainer, "palindrome_step", spy)
    template = make_template("t0", seed=0, size=(120, 128))
    train(mini_model, [template], _pool((10, 11)), tmp_path / "run",
          TrainConfig(steps=2, validate_every=0, objects_per_pass=2, structure_share=1.0))
    k = len(template.structures)
    per_step = [min(2, k - a) for a in range(0, k, 2)]
    assert rows_seen == per_step * 2


def test_structures_take_turns_when_a_palindrome_trains_some_of_them():
    turns = [TrainConfig(structure_share=0.4).step_structures(5, t) for t in range(5)]
    assert turns == [[0, 1], [2, 3], [0, 4], [1, 2], [3, 4]]
    assert sorted(sum(turns, [])) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # each as often as the others
    assert len(TrainConfig(structure_share=0.4).step_structures(9, 0)) == 4  # the share, rounded up
    assert TrainConfig(structure_share=0.4).step_structures(1, 3) == [0]  # at least one
    assert TrainConfig(structure_share=1.0).step_structures(3, 7) == [0, 1, 2]  # 1: all
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(UserError, match="structure_share"):
            TrainConfig(structure_share=bad).check()


def test_a_step_trains_only_its_turn_of_structures_and_logs_which(mini_model, tmp_path, monkeypatch):
    trained = []
    real = trainer._Run._palindrome

    def spy(self, t_index, image, version=None, rows=None):
        trained.append(list(rows))
        return real(self, t_index, image, version, rows)

    monkeypatch.setattr(trainer._Run, "_palindrome", spy)
    template = make_template("t0", seed=0, size=(120, 128))
    names = template.structures
    assert len(names) >= 3
    run = tmp_path / "run"
    train(mini_model, [template], _pool((10, 11)), run,
          TrainConfig(steps=3, validate_every=0, structure_share=0.2, objects_per_pass=1))
    assert trained == [[0], [1], [2]]
    lines = (run / "log.jsonl").read_text().splitlines()
    logged = [json.loads(line)["pairs"][0]["structures"] for line in lines]
    assert logged == [[names[0]], [names[1]], [names[2]]]


def test_objects_per_pass_auto_bounds_cpu_activations_and_keeps_pairwise_losses_together():
    from descriptron_sam2pal.engine.palindrome import LossWeights

    assert TrainConfig().object_rows(3, "cpu") == [[0], [1], [2]]  # 512 px: one at a time
    assert TrainConfig().object_rows(5, "cpu", 1024) == [[0], [1], [2], [3], [4]]
    assert TrainConfig().object_rows(5, "cpu", 256) == [[0, 1, 2, 3, 4]]  # small activations: together
    assert TrainConfig(objects_per_pass=2).object_rows(5, "cpu") == [[0, 1], [2, 3], [4]]
    assert TrainConfig().object_rows(3, "cuda") == [[0, 1, 2]]
    assert TrainConfig(loss=LossWeights(overlap=1.0)).object_rows(3, "cpu") == [[0, 1, 2]]
    with pytest.raises(UserError, match="objects_per_pass"):
        TrainConfig(objects_per_pass=-1).check()


def test_a_run_whose_structure_vanished_is_never_reported_as_improved(mini_model, tmp_path, monkeypatch):
    """The check bypassed (templates built directly): the trainer says so, and a validation that
    rises does not make the run "improved"."""
    image, found = make_specimen(0, size=(128, 104), structures=("head", "eye"))
    eye = np.zeros(found["eye"].shape, bool)
    eye[60, 50] = True  # one pixel: at most 1 at 128 px
    template = Template("t0", prepare_image(image, 128, source="t0.png"), {"head": found["head"], "eye": eye})
    pool = [prepare_image(make_specimen(s, (128, 104))[0], 128, source=f"u{s}.png") for s in (10, 11)]
    scores = iter([0.3, 0.5, 0.6, 0.7])  # untrained, then better at every validation
    monkeypatch.setattr(trainer._Run, "_pool_score", lambda self: next(scores))
    said = []
    config = TrainConfig(steps=6, validate_every=2, val_images=1)
    result = train(mini_model, [template], pool, tmp_path / "run", config, log_fn=said.append)
    assert result.best_step > 0 and result.improvement > 0  # validation rose...
    assert result.improved is False  # ...but the eye was never seen
    assert result.vanished == ["'eye' on template t0 (1 px at 128 px)"]
    assert any("vanished at the model's input size" in line for line in said)
    written = json.loads((tmp_path / "run" / "result.json").read_text())
    assert written["improved"] is False and written["vanished"] == result.vanished
    lines = describe_result(result)
    assert not any("improved by" in line for line in lines)
    assert any(line.startswith("not reported as an improvement (validation pool_score: untrained 0.3000")
               and "'eye' on template t0" in line for line in lines)  # fmt: skip


def test_a_run_stops_early_when_validation_stalls_keeps_the_best_and_can_go_on(
        mini_model, tmp_path, monkeypatch):
    """``stop_after`` validations in a row without a better one end the run: the kept weights are
    the best's (the same as a full run would keep up to there), the log, result.json and the
    summary say it stopped early, and a resume with ``stop_after=0`` trains the remaining steps."""
    values = {0: 0.5, 2: 0.7}  # the best at step 2; every later validation 0.6
    monkeypatch.setattr(trainer._Run, "_pool_score", lambda self: values.get(self.step, 0.6))
    messages, reports = [], []
    run_dir = tmp_path / "run"
    config = TrainConfig(steps=10, validate_every=2, val_images=1, stop_after=2)
    result = train(mini_model, [make_template("t0", seed=0)], _pool((10, 11)), run_dir, config,
                   log_fn=messages.append, progress=reports.append)
    assert result.stopped_early and not result.cancelled
    assert (result.steps_done, result.best_step, result.best_val) == (6, 2, 0.7)  # 4 and 6 did not beat it
    assert result.improved
    written = json.loads((run_dir / "result.json").read_text())
    assert written["stopped_early"] is True and written["steps_done"] == 6 and written["status"] == "finished"
    assert any("stopping early at step 6 of 10" in m and "step 2" in m for m in messages)
    summary = describe_result(result)[0]
    assert "stopped early" in summary and "after 6 of 10 steps" in summary
    assert reports[-1].done == 6
    assert read_adapter(result.adapter_path)[0].hyperparameters["best_step"] == 2

    go_on = TrainConfig(steps=10, validate_every=2, val_images=1, stop_after=0)
    resumed = train(_fresh_model(), [make_template("t0", seed=0)], _pool((10, 11)), run_dir, go_on,
                    resume=True)
    assert resumed.steps_done == 10 and not resumed.stopped_early and resumed.best_step == 2


def test_stop_after_zero_trains_every_step_and_a_negative_value_is_refused(mini_model, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer._Run, "_pool_score", lambda self: 0.5)  # never better than untrained
    result = train(mini_model, [make_template("t0", seed=0)], _pool((10, 11)), tmp_path / "run",
                   TrainConfig(steps=8, validate_every=2, val_images=1, stop_after=0))
    assert result.steps_done == 8 and not result.stopped_early and result.best_step == 0
    with pytest.raises(UserError, match="stop_after must not be negative"):
        TrainConfig(stop_after=-1).check()


def test_memory_dropout_off_is_applied_recorded_and_checked(tmp_path):
    model = _fresh_model()
    config = TrainConfig(steps=2, validate_every=0, memory_dropout=0.0)
    train(model, [make_template("t0", seed=0)], _pool((10, 11)), tmp_path / "run", config)
    assert all(getattr(m, attr) == 0.0 for m, attr in memory_dropout_modules(model.sam))
    assert json.loads((tmp_path / "run" / "settings.json").read_text())["config"]["memory_dropout"] == 0.0
    with pytest.raises(UserError, match="memory_dropout must be in"):
        TrainConfig(memory_dropout=1.5).check()


def test_a_run_saved_before_a_setting_existed_resumes_with_what_ran_then(tmp_path):
    template, cancel = make_template("t0", seed=0), CancelToken()

    def stop_at_one(p):
        if p.done == 1:
            cancel.cancel()

    run = tmp_path / "run"
    train(_fresh_model(), [template], _pool((10, 11)), run, TrainConfig(steps=3, validate_every=0),
          progress=stop_at_one, cancel=cancel)
    settings = json.loads((run / "settings.json").read_text())
    assert settings["config"]["memory_dropout"] == 0.0  # the default: off
    assert settings["config"]["structure_share"] == 0.4  # the default: 2 of 5 structures a step
    for name in ("memory_dropout", "structure_share"):  # as written before the settings existed
        del settings["config"][name]
    (run / "settings.json").write_text(json.dumps(settings))
    model = _fresh_model()
    result = train(model, [template], _pool((10, 11)), run, TrainConfig(steps=3, validate_every=0),
                   resume=True)
    assert result.steps_done == 3
    assert {getattr(m, attr) for m, attr in memory_dropout_modules(model.sam)} == {0.1}
    config = json.loads((run / "settings.json").read_text())["config"]
    assert config["memory_dropout"] is None and config["structure_share"] == 1.0  # what ran then


def test_a_higher_score_that_most_held_out_masks_do_not_share_is_not_kept(mini_model, tmp_path, monkeypatch):
    means = iter([0.5, 0.6, 0.7, 0.8])  # the untrained model, then steps 2, 4, 6: each higher
    monkeypatch.setattr(checkpoint_choice, "anchored_review_score", lambda current, untrained: next(means))
    verdicts = iter([False, True, False])  # whether most held-out masks improved, steps 2, 4, 6
    monkeypatch.setattr(checkpoint_choice, "mostly_better", lambda current, untrained: next(verdicts))
    lines: list[str] = []
    result = train(mini_model, [make_template("t0", seed=0)], _pool((10, 11)), tmp_path / "run",
                   TrainConfig(steps=6, validate_every=2, val_images=1), log_fn=lines.append)
    assert result.val_metric == "pool_score"
    assert (result.best_step, result.best_val, result.baseline_val) == (4, 0.7, 0.5)
    assert sum("fewer held-out masks improved than got worse; not kept" in line for line in lines) == 2
