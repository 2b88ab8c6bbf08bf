from pathlib import Path

from descriptron_sam2pal.store import find_image_files, normalized_stem
from descriptron_sam2pal.store.stem import companion_path, final_name, parse_final_name
from tests.helpers.store_files import write_image


def test_normalized_stem_like_descriptron():
    assert normalized_stem("Ant 01.JPG") == "ant_01"
    assert normalized_stem("/data/x/Ant 01.jpeg") == "ant_01"
    assert normalized_stem(r"C:\data\Ant 01.TIF") == "ant_01"
    # no real image extension: nothing is stripped (dots are not cut)
    assert normalized_stem("A.FHG149_x") == "a.fhg149_x"
    assert normalized_stem("A.FHG149_x.png") == "a.fhg149_x"
    assert normalized_stem("specimen.v2") == "specimen.v2"
    assert normalized_stem(Path("/a/b/c d.webp")) == "c_d"


def test_final_names():
    assert parse_final_name("/d/Ant 01_final_1714000000.json") == ("/d/Ant 01", 1714000000, "json")
    assert parse_final_name("A.FHG149_x_final_12.rlejson") == ("A.FHG149_x", 12, "rlejson")
    assert parse_final_name("ant_final_12.json.bak-20240101-000000") is None
    assert parse_final_name("session.json") is None
    assert final_name("/d/A.FHG149_x", 5) == Path("/d/A.FHG149_x_final_5.json")
    assert companion_path("/d/x_final_5.json") == Path("/d/x_final_5.rlejson")
    assert companion_path("/d/x_final_5.rlejson") == Path("/d/x_final_5.json")


def test_find_image_files_skips_descriptron_mask_pngs(tmp_path):
    for name in ["Ant 01.jpg", "b.PNG", "c.tif", "notes.txt", ".hidden.png"]:
        if name.endswith("txt"):
            (tmp_path / name).write_text("x")
        else:
            write_image(tmp_path / name)
    write_image(tmp_path / "Ant 01_scape_1_mask.png")       # Descriptron's mask PNG: skipped
    write_image(tmp_path / "b_left_eye_2_mask.png")          # label with underscore: skipped
    write_image(tmp_path / "gel_mask.png")                   # a photo that ends in _mask: kept
    names = [p.name for p in find_image_files(tmp_path)]
    assert names == ["Ant 01.jpg", "b.PNG", "c.tif", "gel_mask.png"]
