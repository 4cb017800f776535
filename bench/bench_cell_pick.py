"""Table -> X-ray fixture picks in the MuJoCo sim core with the real libraries, no ROS.

Baseline in the same run, per part: the same pick with the settings before the seed-7 fixes
(manipulation open_margin_m 0.02 on top of the candidate opening, wall-grasp landing zones
from the run's edge, the grasp point rather than the part centre on the seat, a 4 cm box at
the TCP as the carried part instead of the detection's box, the full 20 mm footprint margin
for parts almost as wide as the gripper opens).

What the demo does for one part, scripted (seconds per part instead of minutes per demo):
the cell of `--seed` (mujoco_sim's plan_parts, defect fraction 0.5 like the demo) is built and
settled, the head camera renders, the classical backend detects (config/perception.yaml
values), affordance ranks grasps (config/affordance.yaml values, camera pose from the sim),
PickPlacePlanner (config/manipulation.yaml values) plans candidate -> fixture place pose
(cell.places, as cell_manager), and the segments are executed through the sim's trajectory
follower exactly as the manipulation node sends them (one trajectory per controller). After
`close` the finger is checked against the node's held threshold. A grasp that fails is retried
with the next candidates (as cell_manager). Logged per attempt: the candidate (kind, opening,
height above the table), how far the part moved before the fingers closed, the TCP error at the
grasp, the finger position after the close, and where the part ended (height above the seat,
distance from the seat centre).

Each part is tried on a fresh sim (the others stay where they are), the parts in --families
order or all of them.

Usage: python bench/bench_cell_pick.py [--seed 7] [--parts 6] [--only bracket,hub]
       [--out bench/results/cell_pick.json]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))


def _params(name: str) -> dict:
    return yaml.safe_load((ROOT / 'config' / f'{name}.yaml').read_text())[name]['ros__parameters']


def _before_fixes_grasp_config():
    from humanoid_inspection.affordance.grasp import GraspConfig

    class BeforeFixes(GraspConfig):
        """The wall-grasp landing zones from the run's edge (pad_gap_m 0), as before."""

        def wall_params(self):
            import dataclasses
            return dataclasses.replace(super().wall_params(), pad_gap_m=0.0)
    return BeforeFixes


def held_threshold(expected: float, fixed: float, tolerance: float) -> float:
    """The manipulation node's 'part held' finger threshold (nodes/manipulation_node.py)."""
    return max(min(fixed, expected - tolerance), 0.0005)


