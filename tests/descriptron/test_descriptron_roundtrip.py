"""Both ways against Descriptron 2.8.2's own code (see tests/helpers/descriptron_harness.py):
its stores read by us and written back with every field; our stores (GUI Write back,
`propagate --write-to`) loaded by its Load Annotations, pixel for pixel, from the .json and
from the .rlejson."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal.engine.results import StructureResult, TargetResult
from descriptron_sam2pal.jobs.review import ReviewSession
from descriptron_sam2pal.imaging.masks import fill_holes
from descriptron_sam2pal.store import AnnotationStore
from tests.helpers.descriptron_harness import Descriptron


H, W = 80, 120


def photo(path: Path, height: int = H, width: int = W, orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(path.name)).integers(0, 255, (height, width, 3), dtype=np.uint8)
    if orientation is None:
        Image.fromarray(pixels).save(path)
    else:                                      # stored height x width, EXIF says "show rotated"
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)
    return path


def box(y0, y1, x0, x1, height=H, width=W):
    m = np.zeros((height, width), bool)
    m[y0:y1, x0:x1] = True
    return m


def holed(height=H, width=W):
    m = box(8, 60, 8, 60, height, width)
    m[20:40, 20:40] = False                    # 400 px hole: only the .rlejson keeps it
    return m


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def by_label(loaded) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for label, mask, _ in loaded:
        out[label] = out[label] | mask if label in out else mask
    return out


def newest(folder: Path, stem: str) -> Path:
    return max(folder.glob(f"{stem}_final_*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))


def descriptron_loads(image: Path, annotation: Path) -> tuple[dict, dict, Descriptron]:
    """Descriptron shows ``image`` and loads ``annotation`` and its .rlejson (Load Annotations):
    {label: mask} from each, as its decoder makes them."""
    d = Descriptron()
    d.open_image(image)
    from_json = by_label(d.load(annotation))
    d2 = Descriptron()
    d2.open_image(image)
    from_rle = by_label(d2.load(annotation.with_suffix(".rlejson")))
    return from_json, from_rle, d2


# ------------------------------------------------------------------ Descriptron -> us -> Descriptron

def test_one_photo_with_masks_a_line_keypoints_status_occluders_and_trash(tmp_path):
    tif = photo(tmp_path / "T_0055.tif")
    d = Descriptron()
    d.open_image(tif)
    d.add_mask("head", holed(), attributes={"colour": "brown"})
    d.add_mask("pin", box(0, 80, 110, 116))
    d.add_mask("Trash", box(70, 78, 0, 10))
    d.add_line("antenna", [[70, 10], [100, 40], [108, 70]], thickness=3, keypoints=3)
    d.set_keypoints([[5, 5], [20, 30], [0, 0]], visibility=[2, 2, -1])
    d.set_status("eye", "absent")
    d.ns["category_occlusion"].update({"pin": "*"})
    saved = d.save(at=1_700_000_000)
    original, original_rle = read(saved), read(saved.with_suffix(".rlejson"))
    # Descriptron's own save: two entries for the one photo (masks: path id; line/status: bare stem, ".jpg")
    assert [i["id"] for i in original["images"]] == [str(tif.with_suffix("")), "T_0055"]
    assert original["images"][1]["file_name"] == "T_0055.jpg"

    store = AnnotationStore.open(tmp_path)
    assert [r.file_name for r in store.images] == ["T_0055.tif"] and store.warnings == []
    img = store.images[0]
    assert img.path == tif and img.structure_status == {"eye": "absent"}
    kinds = sorted(a.kind for a in store.annotations_for(img))
    assert kinds == ["keypoints", "keypoints", "line", "mask", "mask"]  # + the line keypoints it derived
    masks = store.structure_masks(img)
    assert set(masks) == {"head", "pin"}                               # no Trash (dropped), no line
    np.testing.assert_array_equal(masks["head"], holed())              # the hole, from the .rlejson
    np.testing.assert_array_equal(masks["pin"], box(0, 80, 110, 116))
    assert store.category_entry("pin")["occluder"] is True
    assert store.image_by_file(tif) is img and store.image_by_file("T_0055.jpg") is img

    # our write-back: a new structure and a status; everything of the user's is kept, field for field
    pronotum = box(45, 70, 62, 100)
    store.add_structure(img, "pronotum", pronotum, attributes={"source": "sam2pal"})
    store.set_structure_status(img, "mandible", "unknown")
    new_json, new_rle = store.save()
    assert saved.exists() and read(saved) == original                  # the user's file untouched
    written, written_rle = read(new_json), read(new_rle)
    for before, after in ((original, written), (original_rle, written_rle)):
        after_by_id = {a["id"]: a for a in after["annotations"]}
        for ann in before["annotations"]:
            assert after_by_id[ann["id"]] == ann
        assert after["categories"][: len(before["categories"])] == before["categories"]
        assert [i["id"] for i in after["images"]] == [i["id"] for i in before["images"]]
        for i in after["images"]:                                      # both entries say the same
            assert i["structure_status"] == {"eye": "absent", "mandible": "unknown"}

    # ... and Descriptron loads it: every mask, the line, the keypoints, the statuses
    from_json, from_rle, shown = descriptron_loads(tif, new_json)
    assert set(from_json) == set(from_rle) == {"head", "pin", "antenna", "pronotum"}
    np.testing.assert_array_equal(from_rle["head"], holed())
    np.testing.assert_array_equal(from_json["head"], fill_holes(holed()))
    for source in (from_json, from_rle):
        np.testing.assert_array_equal(source["pronotum"], pronotum)
        np.testing.assert_array_equal(source["pin"], box(0, 80, 110, 116))
    line = next(m for _, _, m in shown.load(new_rle) if m.get("is_line"))
    assert line["line_points"] == [[70, 10], [100, 40], [108, 70]] and line["num_line_keypoints"] == 3
    assert shown.ns["point_coords"][:2] == [[5, 5], [20, 30]]
    assert shown.ns["structure_status"]["T_0055"] == {"eye": "absent", "mandible": "unknown"}


def test_exif_rotated_jpeg_round_trips_exactly(tmp_path):
    jpg = photo(tmp_path / "rot.jpg", 60, 100, orientation=6)     # shown 100 x 60 by viewers honouring EXIF
    d = Descriptron()
    assert d.open_image(jpg).shape[:2] == (60, 100)                # Descriptron: the raw frame
    theirs = box(5, 30, 10, 70, 60, 100)
    d.add_mask("head", theirs)
    saved = d.save(at=1_700_000_000)
    store = AnnotationStore.open(saved)
    img = store.images[0]
    assert (img.height, img.width) == (60, 100) and store.warnings == []
    assert store.check_image_sizes() == []
    np.testing.assert_array_equal(store.structure_masks(img)["head"], theirs)
    ours = holed(60, 100)
    ours[:, 70:] = False
    store.add_structure(img, "eye", ours)
    new_json, _ = store.save()
    from_json, from_rle, _ = descriptron_loads(jpg, new_json)
    np.testing.assert_array_equal(from_rle["eye"], ours)
    np.testing.assert_array_equal(from_json["eye"], fill_holes(ours))
    np.testing.assert_array_equal(from_rle["head"], theirs)


def test_two_folder_session_saves_newest_file_wins_and_is_said(tmp_path):
    a, b, c = (photo(tmp_path / f"{n}.png") for n in "ABC")
    # session 1 (monday): head on A and on B, saved with B on screen -> B_final_1000 holds A and B
    s1 = Descriptron()
    s1.start_folder([a, b, c])
    s1.goto(0)
    s1.add_mask("head", box(5, 20, 5, 20))
    s1.goto(1)
    s1.add_mask("head", box(30, 50, 30, 50))
    first = s1.save(at=1000)
    # session 2 (tuesday, new folder session): A redone and an eye on C, saved on C -> C_final_2000 (A, C)
    s2 = Descriptron()
    s2.start_folder([a, b, c])
    s2.goto(0)
    s2.add_mask("head", box(5, 25, 5, 25))
    s2.add_mask("eye", box(40, 50, 40, 50))
    s2.goto(2)
    s2.add_mask("eye", box(10, 20, 60, 80))
    second = s2.save(at=2000)
    assert {i["file_name"] for i in read(first)["images"]} >= {"A.png", "B.png"}
    assert {i["file_name"] for i in read(second)["images"]} >= {"A.png", "C.png"}

    store = AnnotationStore.open(tmp_path)
    ra, rb, rc = (store.image_by_file(p) for p in (a, b, c))
    assert ra.source == second and rb.source == first and rc.source == second
    np.testing.assert_array_equal(store.structure_masks(ra)["head"], box(5, 25, 5, 25))   # Tuesday's A
    assert set(store.structure_masks(ra)) == {"head", "eye"}
    assert any(n.startswith("A.png: in 2 annotation files") and second.name in n for n in store.notes)

    # write back on B (owned by Monday's file, which also holds Monday's A): the new file leaves A out
    store.add_structure(rb, "eye", box(60, 70, 10, 30))
    new_json, _ = store.save()
    assert [i["file_name"] for i in read(new_json)["images"] if i["file_name"] in ("A.png", "B.png")] == [
        "B.png"
    ]
    again = AnnotationStore.open(tmp_path)
    assert again.image_by_file(a).source == second                                        # still Tuesday's A
    assert set(again.structure_masks(again.image_by_file(b))) == {"head", "eye"}
    from_json, from_rle, _ = descriptron_loads(b, new_json)
    np.testing.assert_array_equal(from_rle["eye"], box(60, 70, 10, 30))
    np.testing.assert_array_equal(from_json["head"], box(30, 50, 30, 50))


# ------------------------------------------------------------------ ours -> Descriptron

def test_gui_write_back_is_loaded_by_descriptron_pixel_for_pixel(tmp_path):
    """The review panel's Write back (ReviewSession.write_back + save) into a Descriptron store."""
    png = photo(tmp_path / "S 01.png")
    jpg = photo(tmp_path / "rot.jpg", 60, 100, orientation=8)
    d = Descriptron()
    d.open_image(png)
    d.add_mask("head", box(2, 20, 2, 30))
    d.save(at=1_700_000_000)
    two_parts = box(5, 15, 70, 90) | box(50, 70, 90, 110)
    results = [
        TargetResult(None, str(png), H, W, structures={
            "scape": StructureResult("scape", True, holed(), 0.9, 0.99, 0.8),
            "eye": StructureResult("eye", True, two_parts, 0.8, 0.97, 0.7)}),
        TargetResult(None, str(jpg), 60, 100, structures={
            "scape": StructureResult("scape", True, holed(60, 100), 0.9, 0.99, 0.8)}),
    ]
    review = ReviewSession.from_results(results)
    for item in review.items:
        review.accept(item)
    store = AnnotationStore.open(tmp_path)
    summary = review.write_back(store)
    assert len(summary.written) == 3
    store.save()
    for image, expected in ((png, {"scape": holed(), "eye": two_parts, "head": box(2, 20, 2, 30)}),
                            (jpg, {"scape": holed(60, 100)})):
        from_json, from_rle, _ = descriptron_loads(image, newest(tmp_path, image.stem))
        assert set(from_json) == set(from_rle) == set(expected)
        for name, mask in expected.items():
            np.testing.assert_array_equal(from_rle[name], mask)
            np.testing.assert_array_equal(from_json[name], fill_holes(mask))


