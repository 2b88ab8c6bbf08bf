"""The `sam2pal` command line end to end: real files, real sam2 code, the mini model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from descriptron_sam2pal.cli import main
from descriptron_sam2pal.model.build import MINI_CONFIG, build_model
from tests.helpers.synthetic import make_specimen

COLORS = {"head": (200, 0, 0), "eye": (0, 200, 0), "scape": (0, 0, 200)}
COLOR_SPEC = ";".join(f"{n}={r},{g},{b}" for n, (r, g, b) in COLORS.items())


def write_specimen(folder: Path, name: str, seed: int, size=(96, 120)) -> tuple[Path, Path]:
    """An image in ``folder`` and its colour mask in ``folder/../masks``."""
    image, masks = make_specimen(seed, size=size)
    folder.mkdir(parents=True, exist_ok=True)
    mask_dir = folder.parent / "masks"
    mask_dir.mkdir(exist_ok=True)
    colour = np.zeros(image.shape, np.uint8)
    for n, m in masks.items():
        colour[m] = COLORS[n]
    Image.fromarray(image).save(folder / name)
    Image.fromarray(colour).save(mask_dir / name)
    return folder / name, mask_dir / name


@pytest.fixture
def project(tmp_path):
    """A template (image + colour mask) and four unlabeled specimens of other sizes."""
    template, template_mask = write_specimen(tmp_path / "template", "t.png", seed=0)
    for i, size in enumerate([(96, 120), (110, 90), (80, 80), (100, 130)]):
        write_specimen(tmp_path / "specimens", f"s{i}.png", seed=10 + i, size=size)
    return tmp_path, template, template_mask


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def template_args(template, template_mask):
    return ["--template-image", template, "--template-mask", template_mask, "--colors", COLOR_SPEC]


def test_train_propagate_evaluate_end_to_end(project, mini_checkpoint, capsys):
    root, template, template_mask = project
    common = [
        *template_args(template, template_mask),
        "--images",
        root / "specimens",
        "--checkpoint",
        mini_checkpoint,
        "--image-size",
        128,
        "--device",
        "cpu",
    ]
    code, out, err = run(capsys, "train", *common, "--out", root / "run", "--steps", 3, "--lora-rank", 2)
    assert code == 0, err
    assert "finished after 3 of 3 steps" in out
    result = json.loads((root / "run" / "result.json").read_text())
    verdict = "improved by" if result["best_step"] > 0 else "did not improve on the untrained model"
    # whether training helped, by which signal, and that it is a proxy
    assert (
        "validation (pool_score: held-out review score, a label-free proxy): untrained" in out
        and verdict in out
    )
    log = [json.loads(line) for line in (root / "run" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log if "loss" in entry][-3:] == [1, 2, 3]
    settings = json.loads((root / "run" / "settings.json").read_text())
    assert settings["config"]["loss"]["pseudo"] > 0  # pseudo-labels on by default
    assert "with pseudo-labels" in out and "pseudo-labels remade" in err
    assert (root / "run" / "adapter.pt").is_file()

    pred = root / "pred.json"
    code, out, err = run(
        capsys,
        "propagate",
        *common,
        "--adapter",
        root / "run",
        "--out",
        pred,
        "--batch-size",
        3,
        "--write-to",
        root / "specimens",
    )
    assert code == 0, err
    doc = json.loads(pred.read_text())
    assert sorted(im["file_name"] for im in doc["images"]) == ["s0.png", "s1.png", "s2.png", "s3.png"]
    sizes = {im["file_name"]: (im["height"], im["width"]) for im in doc["images"]}
    assert sizes["s1.png"] == (110, 90)
    for ann in doc["annotations"]:
        assert 0.0 <= ann["score"] <= 1.0
        assert 0.0 <= ann["object_score"] <= 1.0
        assert "predicted_iou" in ann
    assert pred.with_suffix(".rlejson").is_file()
    assert "merged" in out
    assert "image encoder passes: 5 " in out  # the template and each of the 4 specimens once

    code, out, err = run(
        capsys, "evaluate", "--pred", pred, "--truth", root / "masks", "--colors", COLOR_SPEC, "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert 0.0 <= report["mean_iou"] <= 1.0


def test_train_without_pseudo_labels(project, mini_checkpoint, capsys):
    root, template, template_mask = project
    code, out, err = run(
        capsys,
        "train",
        *template_args(template, template_mask),
        "--images",
        root / "specimens",
        "--checkpoint",
        mini_checkpoint,
        "--image-size",
        128,
        "--device",
        "cpu",
        "--out",
        root / "run",
        "--steps",
        1,
        "--lora-rank",
        2,
        "--no-pseudo-labels",
        "--stop-after",
        3,
    )
    assert code == 0, err
    config = json.loads((root / "run" / "settings.json").read_text())["config"]
    assert config["loss"]["pseudo"] == 0 and config["stop_after"] == 3
    assert "pseudo-label" not in out + err


def test_propagate_resumes_from_its_journal(project, mini_checkpoint, capsys, monkeypatch):
    root, template, template_mask = project
    args = [
        *template_args(template, template_mask),
        "--images",
        root / "specimens",
        "--checkpoint",
        mini_checkpoint,
        "--image-size",
        128,
        "--out",
        root / "pred.json",
        "--batch-size",
        2,
    ]
    journal = root / "pred.json.journal.jsonl"
    import descriptron_sam2pal.engine.predictions as predictions

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predictions, "write_streams", disk_full)
    code, _, err = run(capsys, "propagate", *args)
    assert code == 2 and "No space left on device" in err and "--resume" in err
    assert journal.is_file() and len(journal.read_text().splitlines()) == 4
    assert not (root / "pred.json").exists()
    monkeypatch.undo()

    from descriptron_sam2pal.engine import features

    passes = []
    original = features.FeatureEncoder._run_encoder
    monkeypatch.setattr(
        features.FeatureEncoder,
        "_run_encoder",
        lambda self, images, projected: passes.append(len(images)) or original(self, images, projected),
    )
    code, out, err = run(capsys, "propagate", *args, "--resume")
    assert code == 0, err
    assert sum(passes) == 1  # only the template: every target came from the journal
    assert not journal.exists()


@pytest.mark.parametrize(
    "case",
    [
        "image-size",
        "no-images",
        "corrupt-template",
        "empty-mask",
        "config-mismatch",
        "no-structure-name",
        "missing-checkpoint",
    ],
)
def test_bad_input_gives_a_clear_error_and_writes_nothing(project, mini_checkpoint, capsys, case):
    root, template, template_mask = project
    args = {
        "templates": template_args(template, template_mask),
        "images": root / "specimens",
        "checkpoint": mini_checkpoint,
        "extra": ["--image-size", 128],
    }
    expect = ""
    if case == "image-size":
        args["extra"] = ["--image-size", 300]
        expect = "multiple of 32"
    elif case == "no-images":
        (root / "empty").mkdir()
        args["images"] = root / "empty"
        expect = "no specimen images"
    elif case == "corrupt-template":
        bad = root / "bad.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
        args["templates"] = template_args(bad, template_mask)
        expect = "bad.png"
    elif case == "empty-mask":
        empty = root / "empty_mask.png"
        Image.fromarray(np.zeros((96, 120, 3), np.uint8)).save(empty)
        args["templates"] = template_args(template, empty)
        expect = "empty"
    elif case == "config-mismatch":
        args["extra"] = ["--image-size", 128, "--config", "sam2.1_hiera_t"]
        expect = "config"
    elif case == "no-structure-name":
        args["templates"] = ["--template-image", template, "--template-mask", template_mask]
        expect = "--structure"
    elif case == "missing-checkpoint":
        args["checkpoint"] = root / "nope.pt"
        expect = "does not exist"
    out_dir = root / "run"
    argv = [
        "train",
        *args["templates"],
        "--images",
        args["images"],
        "--checkpoint",
        args["checkpoint"],
        *args["extra"],
        "--out",
        out_dir,
        "--steps",
        2,
    ]
    if case == "image-size":
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in argv])
        assert exc.value.code == 2
        err = capsys.readouterr().err
    else:
        code, _, err = run(capsys, *argv)
        assert code == 2
    assert expect in err
    assert "Traceback" not in err
    assert not out_dir.exists()


def test_adapter_for_another_base_model_is_refused(project, mini_checkpoint, capsys, tmp_path):
    root, template, template_mask = project
    common = [*template_args(template, template_mask), "--images", root / "specimens", "--image-size", 128]
    code, _, err = run(
        capsys,
        "train",
        *common,
        "--checkpoint",
        mini_checkpoint,
        "--out",
        root / "run",
        "--steps",
        1,
        "--lora-rank",
        2,
    )
    assert code == 0, err
    other = tmp_path / "other.pt"
    torch.save({"model": build_model(MINI_CONFIG, seed=1).sam.state_dict()}, other)
    code, _, err = run(
        capsys,
        "propagate",
        *common,
        "--checkpoint",
        other,
        "--adapter",
        root / "run",
        "--out",
        root / "pred.json",
    )
    assert code == 2
    assert "trained on" in err and "--checkpoint" in err
    assert not (root / "pred.json").exists()


def test_gui_without_a_screen_says_what_to_do(capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    code, _, err = run(capsys, "gui")
    assert code == 2
    assert "no screen" in err and "sam2pal propagate" in err


def _propagate_argv(root, template, template_mask, checkpoint, out, *extra):
    return [
        "propagate",
        *template_args(template, template_mask),
        "--images",
        root / "specimens",
        "--checkpoint",
        checkpoint,
        "--image-size",
        128,
        "--device",
        "cpu",
        "--out",
        out,
        *extra,
    ]


@pytest.mark.parametrize("case", ["template-mask", "photo", "write-to", "template-store"])
def test_an_output_that_would_overwrite_an_input_is_refused_before_any_work(
    project, mini_checkpoint, capsys, case
):
    root, template, template_mask = project
    photo = root / "specimens" / "s1.png"
    store = root / "specimens" / "session.json"
    from descriptron_sam2pal.store import AnnotationStore

    AnnotationStore.create(store, images=[photo]).save()
    before = {p: p.read_bytes() for p in (template_mask, photo, store)}
    out, extra = {
        "template-mask": (template_mask, []),
        "photo": (photo, []),
        "write-to": (store.with_suffix(".rlejson"), ["--write-to", store]),
        "template-store": (store, ["--templates", store]),
    }[case]
    code, stdout, err = run(
        capsys, *_propagate_argv(root, template, template_mask, mini_checkpoint, out, *extra)
    )
    assert code == 2 and "would overwrite" in err and "Traceback" not in err
    assert "image encoder passes" not in stdout  # refused before segmenting anything
    assert {p: p.read_bytes() for p in before} == before


def test_write_to_a_store_that_does_not_fit_the_photos_stops_before_the_work(
    project, mini_checkpoint, capsys
):
    root, template, template_mask = project
    store_path = root / "specimens" / "session.json"
    store = {
        "images": [{"id": 7, "file_name": "s2.png", "height": 999, "width": 999}],
        "annotations": [],
        "categories": [],
    }
    store_path.write_text(json.dumps(store))
    code, stdout, err = run(
        capsys,
        *_propagate_argv(
            root, template, template_mask, mini_checkpoint, root / "pred.json", "--write-to", store_path
        ),
    )
    assert code == 2 and "does not fit these photos" in err and "s2.png is 80x80 px" in err
    assert not (root / "pred.json").exists() and json.loads(store_path.read_text()) == store


@pytest.mark.parametrize(
    "case",
    [
        "text-checkpoint",
        "empty-checkpoint",
        "text-adapter",
        "huge-image-size",
        "malformed-config",
        "config-without-model",
        "out-folder-is-a-file",
    ],
)
def test_bad_model_inputs_say_what_to_do(project, mini_checkpoint, capsys, case):
    root, template, template_mask = project
    checkpoint, extra, expect = mini_checkpoint, [], ""
    if case == "text-checkpoint":
        checkpoint = root / "notes.pt"
        checkpoint.write_text("these are my notes, not weights")
        expect = "is not a readable PyTorch checkpoint: it is not a PyTorch file"
    elif case == "empty-checkpoint":
        checkpoint = root / "empty.pt"
        checkpoint.write_bytes(b"")
        expect = "is an empty file"
    elif case == "text-adapter":
        (root / "adapter.pt").write_text("not an adapter")
        extra, expect = ["--adapter", root / "adapter.pt"], "is not a readable SAM2-PAL adapter file"
    elif case in ("malformed-config", "config-without-model"):
        (root / "my.yaml").write_text(
            "model:\n  _target_: [unclosed\n" if case == "malformed-config" else "trainer: {}\n"
        )
        extra, expect = ["--config", root / "my.yaml"], "cannot be used"
    out = root / "pred.json"
    if case == "out-folder-is-a-file":
        (root / "taken").write_text("a file")
        out, expect = root / "taken" / "pred.json", "is a file; choose a folder"
    argv = _propagate_argv(root, template, template_mask, checkpoint, out, *extra)
    if case == "huge-image-size":
        argv[argv.index("--image-size") + 1] = 32 * 4096
        expect = "needs about"
    code, _, err = run(capsys, *argv)
    assert code == 2 and expect in err and "Traceback" not in err
    assert not (root / "pred.json").exists()


def test_structure_status_of_the_store_is_obeyed_by_propagate_write_to(project, capsys, present_checkpoint):
    """A structure the project marks absent on a specimen is neither predicted nor written there."""
    root, template, template_mask = project
    checkpoint = present_checkpoint
    from descriptron_sam2pal.store import AnnotationStore

    photos = sorted((root / "specimens").glob("*.png"))
    store = AnnotationStore.create(root / "specimens" / "session.json", images=photos)
    marked = store.image_by_file(photos[0])
    store.set_structure_status(marked.id, "eye", "absent")
    store.save()
    code, _, err = run(
        capsys,
        *_propagate_argv(
            root,
            template,
            template_mask,
            checkpoint,
            root / "pred.json",
            "--write-to",
            root / "specimens" / "session.json",
        ),
    )
    assert code == 0, err
    reopened = AnnotationStore.open(root / "specimens" / "session.json")
    names = {r.file_name: {a.category for a in reopened.annotations_for(r.id)} for r in reopened.images}
    assert "eye" not in names[photos[0].name] and "head" in names[photos[0].name]
    assert all("eye" in names[p.name] for p in photos[1:])
    pred = json.loads((root / "pred.json").read_text())
    [image] = [i for i in pred["images"] if i["file_name"] == photos[0].name]
    eye_id = {c["name"]: c["id"] for c in pred["categories"]}["eye"]
    assert not [a for a in pred["annotations"] if a["image_id"] == image["id"] and a["category_id"] == eye_id]


def test_a_second_run_on_a_store_being_written_is_refused_at_its_start(project, mini_checkpoint, capsys):
    from descriptron_sam2pal.store import AnnotationStore

    root, template, template_mask = project
    store_path = root / "specimens" / "session.json"
    AnnotationStore.create(store_path, images=sorted((root / "specimens").glob("*.png"))).save()
    before = store_path.read_bytes()
    import subprocess

    first = subprocess.Popen(
        [
            sys.executable,
            "-c",  # the first run, still writing
            "import sys, time; from descriptron_sam2pal.store import store_lock\n"
            f"with store_lock({str(store_path)!r}, timeout=0):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout.readline().strip() == "held"
        code, stdout, err = run(
            capsys,
            *_propagate_argv(
                root, template, template_mask, mini_checkpoint, root / "pred.json", "--write-to", store_path
            ),
        )
    finally:
        first.kill()
        first.wait()
    assert code == 2 and "another program" in err and "--resume" in err
    assert "image encoder passes" not in stdout and not (root / "pred.json").exists()
    assert store_path.read_bytes() == before


def test_descriptron_mask_pngs_next_to_the_photos_are_not_specimens(project, mini_checkpoint, capsys):
    root, template, template_mask = project
    mask = np.zeros((96, 120), np.uint8)
    mask[10:40, 10:40] = 255
    Image.fromarray(mask).save(root / "specimens" / "s0_head_1_mask.png")  # Descriptron writes these
    code, stdout, err = run(
        capsys,
        *_propagate_argv(
            root, template, template_mask, mini_checkpoint, root / "pred.json", "--no-confidence"
        ),
    )
    assert code == 0, err
    names = [i["file_name"] for i in json.loads((root / "pred.json").read_text())["images"]]
    assert names == ["s0.png", "s1.png", "s2.png", "s3.png"]


def test_download_drives_the_download_use_case_with_a_bar(capsys, tmp_path):
    """``sam2pal download`` against a local server: the file arrives checked, the bar counts bytes."""
    from tests.helpers.checkpoint_server import NAME, PAYLOAD, files_in, serve_checkpoints

    with serve_checkpoints() as (_, base):
        code, out, err = run(capsys, "download", NAME, "--dest", tmp_path, "--url", f"{base}/ok/{NAME}")
        assert code == 0 and out.strip() == f"saved {tmp_path / NAME}"
        assert (tmp_path / NAME).read_bytes() == PAYLOAD and files_in(tmp_path) == [NAME]
        # tqdm's byte bar: the size in megabytes and a rate in bytes (MB/s, or GB/s on a fast machine)
        assert "download" in err and f"{len(PAYLOAD) / 1e6:.2f}M" in err and "B/s" in err
        code, out, err = run(capsys, "download", NAME, "--dest", tmp_path / "x", "--url", f"{base}/html")
    assert code == 2 and "not a PyTorch checkpoint file" in err and files_in(tmp_path / "x") == []
