"""Issue 12: more bad input, each with a message that says what to do (never a traceback)."""

import pytest

from descriptron_sam2pal.store import AnnotationStore, StoreError
from tests.helpers.store_files import H, W, box_mask, write_image, write_json

from tests.store.test_store_bad_input import GOOD, ann, coco, only_warning


def test_zero_area_polygons(tmp_path):
    write_image(tmp_path / "a.png")
    line = [[5.0, 5.0, 20.0, 5.0, 30.0, 5.0]]                 # three points on one line
    two_points = [[5.0, 5.0, 9.0, 9.0]]
    partly = GOOD + [[40.0, 30.0, 45.0, 30.0, 50.0, 30.0]]
    path = write_json(tmp_path / "s.json", coco([ann(1, line), ann(2, two_points, category_id=2),
                                                 ann(3, partly, category_id=3)], categories=[
        {"id": 1, "name": "scape"}, {"id": 2, "name": "eye"}, {"id": 3, "name": "head"}]))
    store = AnnotationStore.open(path)
    only_warning(store, "annotation id 1", "zero area", "redraw it in Descriptron")
    only_warning(store, "annotation id 2", "zero area")
    only_warning(store, "annotation id 3", "polygon(s) #1 have zero area")
    masks = store.structure_masks(1)
    assert set(masks) == {"head"} and masks["head"][box_mask(5, 10, 5, 10)].all()


def test_file_name_with_a_folder_part(tmp_path):
    write_image(tmp_path / "imgs" / "a.png")
    write_image(tmp_path / "b.png")
    path = write_json(tmp_path / "s.json", coco([ann(1, GOOD), ann(2, GOOD, image_id=2)], images=[
        {"id": 1, "file_name": "imgs/a.png", "height": H, "width": W},
        {"id": 2, "file_name": "C:\\\\Users\\\\me\\\\photos\\\\b.png", "height": H, "width": W},
        {"id": 3, "file_name": "elsewhere/c.png", "height": H, "width": W}]))
    store = AnnotationStore.open(path)
    assert store.image(1).path == tmp_path / "imgs" / "a.png"  # in the folder it names
    assert store.image(2).path == tmp_path / "b.png"  # Windows path: by name, next to the file
    only_warning(store, "image id 3", "not found", "Descriptron uses the name 'c.png' alone")
    assert store.image_by_file("a.png") is store.image(1)
    assert set(store.structure_masks(2)) == {"scape"}


def test_labelme_file_in_a_templates_folder(tmp_path):
    labelme = {"version": "5.4.1", "shapes": [{"label": "head", "points": [[1, 1], [9, 1], [9, 9]],
                                               "shape_type": "polygon"}],
               "imagePath": "a.png", "imageData": None, "imageHeight": H, "imageWidth": W}
    write_json(tmp_path / "a.json", labelme)
    with pytest.raises(StoreError, match=r"a\.json: this is a labelme file.*Convert it to COCO"):
        AnnotationStore.open(tmp_path / "a.json")
    with pytest.raises(StoreError, match="labelme file"):
        AnnotationStore.open(tmp_path)                                    # only labelme, no images
    write_image(tmp_path / "a.png")
    store = AnnotationStore.open(tmp_path)
    only_warning(store, "a.json: this is a labelme file", "--template-mask")
    assert store.structure_masks(store.images[0]) == {}
