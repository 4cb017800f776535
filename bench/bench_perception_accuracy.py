"""Accuracy of the classical backend on MuJoCo renders of the cell with known part poses.

For each seed: the cell with --parts phantom parts (housing/bracket/hub, seeded slots and yaw)
is built from cell.yaml + the project URDF, settled for 200 physics steps and rendered by the
simulated head camera (640x480 RGB-D, standing pose). Detections are brought into the world
frame with the camera's pose and matched to the true part centres (part origin + half its
height along the part's z) by nearest neighbour within --match-radius in the table plane.
Figures: recall, precision (false detections), 3D centroid error (mm), detect latency; and
the grasp candidates per detection (how many parts get at least one grasp that fits the
gripper). Baseline in the same run: the backend without its colour cue (color_distance 0).

Grasps (classical detections): candidates with wall grasps (the default) and, as the baseline,
footprint grasps only (GraspConfig(wall_grasps=False)). With --sim-grasp (default on), the
best candidate of every detection is tried in the MuJoCo sim core (no ROS): the candidate is
brought to world with the camera pose; IK of the arm on the part's side (manipulation.IKSolver
on the project model, base_link welded at cell.yaml's robot base; the 180-degree roll about the
approach is tried too, and the next candidate when IK fails) for a pre-grasp 10 cm above and for
the grasp; the arm is driven there through the sim's trajectory follower with the gripper open
to the candidate's opening + 1 cm, the gripper closes, the arm lifts 10 cm. Success: the part
that was detected (nearest truth) rose >= 8 cm with the hand. The sim is reset between trials.

Usage: python bench/bench_perception_accuracy.py [--seeds 5] [--parts 4] [--no-sim-grasp]
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


def render_cell(seed: int, n_parts: int, keep_sim: bool = False):
    """(rgb, depth, intrinsics, T_world_cam, truth centres (N, 3) world, part ids[, sim])."""
    from humanoid_inspection import robot_description
    from humanoid_inspection.cell_geometry import load_cell
    from humanoid_inspection.perception.types import CameraIntrinsics
    from humanoid_inspection.sim.camera import RgbdCamera
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
        T = cam.optical_pose_world(sim.data)
        k = cam.intrinsics
        intr = CameraIntrinsics(k.fx, k.fy, k.cx, k.cy, k.width, k.height)
    finally:
        cam.close()
    truth = []
    for p in parts:
        pose = sim.part_pose(p.part_id)
        truth.append(pose[:3, 3] + pose[:3, 2] * p.height / 2.0)
    out = (frame.rgb, frame.depth, intr, T, np.array(truth), [p.part_id for p in parts])
    return out + (sim,) if keep_sim else out


class SimGraspTrial:
    """Executes top-down grasp candidates (world frame) in the MuJoCo sim core, no ROS."""

    def __init__(self, sim):
        from humanoid_inspection import robot_description as rd
        from humanoid_inspection.cell_geometry import load_cell
        from humanoid_inspection.manipulation.ik import IKSolver
        from humanoid_inspection.manipulation.robot_model import RobotModel
        self.sim = sim
        self.rd = rd
        self.robot = RobotModel.from_project()
        self.T_world_base = load_cell().robot.pose.matrix()
        self.solvers = {side: IKSolver(self.robot, self.robot.group(f'{side}_arm'))
                        for side in ('left', 'right')}

    def _run(self, seconds: float) -> None:
        self.sim.step(int(round(seconds / self.sim.timestep)))

    def _ik(self, side, T_world_tcp, seed_full):
        target = np.linalg.inv(self.T_world_base) @ T_world_tcp
        res = self.solvers[side].solve(target, seed_full, timeout_s=0.2)
        return res.q_full if res.success else None

    def plan(self, side, T_world_tcp, flipped: bool = False):
        """Arm joint waypoints [via, high, pre, grasp] (lists), or None when IK fails.

        via: the hand raised in front of the shoulder (clear of the table edge and the cabinet
        from the standing pose); high: 25 cm above the grasp; pre: 10 cm above it; grasp.
        """
        flip = np.diag([1.0, -1.0, -1.0, 1.0])     # 180 deg about the approach (x) axis
        q = self.robot.configuration_from_dict(self.sim.joint_positions())
        joints = self.rd.ARM_JOINTS[side]
        for T in ((T_world_tcp @ flip,) if flipped else (T_world_tcp, T_world_tcp @ flip)):
            via = T.copy()
            via[:3, 3] = [0.12, 0.2 if side == 'left' else -0.2, 1.12]
            high, pre = T.copy(), T.copy()
            high[:3, 3] -= T[:3, 0] * 0.25             # back along the approach axis
            pre[:3, 3] -= T[:3, 0] * 0.10
            waypoints, seed = [], q
            for target in (via, high, pre, T):
                seed = self._ik(side, target, seed)
                if seed is None:
                    break
                d = self.robot.configuration_to_dict(seed)
                waypoints.append([d[j] for j in joints])
            if len(waypoints) == 4:
                return waypoints
        return None

    def execute(self, side, plan, opening, part_id, target=None) -> dict:
        """Open, pre-grasp, descend, close, lift; did the part follow?

        With target (4x4 world TCP pose), a hand that ends more than 1 cm from it before
        closing (the scripted joint-space moves are not collision-checked: the arm can catch
        the table or the cabinet on the way) returns reason 'not reached'.
        """
        from humanoid_inspection.sim.kinematics import body_pose
        from humanoid_inspection.sim.simulation import make_trajectory
        sim, joints = self.sim, self.rd.ARM_JOINTS[side]
        finger = [f'{side}_finger_joint']
        sim.reset()
        z0 = sim.part_pose(part_id)[2, 3]
        # segment durations: nominal, stretched to <= 1 rad/s on every joint
        q_now = [sim.joint_positions()[j] for j in joints]
        times, t = [], 0.0
        for q_from, q_to, nominal in zip([q_now] + plan[:-1], plan, (1.5, 1.5, 1.0, 1.5)):
            t += max(nominal, float(np.max(np.abs(np.subtract(q_to, q_from)))) / 1.0)
            times.append(t)
        sim.submit(f'{side}_gripper_controller', make_trajectory(
            finger, [(0.5, [min(0.05, opening / 2 + 0.005)])]))
        sent = sim.submit(f'{side}_arm_controller', make_trajectory(
            joints, list(zip(times, plan))))
        if not sent.accepted:
            return {'lift_m': 0.0, 'success': False, 'reason': sent.reason}
        self._run(times[-1] + 0.5)
        if target is not None:
            miss = float(np.linalg.norm(body_pose(sim.model, sim.data, f'{side}_tcp')[:3, 3] -
                                        target[:3, 3]))
            if miss > 0.01:
                return {'lift_m': 0.0, 'success': False, 'reason': 'not reached',
                        'miss_m': miss}
        sim.submit(f'{side}_gripper_controller', make_trajectory(finger, [(0.6, [0.0])]))
        self._run(0.9)
        sim.submit(f'{side}_arm_controller', make_trajectory(joints, [(1.5, plan[2])]))
        self._run(1.9)
        lift = float(sim.part_pose(part_id)[2, 3] - z0)
        return {'lift_m': lift, 'success': lift >= 0.08,
                'attached': sim.grasp.attached.get(side)}

    def try_candidates(self, candidates_world, part_id, max_tries: int = 3) -> dict:
        """Execute the first candidate (best first) that has an IK solution and is reached.

        Each candidate is tried with its roll and the 180-degree flipped one; a trial whose
        hand does not reach the grasp (transit collision) moves on to the next.
        """
        misses = 0
        for rank, cand in enumerate(candidates_world[:max_tries]):
            T = cand.matrix()
            side = 'left' if T[1, 3] > 0 else 'right'
            for flipped in (False, True):
                plan = self.plan(side, T, flipped)
                if plan is None:
                    continue
                out = self.execute(side, plan, cand.opening_m, part_id, T @ np.diag(
                    [1.0, -1.0, -1.0, 1.0]) if flipped else T)
                if out.get('reason') == 'not reached':
                    misses += 1
                    continue
                out.update(rank=rank, kind=cand.kind, side=side, opening_m=cand.opening_m,
                           transit_misses=misses)
                return out
        return {'success': False, 'lift_m': 0.0, 'transit_misses': misses,
                'reason': 'no IK / not reached for the first candidates'}


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


def grasp_rows(result, depth_m, intr, T, truth, ids, grasp_cfgs, grasp_stats, trial,
               grasps_for_detection, to_frame):
    """Candidates per detection for each grasp variant, and the sim trial of the best ones."""
    rows = []
    families = [i.split('-')[0] for i in ids]
    for det in result.detections:
        if not det.has_3d:
            continue
        c_world = T[:3, :3] @ det.centroid_m + T[:3, 3]
        k = int(np.argmin(np.linalg.norm((truth - c_world)[:, :2], axis=1)))
        row = {'detection': det.id, 'part': ids[k]}
        for name, cfg in grasp_cfgs.items():
            t = time.perf_counter()
            g = grasps_for_detection(det, depth_m, intr, cfg)
            ms = (time.perf_counter() - t) * 1e3
            st = grasp_stats[name]
            st['detections'] += 1
            st['ms'].append(ms)
            fam = st['by_family'].setdefault(families[k], {'detections': 0, 'with_candidate': 0,
                                                           'sim_success': 0})
            fam['detections'] += 1
            entry = {'candidates': len(g.candidates), 'kinds': [c.kind for c in g.candidates],
                     'too_wide': g.discarded_too_wide, 'other': g.discarded_other, 'ms': ms}
            if g.candidates:
                st['with_candidate'] += 1
                fam['with_candidate'] += 1
                if trial is not None:
                    out = trial.try_candidates(to_frame(g, T, 'world').candidates, ids[k])
                    st['sim_tried'] += 1
                    st['sim_success'] += int(out['success'])
                    fam['sim_success'] += int(out['success'])
                    entry['sim'] = out
            row[name] = entry
        rows.append(row)
        sim_msg = {n: row[n].get('sim', {}).get('success') for n in grasp_cfgs}
        print(f"  {ids[k]:16s} candidates {[row[n]['candidates'] for n in grasp_cfgs]} "
              f"sim lift {sim_msg}", flush=True)
    return rows


def main(argv=None) -> int:
    """Run, print and save the accuracy figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, default=5)
    parser.add_argument('--parts', type=int, default=4)
    parser.add_argument('--match-radius', type=float, default=0.05, help='m, in the table plane')
    parser.add_argument('--no-sim-grasp', action='store_true',
                        help='skip executing the best candidates in the MuJoCo sim')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' /
                                             'perception_accuracy.json'))
    args = parser.parse_args(argv)
    from humanoid_inspection.affordance.grasp import GraspConfig, grasps_for_detection, to_frame
    from humanoid_inspection.cell_geometry import load_cell
    from humanoid_inspection.perception.classical_backend import (
        ClassicalBackend, ClassicalConfig)
    from humanoid_inspection.perception.rgbd import depth_to_metres
    gripper = load_cell().gripper
    grasp_cfgs = {
        'wall_and_footprint': GraspConfig(max_opening_m=gripper.max_opening_m,
                                          finger_length_m=gripper.finger_length_m),
        'baseline_footprint_only': GraspConfig(max_opening_m=gripper.max_opening_m,
                                               finger_length_m=gripper.finger_length_m,
                                               wall_grasps=False)}
    grasp_stats = {name: {'detections': 0, 'with_candidate': 0, 'ms': [], 'sim_tried': 0,
                          'sim_success': 0, 'by_family': {}} for name in grasp_cfgs}
    variants = {'classical': ClassicalBackend(),
                'baseline_no_colour_cue': ClassicalBackend(ClassicalConfig(color_distance=0.0))}
    stats = {name: {'errors_mm': [], 'false': 0, 'truth': 0, 'ms': [], 'graspable': 0}
             for name in variants}
    per_seed = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        rgb, depth, intr, T, truth, ids, sim = render_cell(seed, args.parts, keep_sim=True)
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
            s['graspable'] += sum(bool(grasps_for_detection(
                d, depth_m, intr, grasp_cfgs['wall_and_footprint']).candidates)
                for d in result.detections)
            row[name] = {'centroid_error_mm': errors, 'false_detections': false,
                         'detect_ms': ms, 'diagnostic': result.diagnostic}
        row['grasps'] = grasp_rows(ClassicalBackend().detect(rgb, depth, intr), depth_m, intr, T,
                                   truth, ids, grasp_cfgs, grasp_stats,
                                   None if args.no_sim_grasp else SimGraspTrial(sim),
                                   grasps_for_detection, to_frame)
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
    for name, g in grasp_stats.items():
        summary[f'grasps_{name}'] = {
            'detections': g['detections'], 'with_candidate': g['with_candidate'],
            'fraction_with_candidate': g['with_candidate'] / max(1, g['detections']),
            'affordance_ms_median': float(np.median(g['ms'])) if g['ms'] else None,
            'sim_tried': g['sim_tried'], 'sim_success': g['sim_success'],
            'sim_success_per_detection': g['sim_success'] / max(1, g['detections']),
            'by_family': g['by_family']}
        print(f"grasps {name:24s} with a candidate {g['with_candidate']}/{g['detections']}  "
              f"sim lifts {g['sim_success']}/{g['detections']} (tried {g['sim_tried']})  "
              f"affordance {summary[f'grasps_{name}']['affordance_ms_median'] or 0:.1f} ms/obj"
              f"  by family {g['by_family']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({'summary': summary, 'per_seed': per_seed,
                               'seeds': args.seeds, 'parts': args.parts}, indent=2,
                              default=float))
    print(f'saved {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