@pytest.mark.slow
def test_propagate_write_to_is_loaded_by_descriptron_pixel_for_pixel(tmp_path, present_checkpoint):
    from descriptron_sam2pal.cli import main
    from tests.helpers.synthetic import make_specimen

    images = tmp_path / "specimens"
    images.mkdir()
    for i, size in enumerate([(96, 120), (100, 90)]):
        Image.fromarray(make_specimen(10 + i, size=size)[0]).save(images / f"s{i}.png")
    rot = images / "s2.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(make_specimen(12, size=(80, 112))[0]).save(rot, exif=exif.tobytes(), quality=95)
    template, masks = make_specimen(0, size=(96, 120), structures=("head", "eye"))
    Image.fromarray(template).save(tmp_path / "t.png")
    colour = np.zeros(template.shape, np.uint8)
    colour[masks["head"]], colour[masks["eye"]] = (200, 0, 0), (0, 200, 0)
    Image.fromarray(colour).save(tmp_path / "t_mask.png")
    d = Descriptron()
    d.open_image(images / "s0.png")
    d.add_mask("pronotum", holed(96, 120))
    d.save(at=1_700_000_000)
    for png in images.glob("*_mask.png"):
        png.unlink()
    pred = tmp_path / "pred.json"
    assert (
        main(
            [
                "propagate",
                "--template-image",
                str(tmp_path / "t.png"),
                "--template-mask",
                str(tmp_path / "t_mask.png"),
                "--colors",
                "head=200,0,0;eye=0,200,0",
                "--images",
                str(images),
                "--image-size",
                "128",
                "--device",
                "cpu",
                "--checkpoint",
                str(present_checkpoint),
                "--out",
                str(pred),
                "--write-to",
                str(images),
            ]
        )
        == 0
    )
    store = AnnotationStore.open(images)
    for image in (images / "s0.png", images / "s1.png", rot):
        record = store.image_by_file(image)
        ours = store.structure_masks(record)
        assert {"head", "eye"} <= set(ours)
        assert (record.height, record.width) == np.asarray(Image.open(image)).shape[:2]   # the raw frame
        from_json, from_rle, _ = descriptron_loads(image, record.source)
        assert set(from_json) == set(from_rle) == set(ours)
        for name, mask in ours.items():
            np.testing.assert_array_equal(from_rle[name], mask)
            np.testing.assert_array_equal(from_json[name], fill_holes(mask))
        # the predictions file too (View Predictions reads its polygons)
        from_pred, _, _ = descriptron_loads(image, pred)
        for name in ("head", "eye"):
            np.testing.assert_array_equal(from_pred[name], fill_holes(ours[name]))
    np.testing.assert_array_equal(store.structure_masks(store.image_by_file(images / "s0.png"))["pronotum"],
                                  holed(96, 120))


