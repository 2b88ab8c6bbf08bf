"""benchmarks/encoder_runtimes.py: its stand-in encoder, int8 quantization, agreement and adoption rule,
on the small random SAM2 (ONNX Runtime / OpenVINO / torch.compile are not dependencies: not run here)."""

import numpy as np
import pytest
import torch

from tests.helpers.benchmark_modules import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("benchmarks/encoder_runtimes.py", "encoder_runtimes_benchmark")


@pytest.fixture(scope="module")
def mini():
    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    model = build_model(MINI_CONFIG, seed=0)
    model.sam.eval()
    return model


@torch.no_grad()
def test_the_stand_in_encoder_gives_what_sams_encoder_gives(bench, mini, tmp_path):
    encoder = mini.sam.image_encoder
    x = torch.rand(2, 3, mini.image_size, mini.image_size)
    want = encoder(x)
    got = bench.swapped_encoder(
        encoder, bench.make_runtime("eager", encoder, mini.image_size, 1, str(tmp_path))
    )(x)
    for key in ("backbone_fpn", "vision_pos_enc"):
        assert len(got[key]) == len(want[key])
        for a, b in zip(got[key], want[key]):
            torch.testing.assert_close(a, b)
    torch.testing.assert_close(got["vision_features"], want["vision_features"])


@torch.no_grad()
def test_int8_quantizes_linear_layers_and_stays_close(bench, mini, tmp_path):
    encoder = mini.sam.image_encoder
    x = torch.rand(1, 3, mini.image_size, mini.image_size)
    eager = bench.make_runtime("eager", encoder, mini.image_size, 1, str(tmp_path))(x)
    for name in ("int8", "int8-mlp"):
        run = bench.make_runtime(name, encoder, mini.image_size, 1, str(tmp_path))
        kinds = {type(m).__module__ for m in run.modules()}
        assert any("quantized" in k for k in kinds), name
        for a, b in zip(run(x), eager):
            assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.98
    # the original encoder is untouched (the runtime quantizes a copy)
    assert all(type(m) is not torch.ao.nn.quantized.dynamic.Linear for m in encoder.modules())


def _save(path, feats, masks):
    arrays = {f"feat_0_{i}": f for i, f in enumerate(feats)}
    for name, m in masks.items():
        arrays[f"mask_0_{name}"] = np.packbits(m)
        arrays[f"shape_0_{name}"] = np.array(m.shape)
    np.savez(path, **arrays)
    return str(path)


def test_agreement_counts_iou_and_present_absent_flips(bench, tmp_path):
    a = np.zeros((10, 13), bool)
    a[2:6, 2:7] = True  # 20 pixels
    b = a.copy()
    b[6, 2:7] = True  # 5 more: IoU 20 / 25
    feats = [np.arange(1, 7, dtype=np.float32)]
    ref = _save(tmp_path / "ref.npz", feats, {"head": a, "legs": a})
    got = _save(tmp_path / "got.npz", [feats[0] * 2], {"head": b})  # legs absent here
    out = bench.agreement(ref, got, 1, ["head", "legs", "eyes"])
    assert out["iou_mean"] == pytest.approx(0.8)
    assert out["iou_by_structure"] == {"head": pytest.approx(0.8)}
    assert out["flips"] == 1 and out["masks"] == 1
    assert out["cosine_min"] == pytest.approx(1.0)
    assert out["max_abs_diff"] == pytest.approx(6.0)


def _row(cpu_s, iou=1.0, flips=0):
    return {"cpu_s": cpu_s, "agreement": {"iou_mean": iou, "flips": flips, "iou_by_structure": {"head": iou}}}


def test_adoption_needs_speed_on_the_first_model_and_agreement_on_all(bench, capsys):
    summary = {
        "eager": {"tiny": {"cpu_s": 1.0}, "demo": {"cpu_s": 0.04}},
        "fast_but_wrong": {"tiny": _row(0.5), "demo": _row(0.03, iou=0.98)},
        "right_but_slow": {"tiny": _row(0.9), "demo": _row(0.01)},
        "good": {"tiny": _row(0.7), "demo": _row(0.039, iou=0.995)},
        "flips": {"tiny": _row(0.6), "demo": _row(0.03, flips=1)},
    }
    bench.summarize(summary, ["tiny", "demo"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "encoder_runtimes: eager_s=1.000 best=good best_s=0.700 best_iou=0.9950"
    verdicts = {ln.split(":")[0]: ln for ln in lines[:-1]}
    assert "not adopted" in verdicts["fast_but_wrong"] and "0.9800" in verdicts["fast_but_wrong"]
    assert "not adopted" in verdicts["right_but_slow"] and "1.11x < 1.3x" in verdicts["right_but_slow"]
    assert "not adopted" in verdicts["flips"] and verdicts["good"] == "good: ADOPT"
    summary.pop("good")
    bench.summarize(summary, ["tiny", "demo"])
    assert (
        capsys.readouterr()
        .out.strip()
        .splitlines()[-1]
        .startswith("encoder_runtimes: eager_s=1.000 best=eager ")
    )
