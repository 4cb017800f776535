"""The one-call pipeline, the `inspect` CLI (temporary folder, bad files) and `xray-eval`."""

import json

import cv2
import numpy as np
import pytest

from humanoid_inspection import cli
from humanoid_inspection.xray.detector import InspectionCancelled
from humanoid_inspection.xray.pipeline import inspect_radiograph, render_overlay
from test_xray_detector import make_test_radiograph


def test_pipeline_rejects_a_crack_with_reasons_and_timings():
    image, _ = make_test_radiograph(seed=11, cracks=[(60, 120, 110, 150, 2, 3.0)])
    out = inspect_radiograph(image, 0.1, 1.0, 'housing', detector='classical')
    assert out.verdict == 'REJECT'
    assert any('crack' in r and 'not permitted' in r for r in out.reasons)
    assert list(out.stage_times_s) == ['validate', 'detect', 'grade']
    assert out.total_time_s > 0 and out.detector == 'classical'
    json.dumps(out.to_dict())
    rgb = render_overlay(image, out)
    assert rgb.shape == image.shape + (3,) and rgb.dtype == np.uint8


def test_pipeline_accepts_a_clean_part():
    image, _ = make_test_radiograph(seed=12)
    out = inspect_radiograph(image, 0.1, 1.0, 'hub', detector='classical')
    assert out.verdict == 'ACCEPT' and out.defects == []


@pytest.mark.parametrize('image, reason', [
    (np.full((64, 64), 1234, np.uint16), 'constant'),
    (np.full((64, 64), 65535, np.uint16), 'constant'),
    (np.where(np.arange(64 * 64).reshape(64, 64) % 5, 65535, 100).astype(np.uint16),
     'saturated'),
])
def test_pipeline_sends_unusable_images_to_review(image, reason):
    out = inspect_radiograph(image, 0.1, 1.0, 'housing', detector='classical')
    assert out.verdict == 'REVIEW' and reason in out.reasons[0]


def test_pipeline_refuses_bad_input():
    image, _ = make_test_radiograph(seed=13)
    with pytest.raises(ValueError, match='unknown part family'):
        inspect_radiograph(image, 0.1, 1.0, 'engine')
    with pytest.raises(ValueError, match='pixel_pitch_mm'):
        inspect_radiograph(image, float('nan'), 1.0, 'housing')
    with pytest.raises(ValueError, match='unknown detector'):
        inspect_radiograph(image, 0.1, 1.0, 'housing', detector='yolo')
    with pytest.raises(ValueError, match='NaN'):
        inspect_radiograph(np.full((32, 32), np.nan, np.float32), 0.1, 1.0, 'housing')


def test_pipeline_cancel_and_progress():
    image, _ = make_test_radiograph(seed=14)
    stages = []
    inspect_radiograph(image, 0.1, 1.0, 'housing', detector='classical',
                       progress=lambda s, f: stages.append(s))
    assert stages == ['validate', 'detect', 'grade']
    calls = []

    def cancel_after_validate():
        calls.append(1)
        return len(calls) > 1
    with pytest.raises(InspectionCancelled):
        inspect_radiograph(image, 0.1, 1.0, 'housing', detector='classical',
                           should_cancel=cancel_after_validate)


