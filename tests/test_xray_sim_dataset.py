"""`xray-dataset` command: 16-bit PNGs, COCO-style annotations, previews, argument errors."""

import json

import cv2
import numpy as np
import pytest

from humanoid_inspection.xray import dataset_cli
from humanoid_inspection.xray.coco import decode_rle, encode_rle


def test_rle_round_trip():
    rng = np.random.default_rng(0)
    crop = rng.random((7, 5)) > 0.4
    rle = encode_rle(crop, (10, 3, 15, 10), (20, 30))
    full = np.zeros((20, 30), bool)
    full[3:10, 10:15] = crop
    assert np.array_equal(decode_rle(rle), full)
    assert sum(rle['counts']) == 600
    assert decode_rle(encode_rle(np.zeros((2, 2), bool), (0, 0, 2, 2), (4, 4))).sum() == 0
    with pytest.raises(ValueError, match='RLE counts'):
        decode_rle({'size': [4, 4], 'counts': [3, 2]})


def test_dataset_command_writes_images_annotations_and_previews(tmp_path):
    out = tmp_path / 'set'
    argv = ['--out', str(out), '--n', '3', '--seed', '5', '--size', '256',
            '--defect-probability', '1.0', '--previews', '1']
    assert dataset_cli.main(argv) == 0
    data = json.loads((out / 'annotations.json').read_text())
    assert [c['name'] for c in data['categories']] == ['gas_porosity', 'shrinkage', 'crack',
                                                       'inclusion']
    assert len(data['images']) == 3 and data['annotations']
    for image in data['images']:
        pixels = cv2.imread(str(out / image['file_name']), cv2.IMREAD_UNCHANGED)
        assert pixels.dtype == np.uint16 and pixels.shape == (256, 256)
        assert image['part_family'] in ('housing', 'bracket', 'hub')
    for annotation in data['annotations']:
        mask = decode_rle(annotation['segmentation'])
        ys, xs = np.nonzero(mask)
        x, y, w, h = annotation['bbox']
        assert (xs.min(), ys.min(), xs.max() + 1 - x, ys.max() + 1 - y) == (x, y, w, h)
        assert annotation['area'] == mask.sum()
        assert annotation['size_mm'] > 0 and annotation['area_mm2'] > 0
        assert annotation['detectability'] > 0
    assert (out / 'previews' / '000000.png').exists()
    assert not (out / 'previews' / '000001.png').exists()
    # same seed, same bytes
    again = tmp_path / 'again'
    dataset_cli.main(['--out', str(again)] + argv[2:])
    assert (again / 'images' / '000002.png').read_bytes() == \
        (out / 'images' / '000002.png').read_bytes()


@pytest.mark.parametrize('argv', [
    ['--n', '0'], ['--families', 'gearbox'], ['--kinds', 'blowhole'],
    ['--defect-probability', '1.5'], ['--size', '8'],
])
def test_bad_arguments_exit_with_a_usage_error(tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        dataset_cli.main(['--out', str(tmp_path)] + argv)
    assert exit_info.value.code == 2
    assert 'error' in capsys.readouterr().err
