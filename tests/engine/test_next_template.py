"""The next-template suggestion ranks the specimens the model is least sure of first."""

import numpy as np

from descriptron_sam2pal.engine.next_template import from_result, suggest_next_templates, uncertainty_of
from descriptron_sam2pal.engine.results import StructureResult, TargetResult


def result(name, scores, skipped=None, error=None):
    m = np.ones((4, 4), bool)
    structures = {n: StructureResult(n, s is not None, m if s is not None else None, s, 0.9, 0.8)
                  for n, s in scores.items()}
    return TargetResult(name, f"/photos/{name}.png", 4, 4, structures, error=error, skipped=skipped or {})


def test_the_least_certain_specimen_comes_first_and_absent_counts_as_unsure():
    results = [result("sure", {"head": 0.9, "eye": 0.8}), result("eye-missing", {"head": 0.9, "eye": None}),
               result("unsure", {"head": 0.3, "eye": 0.4}), result("broken", {}, error="cannot read"),
               result("template", {"head": 0.0, "eye": 0.0})]
    ranked = suggest_next_templates(results, ["head", "eye"], exclude=["template"], limit=3)
    assert [s.image_id for s in ranked] == ["unsure", "eye-missing", "sure"]
    assert ranked[0].weakest == ("head", "eye") and ranked[1].weakest == ("eye",)
    assert abs(ranked[0].uncertainty - 0.65) < 1e-9


def test_structures_marked_absent_on_a_specimen_do_not_count():
    r = result("a", {"head": 0.9}, skipped={"eye": "absent"})
    value, weak = uncertainty_of(from_result(r), ["head", "eye"])
    assert abs(value - 0.1) < 1e-9 and weak == ()
    assert uncertainty_of(from_result(result("b", {}, skipped={"head": "absent"})), ["head"]) is None
