"""Descriptron's edits win: Descriptron's own code loads what `propagate --write-to` wrote, a
person corrects one outline and marks a structure absent, Descriptron saves; the next
`--write-to` keeps the correction, removes the prediction of the absent structure and
replaces only the untouched prediction. Real CLI, real sam2 code (mini model)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from descriptron_sam2pal.store import AnnotationStore
from descriptron_sam2pal.store.provenance import FINGERPRINT, is_edited, is_prediction
from descriptron_sam2pal.store.stem import parse_final_name

from tests.helpers.descriptron_harness import Descriptron

from tests.helpers.synthetic import make_specimen, save_colour_template
from tests.helpers.cli_runs import propagate_argv, run_cli as run

COLORS = "head=200,0,0;eye=0,200,0;scape=0,0,200"
TEMPLATE_COLOURS = {"head": (200, 0, 0), "eye": (0, 200, 0), "scape": (0, 0, 200)}


def newest(folder: Path, stem: str, ext: str = "json") -> Path:
    files = [p for p in folder.glob(f"{stem}_final_*.{ext}")]
    return max(files, key=lambda p: parse_final_name(p)[1])


def test_a_correction_and_an_absent_mark_made_in_descriptron_survive_the_next_write_to(
    tmp_path, present_checkpoint, capsys
):
    specimens = tmp_path / "specimens"
    specimens.mkdir()
    for i in range(2):
        Image.fromarray(make_specimen(10 + i, size=(96, 120))[0]).save(specimens / f"s{i}.png")
    template, template_mask, _ = save_colour_template(tmp_path, TEMPLATE_COLOURS)
    argv = propagate_argv(
        template, template_mask, COLORS, specimens, present_checkpoint, tmp_path / "pred.json",
        "--no-confidence", "--write-to", specimens,
    )  # fmt: skip

    code, out, err = run(capsys, *argv)
    assert code == 0, err
    ours = AnnotationStore.open(specimens)
    s0 = ours.image_by_file(specimens / "s0.png")
    first = {a.category: a for a in ours.annotations_for(s0.id) if a.kind == "mask"}
    assert set(first) == {"head", "eye", "scape"}, "the biased model predicts every structure"
    assert all(FINGERPRINT in a.raw["attributes"] and is_prediction(a) for a in first.values())

    # The person, in Descriptron: load our file, erase part of the head, keep the eye as it is,
    # mark the scape absent, save (Descriptron's own functions for each step).
    d = Descriptron(clock_start=int(time.time()) + 100)
    d.open_image(specimens / "s0.png")
    loaded = d.load(newest(specimens, "s0", "rlejson"))
    ns = d.ns
    for i, (label, mask, data) in enumerate(loaded):
        if label == "head":
            edited = mask.copy()
            rows = np.flatnonzero(edited.any(axis=1))
            edited[rows[0] : rows[0] + max(2, len(rows) // 3)] = False  # the person's correction
            data["segmentation"] = edited.astype(np.uint8)
            corrected = edited
        ns["current_mask_index"] = i
        ns["save_mask_and_contour_via2"]()  # re-applies the label, as Descriptron does
    d.set_status("scape", "absent")
    saved = d.save()
    for png in specimens.glob("*_mask.png"):
        png.unlink()
    theirs = AnnotationStore.open(specimens)
    assert theirs.image_by_file(specimens / "s0.png").source == saved
    head = next(a for a in theirs.annotations_for(theirs.images[0].id) if a.category == "head")
    assert head.raw["attributes"]["source"] == "sam2pal"  # Descriptron kept our attributes ...
    assert is_edited(head) and not is_prediction(head)  # ... but the outline is the person's now

    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "changed by a person in Descriptron since it was predicted (theirs now, kept)" in out
    assert 'scape: marked "absent" since it was predicted; the unreviewed prediction was removed' in out
    after = AnnotationStore.open(specimens)
    s0 = after.image_by_file(specimens / "s0.png")
    final = {a.category: a for a in after.annotations_for(s0.id) if a.kind == "mask"}
    assert set(final) == {"head", "eye"}  # the scape prediction is gone
    assert np.array_equal(final["head"].mask(), corrected)  # the correction is kept
    assert is_prediction(final["eye"]) and final["eye"].id != first["eye"].id  # the untouched one was redone
    assert s0.structure_status == {"scape": "absent"}

    # and Descriptron shows exactly that
    shown = Descriptron(clock_start=int(time.time()) + 200)
    shown.open_image(specimens / "s0.png")
    labels = {label: mask for label, mask, _ in shown.load(newest(specimens, "s0", "rlejson"))}
    assert sorted(labels) == ["eye", "head"] and np.array_equal(labels["head"], corrected)