class Cell:
    """The sim + the libraries the nodes use, wired like the nodes (config files)."""

    def __init__(self, seed: int, parts: int, defect_fraction: float = 0.5,
                 baseline: bool = False):
        from humanoid_inspection import robot_description as rd
        from humanoid_inspection.affordance.grasp import GraspConfig
        from humanoid_inspection.cell.places import targets_from_cell
        from humanoid_inspection.cell_geometry import load_cell
        from humanoid_inspection.manipulation.collision import CollisionChecker
        from humanoid_inspection.manipulation.pick_place import PickPlaceConfig, PickPlacePlanner
        from humanoid_inspection.manipulation.robot_model import RobotModel
        from humanoid_inspection.manipulation.scene import obstacles_from_cell
        from humanoid_inspection.perception.classical_backend import (ClassicalBackend,
                                                                      ClassicalConfig)
        from humanoid_inspection.sim.factory import load_simulation
        self.rd = rd
        self.seed, self.n_parts, self.defect_fraction = seed, parts, defect_fraction
        self.cell = load_cell()
        self.sim = load_simulation(num_parts=parts, seed=seed,
                                   defect_probability=defect_fraction)
        self.sim.step(200)
        pp = _params('perception')
        self.backend = ClassicalBackend(ClassicalConfig(
            min_height_m=pp['classical']['min_height_m'],
            max_height_m=pp['classical']['max_height_m'],
            color_distance=pp['classical']['color_distance'],
            min_area_px=pp['classical']['min_area_px'],
            ransac_threshold_m=pp['classical']['ransac_threshold_m'],
            min_plane_fraction=pp['classical']['min_plane_fraction']))
        ap = _params('affordance')
        g = self.cell.gripper
        self.baseline = baseline
        self.grasp_cfg = (_before_fixes_grasp_config() if baseline else GraspConfig)(
            max_opening_m=ap['max_opening_m'] or g.max_opening_m,
            finger_length_m=ap['finger_length_m'] or g.finger_length_m,
            opening_margin_m=ap['opening_margin_m'],
            min_opening_margin_m=ap['opening_margin_m'] if baseline
            else ap['min_opening_margin_m'], default_opening_m=ap['default_opening_m'],
            wall_grasps=ap['wall_grasps'], wall_opening_margin_m=ap['wall_opening_margin_m'],
            fingertip_below_tcp_m=ap['fingertip_below_tcp_m'],
            tip_clearance_m=ap['tip_clearance_m'])
        mp = _params('manipulation')
        self.mp = mp
        self.robot = RobotModel.from_project()
        obstacles = obstacles_from_cell(self.cell,
                                        keepout_height=mp.get('table_keepout_height_m', 0.0))
        checker = CollisionChecker(self.robot, obstacles, padding=mp['collision_padding_m'])
        config = PickPlaceConfig(
            pre_grasp_distance_m=mp['pre_grasp_distance_m'], lift_height_m=mp['lift_height_m'],
            place_approach_height_m=mp['place_approach_height_m'],
            retreat_distance_m=mp['retreat_distance_m'],
            open_margin_m=0.02 if baseline else mp['open_margin_m'],
            max_opening_m=g.max_opening_m, part_depth_m=mp['part_depth_m'],
            part_height_m=mp['part_height_m'], use_waist=mp['use_waist'],
            joint_plan_timeout_s=mp['joint_plan_timeout_s'],
            joint_plan_timeout_first_group_s=mp['joint_plan_timeout_first_group_s'],
            total_timeout_s=mp['total_planning_timeout_s'], ik_timeout_s=mp['ik_timeout_s'],
            velocity_scale=mp['velocity_scale'], acceleration_scale=mp['acceleration_scale'],
            sample_dt=mp['sample_dt_s'], start_tolerance=mp['start_tolerance_rad'])
        self.planner = PickPlacePlanner(self.robot, checker, obstacles, config, seed=mp['seed'],
                                        planner=mp['planner'],
                                        resolution=mp['motion_resolution_rad'])
        cm = _params('cell_manager')
        self.places = targets_from_cell(self.cell, cm['place_drop_m'], cm['bin_drop_m'])
        self.T_world_base = self.cell.robot.pose.matrix()
        self.controllers = {c: list(js) for c, js in rd.CONTROLLER_JOINTS.items()}

    # ------------------------------------------------------------------ seeing
    def look(self):
        """(detections, depth_m, intrinsics, T_base_cam) of the current scene."""
        from humanoid_inspection.perception.rgbd import depth_to_metres
        from humanoid_inspection.perception.types import CameraIntrinsics
        from humanoid_inspection.sim.camera import RgbdCamera
        sim = self.sim
        cam = RgbdCamera(sim.model, sim.scene.camera)
        try:
            frame = cam.render(sim.data)
            T = cam.optical_pose_world(sim.data)
            k = cam.intrinsics
            intr = CameraIntrinsics(k.fx, k.fy, k.cx, k.cy, k.width, k.height)
        finally:
            cam.close()
        result = self.backend.detect(frame.rgb, frame.depth, intr)
        return result.detections, depth_to_metres(frame.depth), intr, \
            np.linalg.inv(self.T_world_base) @ T

    def nearest_part(self, p_world):
        poses, _, _ = self.sim.part_states()
        best = min(poses, key=lambda k: np.linalg.norm(poses[k][:2, 3] - p_world[:2]))
        return best, float(np.linalg.norm(poses[best][:2, 3] - p_world[:2]))

    # ------------------------------------------------------------------ moving
    def run_for(self, seconds: float) -> None:
        self.sim.step(max(1, int(round(seconds / self.sim.timestep))))

    def send(self, traj) -> None:
        from humanoid_inspection.manipulation.execution import split_by_controller
        from humanoid_inspection.sim.simulation import make_trajectory
        for controller, sub in split_by_controller(traj, self.controllers).items():
            points = [(float(t), list(p), list(v)) for t, p, v in
                      zip(sub.times, sub.positions, sub.velocities)]
            res = self.sim.submit(controller, make_trajectory(sub.joint_names, points))
            if not res.accepted:
                raise RuntimeError(f'{controller} refused the trajectory: {res.reason}')

    def q_now(self):
        js = self.sim.joint_positions()
        return self.robot.configuration_from_dict(js)

    def tcp_world(self, side):
        from humanoid_inspection.sim.kinematics import body_pose
        return body_pose(self.sim.model, self.sim.data, f'{side}_tcp')

    def execute(self, plan, part_id: str) -> dict:
        """Run the plan's segments; stop after a failed close (as the node)."""
        sim = self.sim
        out = {}
        z_before = sim.part_pose(part_id)
        for seg in plan.segments:
            if seg.name == 'open':      # as the manipulation node: from the measured finger
                seg = self.planner.fit_release(
                    seg, sim.joint_positions()[self.rd.GRIPPER_JOINTS[seg.side]])
            self.send(seg.trajectory)
            settle = float(self.mp['gripper_settle_s']) if seg.name == 'close' else 0.1
            self.run_for(seg.trajectory.duration + settle)
            if seg.name == 'approach':
                now = sim.part_pose(part_id)
                out['part_moved_before_close_mm'] = 1e3 * float(
                    np.linalg.norm(now[:3, 3] - z_before[:3, 3]))
                g = self.T_world_base @ self.planner_grasp
                t = self.tcp_world(seg.side)
                out['tcp_error_mm'] = 1e3 * float(np.linalg.norm(t[:3, 3] - g[:3, 3]))
                out['tcp_z_error_mm'] = 1e3 * float(t[2, 3] - g[2, 3])
            if seg.name != 'close':
                # the node's check: every joint within goal_tolerance_rad of the segment's end
                js = sim.joint_positions()
                final = seg.trajectory.positions[-1]
                errs = [abs(js[j] - f) for j, f in zip(seg.trajectory.joint_names, final)
                        if 'finger' not in j]
                worst = max(errs) if errs else 0.0
                if worst > self.mp['goal_tolerance_rad']:
                    k = int(np.argmax(errs))
                    arm_joints = [j for j in seg.trajectory.joint_names if 'finger' not in j]
                    out['not_reached'] = f'{seg.name}: {arm_joints[k]} off by {worst:.4f}'
                    out['result'] = 'not_reached'
                    return out
            if seg.name == 'close':
                finger = sim.joint_positions()[self.rd.GRIPPER_JOINTS[seg.side]]
                thr = held_threshold(plan.grasped_finger_position,
                                          self.mp['grasp_min_finger_position_m'],
                                          self.mp['grasp_width_tolerance_m'])
                out['finger_mm'] = 1e3 * finger
                out['expected_finger_mm'] = 1e3 * plan.grasped_finger_position
                out['attached'] = sim.grasp.attached.get(seg.side)
                if finger <= thr:
                    out['result'] = 'grasp_failed'
                    return out
        poses = sim.part_pose(part_id)
        seat = self.cell.xray_cabinet.fixture.pose.xyz
        out['above_seat_mm'] = 1e3 * float(poses[2, 3] - seat[2])
        out['off_seat_mm'] = 1e3 * float(np.hypot(poses[0, 3] - seat[0], poses[1, 3] - seat[1]))
        out['result'] = 'in_fixture' if abs(out['above_seat_mm']) < 10 and \
            out['off_seat_mm'] < 50 else 'misplaced'
        return out


