"""Write back goes through the checks of ``propagate --write-to`` (``jobs.store_target``): a
project that holds none of the reviewed photos, a predictions file of ours opened as the project,
and one photo's ``_final_`` save while outlines of other photos were accepted each get the
refusal in a dialog of the real workspace, before the question, and nothing is written; a normal
write-back into a per-image folder adds a new ``_final_`` file that Descriptron's own loader reads
with the user's outline kept. Real widgets (offscreen), real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QMessageBox

from descriptron_sam2pal.engine.predictions import write_predictions
from descriptron_sam2pal.engine.results import StructureResult, TargetResult
from descriptron_sam2pal.gui.review_panel import ReviewPanel
from descriptron_sam2pal.jobs.review import ACCEPTED
from tests.helpers.descriptron_harness import Descriptron
from tests.helpers.review_results import make_results, write_project

QUESTION = "Write back to Descriptron"


def snapshot(*folders: Path) -> dict:
    return {p: p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def review_panel(qtbot, window, results) -> ReviewPanel:
    panel = ReviewPanel(window)
    window.add_dock_panel("Review", panel)
    panel.load_results(results)
    qtbot.waitUntil(lambda: not panel.image_loading(), timeout=20000)
    return panel


def accept_first(qtbot, panel, n: int) -> list:
    """Accept the first ``n`` rows with the A key, as a reviewer does."""
    panel.table.setFocus()
    accepted = []
    for _ in range(n):
        accepted.append(panel.rows.current_item())
        qtbot.keyClick(panel.table, Qt.Key_A)
    assert [i.state for i in accepted] == [ACCEPTED] * n
    return accepted


def close(qtbot, panel) -> None:
    panel.set_session(None)
    qtbot.waitUntil(lambda: not panel.image_loading(), timeout=20000)


def test_a_project_holding_none_of_the_photos_is_refused_naming_both_folders(
    qtbot, window, messages, tmp_path
):
    specimens = write_project(tmp_path / "specimens").parent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rng = np.random.default_rng(1)
    for name in ("e0.png", "e1.png"):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(elsewhere / name)
    assert window.open_path(elsewhere)
    panel = review_panel(qtbot, window, make_results(specimens))
    accepted = accept_first(qtbot, panel, 3)  # beetle_03 eye (absent), ant_02 head, ant_01 eye
    before = snapshot(specimens, elsewhere)
    messages.seen.clear()
    assert panel.write_button.isEnabled()
    qtbot.mouseClick(panel.write_button, Qt.LeftButton)

    assert [title for title, _ in messages.seen] == ["Write back"]  # the refusal; no question asked
    text = messages.seen[0][1]
    assert f"the open project {elsewhere} holds none of the 3 photo(s) with accepted outlines" in text
    assert f"its photos are in {elsewhere}, these are in {specimens}" in text
    assert "Nothing was written" in text and "Open the project of these photos" in text
    assert not any(i.written for i in accepted) and not window.store.is_dirty and not window.is_modified()
    assert snapshot(specimens, elsewhere) == before
    close(qtbot, panel)


def test_a_predictions_file_of_ours_opened_as_the_project_is_refused(qtbot, window, messages, tmp_path):
    specimens = write_project(tmp_path / "specimens").parent
    results = make_results(specimens)
    predictions = tmp_path / "run" / "predictions.json"
    write_predictions(results, predictions)
    assert window.open_path(predictions)  # a user opening our output as if it were the project
    panel = review_panel(qtbot, window, results)
    accept_first(qtbot, panel, 2)
    before = snapshot(specimens, predictions.parent)
    messages.seen.clear()
    panel.write_back()
    assert [title for title, _ in messages.seen] == ["Write back"]
    assert f"the open project {predictions} is a predictions file written by sam2pal" in messages.seen[0][1]
    assert snapshot(specimens, predictions.parent) == before and not window.is_modified()
    close(qtbot, panel)


@pytest.fixture
def per_image(tmp_path):
    """Three photos, each saved once in Descriptron (``_final_`` files) with an outline and a line."""
    folder = tmp_path / "specimens"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"s{i}.png")
        d = Descriptron()
        d.open_image(folder / f"s{i}.png")
        outline = np.zeros((48, 64), bool)
        outline[5:20, 5 + 5 * i : 40] = True
        d.add_mask("pronotum", outline)
        d.add_line("length", [(2, 40), (60, 40)])
        d.save(at=1_700_000_000 + i)
    for png in folder.glob("*_mask.png"):
        png.unlink()
    return folder


def head_results(folder: Path, scores: dict[str, float]) -> list[TargetResult]:
    out = []
    for name, score in scores.items():
        head = np.zeros((48, 64), bool)
        head[25:45, 10:50] = True
        out.append(
            TargetResult(
                None,
                str(folder / name),
                48,
                64,
                {"head": StructureResult("head", True, head, score, 0.9, 0.8)},
            )
        )
    return out


def test_one_photos_final_file_with_other_photos_accepted_is_refused(qtbot, window, messages, per_image):
    own_file = sorted(per_image.glob("s1_final_*.json"))[0]
    assert window.open_path(own_file)
    panel = review_panel(
        qtbot, window, head_results(per_image, {"s0.png": 0.2, "s1.png": 0.3, "s2.png": 0.4})
    )
    accept_first(qtbot, panel, 2)  # s0 and s1: s0 is not in that file
    before = snapshot(per_image)
    messages.seen.clear()
    panel.write_back()
    assert [title for title, _ in messages.seen] == ["Write back"]
    text = messages.seen[0][1]
    assert (
        f"the open project {own_file} is one Descriptron save; it does not hold 1 of the photos (s0.png)"
        in text
    )
    assert f"Open the folder instead ({per_image})" in text
    assert snapshot(per_image) == before and not window.is_modified()
    close(qtbot, panel)


def test_a_normal_write_back_adds_a_final_file_descriptron_reads(qtbot, window, messages, per_image):
    assert window.open_path(per_image)
    panel = review_panel(
        qtbot, window, head_results(per_image, {"s0.png": 0.2, "s1.png": 0.3, "s2.png": 0.4})
    )
    accept_first(qtbot, panel, 1)  # s0's head
    finals = set(per_image.glob("*_final_*.json"))
    messages.seen.clear()
    messages.answers = [QMessageBox.Save]  # "Write and save"
    with qtbot.waitSignal(panel.written_back) as sig:
        qtbot.mouseClick(panel.write_button, Qt.LeftButton)
    assert [title for title, _ in messages.seen] == [QUESTION]
    assert len(sig.args[0].written) == 1 and not window.is_modified()
    new = sorted(set(per_image.glob("*_final_*.json")) - finals)
    assert [p.name.split("_final_")[0] for p in new] == ["s0"]  # one new file, for s0 only

    d = Descriptron()
    d.open_image(per_image / "s0.png")
    loaded = {name: mask for name, mask, _ in d.load(new[0])}
    expected = np.zeros((48, 64), bool)
    expected[25:45, 10:50] = True
    assert set(loaded) >= {"head", "pronotum"}  # the user's outline is still there
    assert np.array_equal(loaded["head"], expected)
    close(qtbot, panel)


def test_write_back_in_a_folder_session_project_joins_the_session_file_and_says_which(
    qtbot, window, messages, tmp_path
):
    folder = tmp_path / "specimens"
    folder.mkdir()
    rng = np.random.default_rng(3)
    photos = []
    for i in range(3):
        photos.append(folder / f"s{i}.png")
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photos[-1])
    d = Descriptron()
    d.start_folder(photos)
    for i in (0, 1):  # a folder session: s0 and s1 outlined, s2 never opened
        d.visit(i)
        outline = np.zeros((48, 64), bool)
        outline[5:20, 5:40] = True
        d.add_mask("pronotum", outline)
    session = d.save(at=1_700_000_000)
    for png in folder.glob("*_mask.png"):
        png.unlink()
    assert window.open_path(folder)
    panel = review_panel(qtbot, window, head_results(folder, {"s2.png": 0.2}))
    accept_first(qtbot, panel, 1)
    messages.seen.clear()
    messages.answers = [QMessageBox.Save]
    with qtbot.waitSignal(panel.written_back):
        qtbot.mouseClick(panel.write_button, Qt.LeftButton)
    new = sorted(set(folder.glob("*_final_*.json")) - {session})
    assert [p.name.split("_final_")[0] for p in new] == ["s1"], (
        "a new version of the session file (named as it)"
    )
    assert (
        f"In Descriptron's folder session: Load Annotations {new[0].name}."
        in window.statusBar().currentMessage()
    )
    shown = Descriptron()
    shown.start_folder(photos, source=new[0])
    loaded = {name for name, _, _ in shown.visit(2)}
    assert loaded == {"head"}
    close(qtbot, panel)