def test_inspect_cli_on_a_folder_with_a_corrupt_file(tmp_path, capsys):
    folder = tmp_path / 'radiographs'
    folder.mkdir()
    defect_img, _ = make_test_radiograph(seed=15, voids=[(100, 120, 12)])
    clean16, _ = make_test_radiograph(seed=16)
    clean8, _ = make_test_radiograph(seed=17, dtype=np.uint8)
    cv2.imwrite(str(folder / 'a_defect.png'), defect_img)
    cv2.imwrite(str(folder / 'b_clean16.tif'), clean16)
    cv2.imwrite(str(folder / 'c_clean8.png'), clean8)
    (folder / 'd_corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'garbage' * 10)
    colour = np.zeros((32, 32, 3), np.uint8)
    colour[:, :, 2] = 255
    cv2.imwrite(str(folder / 'e_colour.png'), colour)
    (folder / 'notes.txt').write_text('not an image')
    out = tmp_path / 'report'
    code = cli.main(['inspect', str(folder), '--out', str(out), '--detector', 'classical',
                     '--pixel-pitch-mm', '0.1', '--family', 'housing'])
    assert code == 1                                    # some files failed
    results = json.loads((out / 'results.json').read_text())
    by_name = {r['file'].split('/')[-1]: r for r in results['results']}
    assert set(by_name) == {'a_defect.png', 'b_clean16.tif', 'c_clean8.png', 'd_corrupt.png',
                            'e_colour.png'}
    assert by_name['a_defect.png']['verdict'] in ('REJECT', 'REVIEW')
    assert by_name['a_defect.png']['defects']
    assert by_name['b_clean16.tif']['verdict'] == 'ACCEPT'
    assert by_name['c_clean8.png']['verdict'] == 'ACCEPT'
    assert 'cannot decode' in by_name['d_corrupt.png']['error']
    assert 'colour image' in by_name['e_colour.png']['error']
    assert (out / by_name['a_defect.png']['overlay']).is_file()
    page = (out / 'report.html').read_text()
    assert 'd_corrupt.png' in page and 'REJECT' in page or 'REVIEW' in page
    assert results['failed'] == 2


def test_inspect_cli_bad_arguments(tmp_path, capsys):
    assert cli.main(['inspect', str(tmp_path), '--out', str(tmp_path / 'o')]) == 2
    assert 'no PNG/TIFF files' in capsys.readouterr().err
    assert cli.main(['inspect', str(tmp_path), '--family', 'engine']) == 2
    assert "unknown part family 'engine'" in capsys.readouterr().err


def test_eval_command_reports_both_part_level_rates(tmp_path, capsys):
    out = tmp_path / 'eval'
    assert cli.main(['xray-eval', '--images', '2', '--size', '1024', '--detectors', 'cnn',
                     '--out', str(out), '--quiet']) == 0
    (result,) = json.loads((out / 'metrics.json').read_text())['results']
    assert result['detector'] == 'cnn' and 0.0 <= result['ap50'] <= 1.0
    assert 'ap50_ge_1mm' in result and 'ap50_95_ge_1mm' in result
    graded = result['part_level_graded_truth']
    assert graded['n_defective_parts'] + graded['n_good_parts'] == 2
    fa = result['operating_point_fa_0.2']
    assert fa['false_alarms_per_image'] <= 0.2
    assert (out / 'report.html').is_file()
    assert 'AP50 &ge;1mm' in (out / 'report.html').read_text()
    assert 'AP50>=1mm' in capsys.readouterr().out


def test_eval_command_takes_another_dose_of_the_same_parts(capsys):
    from humanoid_inspection.xray.evaluate_cli import synthetic_items
    low, high = (list(synthetic_items(3, 100000, 256, mas)) for mas in (2.0, 8.0))
    assert [i['gt_boxes'] for i in low] == [i['gt_boxes'] for i in high]
    d_low = np.concatenate([i['gt_detectability'] for i in low])
    d_high = np.concatenate([i['gt_detectability'] for i in high])
    # 4x the dose: every d' grows, at most 2x (the square root of the dose, where quantum
    # noise dominates; less where the auto-ranged gain leaves the read noise heavier)
    ratio = d_high / d_low
    assert len(ratio) > 0 and np.all(ratio > 1.3) and np.all(ratio < 2.0 + 1e-6)
    assert ratio.max() > 1.8
    assert cli.main(['xray-eval', '--images', '1', '--mas', '0', '--quiet']) == 2
    assert 'XraySimConfig.mas must be a finite number > 0' in capsys.readouterr().err


def _gdxray_folder(root):
    """A GDXray-style folder: Castings/<series>/*.png (8-bit) and annotations_xyxy.csv (x2, y2
    inclusive, as GDXray writes them), radiographs of a plate at 0.1 mm a pixel, one file
    corrupt."""
    rows = ['series,image,x1,y1,x2,y2,source']
    for series, seed, voids in (('C0001', 20, [(100, 120, 10)]), ('C0001', 21, []),
                                ('C0002', 22, [(150, 90, 12)])):
        folder = root / 'Castings' / series
        folder.mkdir(parents=True, exist_ok=True)
        image, truth = make_test_radiograph(seed=seed, voids=voids, pitch_mm=0.1,
                                            dtype=np.uint8)
        name = f'{series}_{seed:04d}.png'
        cv2.imwrite(str(folder / name), image)
        rows += [f'{series},{series}/{name},{x0},{y0},{x1 - 1},{y1 - 1},test'
                 for _, (x0, y0, x1, y1) in truth]
    (root / 'Castings' / 'C0001' / 'C0001_0099.png').write_bytes(
        b'\x89PNG\r\n\x1a\n' + b'garbage' * 10)
    (root / 'annotations_xyxy.csv').write_text('\n'.join(rows) + '\n')


def test_eval_on_a_gdxray_folder_takes_its_pixel_size_and_skips_a_corrupt_file(tmp_path,
                                                                               capsys):
    from humanoid_inspection.xray.evaluate_cli import GDXRAY_PIXEL_MM
    root = tmp_path / 'gdx'
    _gdxray_folder(root)

    def run(*extra):
        out = tmp_path / ('eval' + '_'.join(extra))
        assert cli.main(['xray-eval', '--dataset', 'gdxray', '--root', str(root),
                         '--detectors', 'cnn', '--out', str(out), '--quiet', *extra]) == 0
        return json.loads((out / 'metrics.json').read_text())

    right = run('--pixel-pitch-mm', '0.1')
    (result,) = right['results']
    op = result['operating_point_iou50']
    # the corrupt file is reported and skipped, the three others inspected
    assert right['skipped'] == [{'image': 'C0001/C0001_0099.png',
                                 'reason': 'cannot decode the image'}]
    assert 'skipped C0001/C0001_0099.png' in capsys.readouterr().err
    assert op['n_images'] == 3 and op['n_gt'] == 2
    # at the size its pixels have, both voids are found and nothing else
    assert op['tp'] == 2 and op['fp'] == 0 and result['ap50'] == pytest.approx(1.0)
    # and per series (a real set's series differ in part and zoom)
    by_series = result['by_series']
    assert list(by_series) == ['C0001', 'C0002']
    assert (by_series['C0001']['n_images'], by_series['C0001']['n_gt']) == (2, 1)
    assert (by_series['C0002']['n_images'], by_series['C0002']['n_gt']) == (1, 1)
    assert all(v['recall'] == 1.0 and v['false_alarms_per_image'] == 0.0
               for v in by_series.values())
    assert 'by series' in (tmp_path / 'eval--pixel-pitch-mm_0.1' / 'report.html').read_text()
    # taken at 5x too small a pixel the voids shrink to nothing the detector sees as one
    assert run('--pixel-pitch-mm', '0.02')['results'][0]['operating_point_iou50']['tp'] == 0
    # without the option: GDXray's scale, recorded with the figures
    assert run()['args']['pixel_pitch_mm'] == GDXRAY_PIXEL_MM
    # --series splits by series
    only = run('--pixel-pitch-mm', '0.1', '--series', 'C0002')
    assert only['results'][0]['operating_point_iou50']['n_images'] == 1


@pytest.mark.parametrize('args, message', [
    (['--dataset', 'gdxray', '--pixel-pitch-mm', '0'],
     'pixel_pitch_mm must be a finite positive number, got 0.0'),
    (['--dataset', 'gdxray', '--magnification', 'nan'],
     'magnification must be a finite positive number, got nan'),
    (['--pixel-pitch-mm', '0.1'], 'are for --dataset gdxray'),
])
def test_eval_refuses_a_pixel_size_it_cannot_use(tmp_path, capsys, args, message):
    root = tmp_path / 'gdx'
    _gdxray_folder(root)
    assert cli.main(['xray-eval', '--root', str(root), '--out', str(tmp_path / 'o'),
                     '--quiet', *args]) == 2
    assert message in capsys.readouterr().err
