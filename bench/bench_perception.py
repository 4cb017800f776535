"""Benchmark: classical backend per 640x480 RGB-D frame, VLM-path overhead, affordance.

Figures (median / p90 ms over --repeats runs, one process, this machine's cores):
- classical: ClassicalBackend.detect on a rendered 640x480 frame with three parts; baseline in
  the same run: the same pipeline fitting the plane on every depth pixel (plane_stride=1);
  also the centroid error against the renderer's truth for both.
- vlm_overhead: everything the VLM path does except the model's forward pass -- prompt
  rendering, image preprocessing (Qwen smart_resize to 644x476, normalise, patchify),
  tokenisation, and parsing a realistic answer -- on a tiny offline checkpoint with the real
  preprocessing settings (max_pixels 28*28*1280), with the default numpy preprocessing
  (perception/qwen_preprocess.py) and, as the baseline, with transformers' image processor
  (image_preprocessing='transformers'); also the image preprocessing alone on both paths, and
  whether the two give the same tensor.
- affordance: grasps_for_detection per object with the classical mask (footprint + wall
  grasps); baselines: footprint grasps only (wall_grasps=False, the previous behaviour) and the
  same object from its 2D box only (mask_from_box first, the VLM-box path).

Usage: python bench/bench_perception.py [--repeats N] [--out bench/results/perception.json]
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))

from humanoid_inspection.affordance.grasp import grasps_for_detection  # noqa: E402
from humanoid_inspection.perception.classical_backend import (  # noqa: E402
    ClassicalBackend, ClassicalConfig)
from humanoid_inspection.perception.rgbd import depth_to_metres  # noqa: E402
from humanoid_inspection.perception.synthetic_scene import (  # noqa: E402
    default_camera_pose, demo_parts, render_scene)


def timed(fn, repeats):
    """Run fn repeats times (after 2 warm-ups); return (median ms, p90 ms, last result)."""
    out = None
    for _ in range(2):
        out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 90)), out


def centroid_errors_mm(result, frame):
    """Distance (mm) from each true part to the nearest detection centroid."""
    errs = []
    for c in frame.centroids_cam:
        d = [np.linalg.norm(det.centroid_m - c) for det in result.detections if det.has_3d]
        errs.append(1e3 * min(d) if d else float('nan'))
    return errs


def bench_classical(frame, repeats):
    out = {}
    for name, cfg in (('classical', ClassicalConfig()),
                      ('baseline_full_res_plane', ClassicalConfig(plane_stride=1))):
        backend = ClassicalBackend(cfg)
        med, p90, result = timed(
            lambda b=backend: b.detect(frame.color, frame.depth, frame.intrinsics), repeats)
        errs = centroid_errors_mm(result, frame)
        out[name] = {'median_ms': med, 'p90_ms': p90, 'detections': len(result.detections),
                     'centroid_error_mm': errs, 'stages_ms': result.timings_ms}
        print(f'{name:28s} median {med:6.2f} ms  p90 {p90:6.2f} ms  '
              f'{len(result.detections)} parts  centroid error mm '
              f"{', '.join(f'{e:.1f}' for e in errs)}")
    return out


def bench_vlm_overhead(frame, repeats):
    from humanoid_inspection.perception import vlm_prompts
    from humanoid_inspection.perception.tiny_vlm import build_tiny_checkpoint
    from humanoid_inspection.perception.vlm_backend import VlmBackend, VlmConfig
    from humanoid_inspection.perception.vlm_parsing import parse_points
    answer = ('[{"points": [[444, 257], [452, 249]], "label": "the place where a parallel '
              'gripper should grasp the housing"}]')
    question = vlm_prompts.grasp_point_prompt('housing')
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_checkpoint(Path(tmp) / 'tiny')
        backends = {name: VlmBackend(VlmConfig(model_path=str(path),   # real min/max pixels
                                               image_preprocessing=name))
                    for name in ('numpy', 'transformers')}
        tensors = {}
        for name, backend in backends.items():
            def overhead(b=backend):
                prepared = b.prepare(frame.color, question)
                return prepared, parse_points(answer, b.coordinate_frame(prepared))

            med, p90, (prepared, points) = timed(overhead, repeats)
            imed, ip90, vision = timed(lambda b=backend: b.preprocess_image(frame.color),
                                       repeats)
            pmed, _, _ = timed(lambda b=backend, p=prepared: parse_points(
                answer, b.coordinate_frame(p)), repeats)
            tensors[name] = vision['pixel_values'].numpy()
            n_img = int((prepared.tensors['input_ids'] == backend.image_token_id).sum())
            key = 'vlm_overhead' if name == 'numpy' else 'baseline_vlm_overhead_transformers'
            out[key] = {'median_ms': med, 'p90_ms': p90, 'image_preprocessing_median_ms': imed,
                        'image_preprocessing_p90_ms': ip90, 'parse_median_ms': pmed,
                        'resized_size': list(prepared.resized_size), 'image_tokens': n_img,
                        'image_preprocessing': name, 'processor': backend.processor_source}
            print(f"{key + ' (no forward)':44s} median {med:6.2f} ms  p90 {p90:6.2f} ms  "
                  f'input {prepared.resized_size[0]}x{prepared.resized_size[1]}, '
                  f'{n_img} image tokens')
            print(f"{'  of which image preprocessing (' + name + ')':44s} median {imed:6.2f} ms"
                  f'  p90 {ip90:6.2f} ms')
            print(f"{'  of which parse':44s} median {pmed:6.3f} ms")
    diff = float(np.abs(tensors['numpy'] - tensors['transformers']).max())
    out['vlm_overhead']['max_abs_diff_vs_transformers'] = diff
    print(f"{'numpy vs transformers pixel_values':44s} max |diff| {diff:.3g} "
          f"(shape {tensors['numpy'].shape})")
    return out


def bench_affordance(frame, repeats):
    from humanoid_inspection.affordance.grasp import GraspConfig
    result = ClassicalBackend().detect(frame.color, frame.depth, frame.intrinsics)
    depth = depth_to_metres(frame.depth)
    footprint_only = GraspConfig(wall_grasps=False)
    per_obj, per_footprint, per_box = [], [], []
    for det in result.detections:
        per_obj.append(timed(lambda d=det: grasps_for_detection(d, depth, frame.intrinsics),
                             repeats)[0])
        per_footprint.append(timed(lambda d=det: grasps_for_detection(
            d, depth, frame.intrinsics, footprint_only), repeats)[0])
        boxed = type(det)(det.id, det.class_id, det.score, 'vlm', det.box_xyxy)
        per_box.append(timed(lambda d=boxed: grasps_for_detection(d, depth, frame.intrinsics),
                             repeats)[0])
    out = {'affordance_per_object': {'median_ms': float(np.median(per_obj)),
                                     'per_object_ms': per_obj},
           'baseline_footprint_only_per_object': {'median_ms': float(np.median(per_footprint)),
                                                  'per_object_ms': per_footprint},
           'baseline_box_only_per_object': {'median_ms': float(np.median(per_box)),
                                            'per_object_ms': per_box}}
    print(f"{'affordance per object (footprint + walls)':44s} median {np.median(per_obj):6.2f} ms")
    print(f"{'baseline footprint-only per object':44s} median {np.median(per_footprint):6.2f} ms")
    print(f"{'baseline box-only per object':44s} median {np.median(per_box):6.2f} ms")
    return out


def main(argv=None) -> int:
    """Run the benchmark, print the figures, save JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=30)
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'perception.json'))
    parser.add_argument('--skip-vlm', action='store_true', help='no transformers figures')
    args = parser.parse_args(argv)
    frame = render_scene(demo_parts(), default_camera_pose(), depth_noise_m=0.001, dropout=0.02)
    report = {'machine': {'platform': platform.platform(), 'cpus': os.cpu_count(),
                          'python': platform.python_version()},
              'frame': '640x480 rendered RGB-D, 3 parts, 1 mm depth noise, 2 % dropout',
              'repeats': args.repeats,
              'targets_ms': {'classical_median': 30.0, 'vlm_overhead_median': 5.0}}
    report.update(bench_classical(frame, args.repeats))
    if not args.skip_vlm:
        report.update(bench_vlm_overhead(frame, args.repeats))
    report.update(bench_affordance(frame, args.repeats))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f'saved {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
