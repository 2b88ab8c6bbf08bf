"""benchmarks/propagation_profile.py --flops: one target's operations per SAM2 module, counted on
the small random SAM2 (the real propagation), with and without the palindrome confidence."""

import pytest
from PIL import Image

from tests.helpers.benchmark_modules import load_benchmark
from tests.helpers.synthetic import make_specimen, make_template


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("benchmarks/propagation_profile.py", "propagation_profile_benchmark")


def test_flops_per_module_count_what_propagation_computes(bench, tmp_path):
    from descriptron_sam2pal.engine.memory_propagation import TemplateMemory
    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    model = build_model(MINI_CONFIG, seed=0)
    before = [p.requires_grad for p in model.sam.parameters()]
    memory = TemplateMemory(model, [make_template("t0", seed=0, image_size=model.image_size)])
    target = tmp_path / "target.png"
    Image.fromarray(make_specimen(5)[0]).save(target)

    off = bench.flops_per_module(model, memory, target, confidence=False)
    on = bench.flops_per_module(model, memory, target, confidence=True)

    for counts in (off, on):
        assert counts["image_encoder"] > 0 and counts["memory_attention"] > 0
        assert sum(counts[m] for m in bench.MODULES) <= counts["total"] * (1 + 1e-9)
    # one encoder pass either way; the confidence's backward half adds memory attention and
    # the target's memory encoding
    assert on["image_encoder"] == pytest.approx(off["image_encoder"])
    assert on["memory_attention"] == pytest.approx(2 * off["memory_attention"], rel=0.05)
    assert off["memory_encoder"] == 0 < on["memory_encoder"]
    assert [p.requires_grad for p in model.sam.parameters()] == before
