"""Hand-drawing geometry: polygons, brush strokes, vertex edits, holes, SAM2 prompts from an outline."""

import numpy as np

from descriptron_sam2pal.imaging.drawing import (delete_vertex, fill_mask_holes, insert_vertex,
                                                 mask_to_vertex_polygons, move_vertex, nearest_edge,
                                                 nearest_vertex, paint, polygon_to_mask, refine_prompt,
                                                 stroke_mask, vertex_polygons_to_mask)


def test_polygon_covers_the_pixels_inside_its_edges():
    mask = polygon_to_mask([(10, 10), (30, 10), (30, 20), (10, 20)], (40, 50))
    assert mask[10:20, 10:30].all()
    assert 200 <= mask.sum() <= 231  # at most the pixels the edges run along are added
    assert not mask[:9].any() and not mask[:, :9].any() and not mask[22:].any()
    assert not polygon_to_mask([(1, 1), (5, 5)], (10, 10)).any()  # two points are no polygon


def test_polygon_outside_the_image_is_clipped():
    mask = polygon_to_mask([(-10, -10), (5, -10), (5, 5), (-10, 5)], (20, 20))
    assert mask[:5, :5].all() and mask.sum() <= 36 and not mask[7:].any()


def test_brush_stroke_is_a_thick_line_and_the_eraser_removes_it():
    shape = (50, 80)
    stroke = stroke_mask([(10.5, 25.5), (60.5, 25.5)], 3, shape)
    assert stroke[25, 10:61].all()
    assert stroke[22:29, 30].all() and not stroke[18, 30] and not stroke[32, 30]
    base = np.ones(shape, bool)
    erased = paint(base, stroke, erase=True)
    assert not erased[25, 30] and erased[10, 30]
    assert paint(np.zeros(shape, bool), stroke).sum() == stroke.sum()


def test_fill_holes_fills_an_enclosed_gap():
    mask = np.zeros((30, 30), bool)
    mask[5:25, 5:25] = True
    mask[12:16, 12:16] = False
    assert fill_mask_holes(mask)[12:16, 12:16].all()


def test_vertex_round_trip_and_edits():
    mask = np.zeros((40, 60), bool)
    mask[10:30, 20:50] = True
    polys = mask_to_vertex_polygons(mask)
    assert len(polys) == 1 and len(polys[0]) == 4
    again = vertex_polygons_to_mask(polys, mask.shape)
    assert (again == mask).all()
    corner = nearest_vertex(polys, 50.2, 30.3, tolerance=2)
    assert corner is not None and polys[0][corner[1]] == (49.5, 29.5)
    assert nearest_vertex(polys, 35, 20, tolerance=2) is None
    moved = vertex_polygons_to_mask(move_vertex(polys, corner, 55, 35), mask.shape)
    assert moved.sum() > mask.sum() and moved[32, 52]
    edge = nearest_edge(polys, 35, 10.9, tolerance=2)  # on the top edge
    assert edge is not None
    dented = insert_vertex(polys, edge, 35, 20)
    assert len(dented[0]) == 5
    dented_mask = vertex_polygons_to_mask(dented, mask.shape)
    assert not dented_mask[12, 35] and dented_mask[25, 35]
    triangle = delete_vertex(polys, corner)
    assert len(triangle[0]) == 3
    assert delete_vertex(triangle, (0, 0)) == []  # fewer than 3 vertices: the polygon is gone


def test_refine_prompt_box_and_interior_points():
    mask = np.zeros((60, 80), bool)
    mask[10:50, 20:70] = True
    box, points = refine_prompt(mask, 3)
    assert box == (20.0, 10.0, 70.0, 50.0)
    assert 1 <= len(points) <= 3
    assert all(mask[int(y), int(x)] for x, y in points)
    assert refine_prompt(np.zeros((5, 5), bool)) == (None, [])


def test_vertex_polygons_skip_specks_and_scale_with_the_image():
    from descriptron_sam2pal.imaging.drawing import edit_scale

    mask = np.zeros((400, 400), bool)
    mask[100:300, 100:300] = True
    mask[10:12, 10:12] = True  # a speck
    tolerance, min_area = edit_scale(mask.shape)
    assert tolerance == 400 / 300 and min_area == (400 / 60) ** 2
    polys = mask_to_vertex_polygons(mask, tolerance, 120, min_area)
    assert len(polys) == 1 and len(polys[0]) == 4
    assert len(mask_to_vertex_polygons(mask)) == 2
    tolerance, min_area = edit_scale((3000, 4000))  # a 12-megapixel photo
    assert round(tolerance, 1) == 13.3 and round(min_area) == 4444