def try_part(seed, parts, index, max_attempts=3, verbose=True, pose=None, baseline=False,
             grasp_changes=None):
    """Fresh cell; pick part `index` (detection nearest to it) into the fixture.

    pose: optional (x, y, yaw) world pose the part is moved to first (a part pushed aside).
    grasp_changes: optional GraspConfig fields to change (another bench's baseline).
    """
    from humanoid_inspection.affordance.grasp import grasps_for_detection, to_frame
    from humanoid_inspection.cell.places import pose_from_quaternion
    from humanoid_inspection.manipulation.pick_place import GraspCandidate
    cell = Cell(seed, parts, baseline=baseline)
    if grasp_changes:
        import dataclasses
        cell.grasp_cfg = dataclasses.replace(cell.grasp_cfg, **grasp_changes)
    part = cell.sim.scene.parts[index]
    if pose is not None:
        cell.sim.set_part_pose(part.part_id, (pose[0], pose[1], cell.cell.table.top_z + 0.0005),
                               pose[2])
        cell.run_for(0.5)
    dets, depth_m, intr, T_base_cam = cell.look()
    truth = cell.sim.part_pose(part.part_id)
    det = nearest_detection(cell, dets, T_base_cam, truth[:2, 3])
    row = {'part': part.part_id, 'family': part.family, 'slot': part.slot,
           'xy_world': [round(float(v), 3) for v in truth[:2, 3]], 'attempts': []}
    if det is None:
        row['result'] = 'not_detected'
        return row
    t0 = time.perf_counter()
    try:
        res = grasps_for_detection(det, depth_m, intr, cell.grasp_cfg)
    except Exception as exc:  # noqa: BLE001 - the bench records the crash
        row['result'] = f'affordance_error: {exc!r}'
        return row
    row['affordance_ms'] = 1e3 * (time.perf_counter() - t0)
    base = to_frame(res, T_base_cam, 'base_link').candidates
    row['candidates'] = [{'kind': c.kind, 'opening_mm': 1e3 * c.opening_m,
                          'score': round(c.score, 3),
                          'z_above_table_mm': 1e3 * ((cell.T_world_base @ np.r_[c.position, 1])[2]
                                                     - cell.cell.table.top_z)}
                         for c in base]
    if not base:
        row['result'] = f'no_grasp: {res.diagnostic}'
        return row
    remaining = list(base)
    for attempt in range(max_attempts):
        if not remaining:
            break
        grasp = grasp_record(remaining[0], det, T_base_cam, with_offset=not baseline)
        place = pose_from_quaternion(*cell.places.place_pose('fixture', grasp))
        cands = [GraspCandidate(c.matrix(), c.opening_m, c.score) for c in remaining]
        t0 = time.perf_counter()
        plan = cell.planner.plan(cell.q_now(), cands, place, '',
                                 None if baseline else carried_box(det, T_base_cam))
        entry = {'plan_s': time.perf_counter() - t0, 'code': plan.error_code.name,
                 'message': plan.message[:300]}
        if not plan.success:
            entry['result'] = 'plan_failed'
            row['attempts'].append(entry)
            break
        used = remaining[plan.grasp_index]
        entry.update(kind=used.kind, opening_mm=1e3 * used.opening_m, arm=plan.arm,
                     group=plan.group)
        cell.planner_grasp = cands[plan.grasp_index].pose
        # the roll actually used may be flipped; the position is the same
        entry.update(cell.execute(plan, part.part_id))
        row['attempts'].append(entry)
        if verbose:
            print(f'    attempt {attempt + 1}: {entry}', flush=True)
        if entry['result'] != 'grasp_failed':
            break
        # release + back to standing, as the node / cell_manager do
        cell.sim.reset()   # cheap stand-in for open + retreat + rest (parts back too)
        remaining = remaining[plan.grasp_index + 1:]
    row['result'] = row['attempts'][-1]['result'] if row['attempts'] else 'no attempt'
    return row


