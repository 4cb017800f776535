"""Accuracy of the classical backend on MuJoCo renders of the cell with known part poses.

For each seed: the cell with --parts phantom parts (housing/bracket/hub, seeded slots and yaw)
is built from cell.yaml + the project URDF, settled for 200 physics steps and rendered by the
simulated head camera (640x480 RGB-D, standing pose). Detections are brought into the world
frame with the camera's pose and matched to the true part centres (part origin + half its
height along the part's z) by nearest neighbour within --match-radius in the table plane.
Figures: recall, precision (false detections), 3D centroid error (mm), detect latency; and
the grasp candidates per detection (how many parts get at least one grasp that fits the
gripper). Baseline in the same run: the backend without its colour cue (color_distance 0).

Usage: python bench/bench_perception_accuracy.py [--seeds 5] [--parts 4]
       [--out bench/results/perception_accuracy.json]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))


def render_cell(seed: int, n_parts: int):
    """(rgb, depth, intrinsics, T_world_cam, truth centres (N, 3) world, part ids)."""
    from humanoid_inspection import robot_description
    from humanoid_inspection.cell_geometry import load_cell
    from humanoid_inspection.perception.types import CameraIntrinsics
    from humanoid_inspection.sim.camera import OPTICAL_TO_MJCF, RgbdCamera
    from humanoid_inspection.sim.controllers import load_controllers
    from humanoid_inspection.sim.parts import plan_parts
    from humanoid_inspection.sim.scene import build_scene
    from humanoid_inspection.sim.simulation import Simulation
    cell = load_cell()
    parts = plan_parts(n_parts, seed, len(cell.table.part_slots))
    scene = build_scene(robot_description.expand_xacro(), cell, parts,
                        standing=robot_description.standing_pose())
    sim = Simulation(scene, load_controllers())
    sim.step(200)
    cam = RgbdCamera(sim.model, scene.camera)
    try:
        frame = cam.render(sim.data)
        cid = cam.camera_id
        T = np.eye(4)
        T[:3, :3] = sim.data.cam_xmat[cid].reshape(3, 3) @ OPTICAL_TO_MJCF
        T[:3, 3] = sim.data.cam_xpos[cid]
        k = cam.intrinsics
        intr = CameraIntrinsics(k.fx, k.fy, k.cx, k.cy, k.width, k.height)
    finally:
        cam.close()
    truth = []
    for p in parts:
        pose = sim.part_pose(p.part_id)
        truth.append(pose[:3, 3] + pose[:3, 2] * p.height / 2.0)
    return frame.rgb, frame.depth, intr, T, np.array(truth), [p.part_id for p in parts]


def evaluate(result, T, truth, radius):
    """(matched errors mm, false detections) of a PerceptionResult against truth centres."""
    centres = [T[:3, :3] @ d.centroid_m + T[:3, 3] for d in result.detections if d.has_3d]
    used, errors = set(), []
    for t in truth:
        best, best_d = None, radius
        for i, c in enumerate(centres):
            d = np.linalg.norm((c - t)[:2])
            if i not in used and d < best_d:
                best, best_d = i, d
        if best is None:
            errors.append(float('nan'))
        else:
            used.add(best)
            errors.append(1e3 * float(np.linalg.norm(centres[best] - t)))
    return errors, len(result.detections) - len(used)


def main(argv=None) -> int:
    """Run, print and save the accuracy figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, default=5)
    parser.add_argument('--parts', type=int, default=4)
    parser.add_argument('--match-radius', type=float, default=0.05, help='m, in the table plane')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' /
                                             'perception_accuracy.json'))
    args = parser.parse_args(argv)
    from humanoid_inspection.affordance.grasp import GraspConfig, grasps_for_detection
    from humanoid_inspection.cell_geometry import load_cell
    from humanoid_inspection.perception.classical_backend import (
        ClassicalBackend, ClassicalConfig)
    from humanoid_inspection.perception.rgbd import depth_to_metres
    gripper = load_cell().gripper
    grasp_cfg = GraspConfig(max_opening_m=gripper.max_opening_m,
                            finger_length_m=gripper.finger_length_m)
    variants = {'classical': ClassicalBackend(),
                'baseline_no_colour_cue': ClassicalBackend(ClassicalConfig(color_distance=0.0))}
    stats = {name: {'errors_mm': [], 'false': 0, 'truth': 0, 'ms': [], 'graspable': 0}
             for name in variants}
    per_seed = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        rgb, depth, intr, T, truth, ids = render_cell(seed, args.parts)
        row = {'seed': seed, 'parts': ids, 'render_s': time.perf_counter() - t0}
        depth_m = depth_to_metres(depth)
        for name, backend in variants.items():
            t = time.perf_counter()
            result = backend.detect(rgb, depth, intr)
            ms = (time.perf_counter() - t) * 1e3
            errors, false = evaluate(result, T, truth, args.match_radius)
            s = stats[name]
            s['errors_mm'] += errors
            s['false'] += false
            s['truth'] += len(truth)
            s['ms'].append(ms)
            s['graspable'] += sum(bool(grasps_for_detection(d, depth_m, intr, grasp_cfg)
                                       .candidates) for d in result.detections)
            row[name] = {'centroid_error_mm': errors, 'false_detections': false,
                         'detect_ms': ms, 'diagnostic': result.diagnostic}
        per_seed.append(row)
        c = row['classical']
        print(f"seed {seed}: {len(ids)} parts, found {sum(np.isfinite(c['centroid_error_mm']))}"
              f", false {c['false_detections']}, errors mm "
              f"{', '.join(f'{e:.1f}' for e in c['centroid_error_mm'])}", flush=True)
    summary = {}
    for name, s in stats.items():
        e = np.array(s['errors_mm'])
        found = e[np.isfinite(e)]
        summary[name] = {
            'recall': float(len(found) / max(1, s['truth'])),
            'false_detections': s['false'],
            'centroid_error_mm_median': float(np.median(found)) if found.size else None,
            'centroid_error_mm_p90': float(np.percentile(found, 90)) if found.size else None,
            'centroid_error_mm_max': float(found.max()) if found.size else None,
            'detect_ms_median': float(np.median(s['ms'])),
            'detections_with_a_grasp': s['graspable']}
        print(f"{name:24s} recall {summary[name]['recall']:.2f}  false {s['false']}  "
              f"centroid error median {summary[name]['centroid_error_mm_median']} mm  "
              f"p90 {summary[name]['centroid_error_mm_p90']} mm  "
              f"detect {summary[name]['detect_ms_median']:.1f} ms")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({'summary': summary, 'per_seed': per_seed,
                               'seeds': args.seeds, 'parts': args.parts}, indent=2,
                              default=float))
    print(f'saved {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