def test_folder_session_autosaves_are_not_mistaken_for_stores(tmp_path):
    """Next/Prev in a Descriptron folder session writes `<image>_keypoints.json` and a crash
    snapshot: before the final save the folder still opens (no "several COCO files"), and after
    it those autosaves never hide the final save."""
    a, b, c = (photo(tmp_path / f"{n}.png") for n in "ABC")
    s = Descriptron()
    s.start_folder([a, b, c])
    s.goto(0)
    s.add_mask("head", box(5, 20, 5, 20))
    s.set_keypoints([[3, 3], [9, 9]])
    s.goto(1)
    s.set_keypoints([[4, 4], [8, 8]])
    s.add_mask("head", box(30, 50, 30, 50))
    s.goto(2)
    assert {p.name for p in tmp_path.glob("*.json")} == {"A_keypoints.json", "B_keypoints.json",
                                                         "_descriptron_session_masks.json"}
    store = AnnotationStore.open(tmp_path)                   # not refused; nothing saved yet
    assert [r.file_name for r in store.images] == ["A.png", "B.png", "C.png"] and store.warnings == []
    final = s.save(at=1000)
    s.goto(0)                                                # autosaves again, after the final save
    store = AnnotationStore.open(tmp_path)
    assert store.warnings == []
    for image, expected in ((a, box(5, 20, 5, 20)), (b, box(30, 50, 30, 50))):
        record = store.image_by_file(image)
        assert record.source == final
        np.testing.assert_array_equal(store.structure_masks(record)["head"], expected)
        assert any(r.kind == "keypoints" for r in store.annotations_for(record))