def nearest_detection(cell, dets, T_base_cam, xy_world, max_m: float = 0.06):
    """The detection (with 3D) whose centroid is nearest xy_world; None beyond max_m."""
    det, best = None, 1e9
    for d in dets:
        if not d.has_3d:
            continue
        c = cell.T_world_base @ T_base_cam @ np.r_[d.centroid_m, 1.0]
        dist = float(np.linalg.norm(c[:2] - np.asarray(xy_world)[:2]))
        if dist < best:
            det, best = d, dist
    return det if best <= max_m else None


def grasp_record(candidate, det, T_base_cam, with_offset: bool = True):
    """cell.cycle.Grasp of a base-frame candidate with the part centre's offset as cell_manager
    stores it: grasp point minus the detection's centre; zero beyond 8 cm or when not
    with_offset."""
    from humanoid_inspection.cell.cycle import Grasp
    centre = (T_base_cam @ np.r_[det.centroid_m, 1.0])[:2]
    offset = np.asarray(candidate.position[:2]) - centre
    keep = with_offset and np.hypot(*offset) <= 0.08
    return Grasp(0, candidate.score, candidate.opening_m, tuple(candidate.position),
                 tuple(_quat(candidate.rotation)),
                 offset_xy=tuple(offset) if keep else (0.0, 0.0))


