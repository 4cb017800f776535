"""The region a radiograph's beam did not reach (exposure.py): found where it is (an image
intensifier's dark surround), nowhere else (thick material inside the field, a dark patch
inside it, a thin strip at the border), and detections at its edge dropped where asked."""

import numpy as np
import pytest

from humanoid_inspection.xray.detector import DetectedDefect
from humanoid_inspection.xray.exposure import EDGE_MARGIN_PX, drop_unexposed, unexposed_mask
from humanoid_inspection.xray.pipeline import inspect_radiograph
from test_xray_detector import make_test_radiograph


def _intensifier_view(image, radius_fraction=0.47, surround=12):
    """`image` inside a circular field, a dark, noisy surround outside it (8-bit)."""
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w]
    outside = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 > (radius_fraction * min(h, w)) ** 2
    rng = np.random.default_rng(3)
    out = image.copy()
    out[outside] = np.clip(surround + rng.normal(0, 1.5, outside.sum()), 0, 255)
    return out, outside


def _defect(box):
    x0, y0, x1, y1 = box
    return DetectedDefect('gas_porosity', 0.9, box, np.ones((y1 - y0, x1 - x0), bool), 1.0,
                          0.5, -0.1)


def test_the_dark_surround_of_an_intensifier_field_is_unexposed():
    plate, _ = make_test_radiograph((300, 400), seed=4, dtype=np.uint8)
    view, outside = _intensifier_view(plate)
    mask, k = unexposed_mask(view)
    assert k == 1 and mask.shape == view.shape
    # the corners are, the field is not: the plate's own hole, rib and walls stay exposed
    assert mask[outside].mean() > 0.95
    assert not mask[~outside].any()


def test_nothing_is_unexposed_without_a_dark_surround():
    plate, _ = make_test_radiograph((300, 400), seed=5, dtype=np.uint16)
    assert not unexposed_mask(plate)[0].any()
    # a thick section inside the field, darker than the threshold, touches no border
    thick = plate.copy()
    thick[60:240, 120:300] = thick[60:240, 120:300] // 20
    assert not unexposed_mask(thick)[0].any()
    # a dark patch inside the field (a lead marker, a thick insert) touches no border
    marked = plate.copy()
    marked[100:180, 150:260] = 0
    assert not unexposed_mask(marked)[0].any()
    # a thin dark strip along the border is below the area an unexposed field covers
    strip = plate.copy()
    strip[:, -1] = 0
    assert not unexposed_mask(strip)[0].any()
    assert not unexposed_mask(np.full((64, 64), 7, np.uint8))[0].any()


def test_detections_at_the_field_edge_are_dropped_and_the_others_kept():
    plate, _ = make_test_radiograph((300, 400), seed=6, dtype=np.uint8)
    view, outside = _intensifier_view(plate)
    inside = _defect((190, 140, 200, 150))                 # the middle of the field
    on_edge = _defect((40, 10, 52, 22))                    # straddles the circle
    near_edge = _defect((61, 149, 66, 154))                # a few px inside it
    far = _defect((120, 140, 126, 146))
    assert outside[10:22, 40:52].any() and not outside[149:154, 61:66].any()
    assert not outside[149 - EDGE_MARGIN_PX:154 + EDGE_MARGIN_PX,
                       61 - EDGE_MARGIN_PX:66 + EDGE_MARGIN_PX].all()
    kept = drop_unexposed([inside, on_edge, near_edge, far], view)
    assert kept == [inside, far]
    # the same detections on the plate without the surround: all kept
    assert drop_unexposed([inside, on_edge, near_edge, far], plate) == \
        [inside, on_edge, near_edge, far]


@pytest.mark.parametrize('size', [(2048, 2048), (572, 768)])
def test_the_mask_is_found_on_a_coarse_grid_of_large_images(size):
    plate, _ = make_test_radiograph(size, seed=7, dtype=np.uint8)
    view, outside = _intensifier_view(plate)
    mask, k = unexposed_mask(view)
    assert k == min(size) // 256 and mask.shape == view[::k, ::k].shape
    assert mask.mean() == pytest.approx(outside[::k, ::k].mean(), abs=0.02)
    # a box in the corner is dropped at any grid step, one in the middle kept
    h, w = size
    corner, middle = _defect((0, 0, 8, 8)), _defect((w // 2, h // 2, w // 2 + 8, h // 2 + 8))
    assert drop_unexposed([corner, middle], view) == [middle]


def test_the_pipeline_drops_the_field_edge_only_where_asked():
    plate, _ = make_test_radiograph((256, 256), seed=15, voids=[(100, 120, 12)],
                                    dtype=np.uint8)
    view, _ = _intensifier_view(plate, radius_fraction=0.5)
    assert unexposed_mask(view)[0].any()
    masked = inspect_radiograph(view, 0.1, 1.0, 'housing', detector='cnn',
                                mask_unexposed=True)
    plain = inspect_radiograph(view, 0.1, 1.0, 'housing', detector='cnn')
    # the void is found either way; with the mask nothing is left at the field's edge, and
    # it drops exactly what drop_unexposed drops
    for outcome in (masked, plain):
        assert any(d.box_xyxy[0] <= 100 <= d.box_xyxy[2] and
                   d.box_xyxy[1] <= 120 <= d.box_xyxy[3] for d in outcome.defects)
    assert drop_unexposed(masked.defects, view) == masked.defects
    assert [d.box_xyxy for d in masked.defects] == \
        [d.box_xyxy for d in drop_unexposed(plain.defects, view)]
    # the field's edge is what the detector takes for defects without it (17 boxes here)
    assert len(masked.defects) == 1 and len(plain.defects) >= 5


def test_the_cell_radiographs_have_no_unexposed_region():
    from humanoid_inspection.xray.evaluate_cli import synthetic_items
    # their thickest walls are darker than the threshold, but lie inside the field
    for item in synthetic_items(6, 100000, 512):
        assert not unexposed_mask(item['image'])[0].any()


def test_inspect_cli_masks_the_unexposed_surround_when_asked(tmp_path):
    import json

    import cv2

    from humanoid_inspection import cli
    plate, _ = make_test_radiograph((256, 256), seed=15, voids=[(100, 120, 12)],
                                    dtype=np.uint8)
    view, _ = _intensifier_view(plate, radius_fraction=0.5)
    cv2.imwrite(str(tmp_path / 'intensifier.png'), view)
    found = {}
    for flag in ([], ['--mask-unexposed']):
        out = tmp_path / f'report{len(flag)}'
        assert cli.main(['inspect', str(tmp_path / 'intensifier.png'), '--out', str(out),
                         '--detector', 'cnn', '--pixel-pitch-mm', '0.1', '--no-overlays',
                         *flag]) == 0
        (entry,) = json.loads((out / 'results.json').read_text())['results']
        found[bool(flag)] = len(entry['defects'])
    assert found[True] == 1 and found[False] > found[True]