def carried_box(det, T_base_cam):
    """The detection's oriented box in the base frame, as cell_manager sends it."""
    from humanoid_inspection.manipulation.pick_place import CarriedPart
    T_cam_obj = np.eye(4)
    T_cam_obj[:3, :3], T_cam_obj[:3, 3] = det.obb_rotation, det.centroid_m
    return CarriedPart(T_base_cam @ T_cam_obj, tuple(float(v) for v in det.obb_extent_m))


def _quat(R):
    from scipy.spatial.transform import Rotation
    return Rotation.from_matrix(R).as_quat()


def main(argv=None) -> int:
    """Try every part of the seeded cell; print and save the outcome per part."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--parts', type=int, default=6)
    parser.add_argument('--only', default='', help='families, comma separated')
    parser.add_argument('--index', type=int, nargs='*', default=None)
    parser.add_argument('--no-baseline', action='store_true', help='skip the baseline picks')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'cell_pick.json'))
    args = parser.parse_args(argv)
    from humanoid_inspection.sim.parts import plan_parts
    planned = plan_parts(args.parts, args.seed, 8, defect_probability=0.5)
    rows = []
    for p in planned:
        if args.only and p.family not in args.only.split(','):
            continue
        if args.index is not None and p.index not in args.index:
            continue
        print(f'part {p.index} {p.part_id} slot {p.slot}', flush=True)
        row = try_part(args.seed, args.parts, p.index)
        if not args.no_baseline:
            row['baseline'] = try_part(args.seed, args.parts, p.index, verbose=False,
                                       baseline=True)
            print(f"  baseline (before the fixes) -> {row['baseline']['result']}", flush=True)
        cands = [(c['kind'], round(c['opening_mm']), round(c['z_above_table_mm']))
                 for c in row.get('candidates', [])]
        print(f"  -> {row['result']}  candidates (kind, opening mm, z mm) {cands}", flush=True)
        rows.append(row)
    ok = sum(r['result'] == 'in_fixture' for r in rows)
    base = sum(r.get('baseline', {}).get('result') == 'in_fixture' for r in rows)
    print(f'in the fixture: {ok}/{len(rows)}   baseline (before the fixes): {base}/{len(rows)}')
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({'seed': args.seed, 'in_fixture': ok,
                               'baseline_in_fixture': base, 'parts': rows,
                               'command': 'python bench/bench_cell_pick.py ' +
                               ' '.join(argv if argv is not None else sys.argv[1:])},
                              indent=2, default=float))
    print(f'saved {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
