"""The simulated cell as one object: model + data, trajectory following, grasping, parts.

`Simulation` is what the ROS node, the tests and the benchmark drive. It is not threaded
itself: the caller steps it (runner.RealTimeRunner runs it at real time in its own thread)
and every method that touches MjData takes `self.lock`, so ROS callbacks (trajectories,
services) can call in from other threads.

Per physics step: the trajectory follower gives each controlled joint a set-point position
q* and velocity v*; the PD position actuator (force = kp (q* - q) + kv (v* - v)) gets
ctrl = q* + (kv / kp) v*, which is exactly that law with MuJoCo's `<position kp kv>`; then
mj_step; then the grasp model attaches/releases parts from the contacts.
"""

import json
import math
import threading
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from humanoid_inspection.sim.grasp import GraspEvent, WeldGrasp
from humanoid_inspection.sim.scene import SimScene
from humanoid_inspection.sim.trajectory_follower import (
    JointLimit, SubmitResult, Trajectory, TrajectoryFollower)


def quat_to_matrix(q: Sequence[float]) -> np.ndarray:
    """3x3 rotation of a unit quaternion (w, x, y, z)."""
    w, x, y, z = (float(v) for v in q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


class Simulation:
    """The cell's physics with controllers, grasping and the parts' ground truth."""

    def __init__(self, scene: SimScene, controllers: Mapping[str, Sequence[str]],
                 interpolation: str = 'splines', jump_tolerance: float = 0.05,
                 squeeze_margin: float = 0.0005):
        """Create data, follower and grasp model, and reset to the initial state.

        Args:
            scene: the compiled SimScene (scene.build_scene).
            controllers: controller -> joints (controllers.load_controllers).
            interpolation: follower interpolation ('splines' or 'linear').
            jump_tolerance: follower tolerance for a first point at time 0 (rad or m).
            squeeze_margin: grasp model's closing/opening margin (m).

        Raises:
            ValueError: a controller joint that the model does not actuate.
        """
        import mujoco
        self._mj = mujoco
        self.scene = scene
        self.model = scene.model
        self.data = mujoco.MjData(self.model)
        self.lock = threading.RLock()
        missing = [j for js in controllers.values() for j in js if j not in scene.actuated]
        if missing:
            raise ValueError(f"controller joint(s) {', '.join(missing)} are not actuated "
                             'joints of the robot model')
        limits = {j: JointLimit(*scene.limits[j]) for j in scene.actuated}
        self.standing = {j: float(scene.initial_qpos[scene.qpos_adr[j]])
                         for j in scene.joint_names}
        self.follower = TrajectoryFollower(controllers, limits, self.standing, interpolation,
                                           jump_tolerance)
        fj = self.follower.joint_names
        self._act = np.array([scene.actuated[j] for j in fj], dtype=int)
        self._kv_over_kp = np.array([scene.gains[j][1] / scene.gains[j][0] for j in fj])
        # joints the follower does not drive (no controller) hold their initial position
        self._uncontrolled = [(scene.actuated[j], float(scene.initial_qpos[scene.qpos_adr[j]]))
                              for j in scene.actuated if j not in set(fj)]
        self._finger_slot = {g.name: fj.index(g.finger_joint) for g in scene.grippers
                             if g.finger_joint in fj}
        self.grasp = WeldGrasp(self.model, scene.grippers, [p.body for p in scene.parts],
                               scene.welds, squeeze_margin)
        self._jq = np.array([scene.qpos_adr[j] for j in scene.joint_names], dtype=int)
        self._jv = np.array([scene.dof_adr[j] for j in scene.joint_names], dtype=int)
        self._parts = {p.part_id: p for p in scene.parts}
        self.events: List[GraspEvent] = []
        self.reset()

    # ------------------------------------------------------------------ state
    @property
    def time(self) -> float:
        """Simulation time (s)."""
        return float(self.data.time)

    @property
    def timestep(self) -> float:
        """Physics time step (s)."""
        return float(self.model.opt.timestep)

    def reset(self, keep_time: bool = True) -> None:
        """Robot to the standing pose, parts back on their slots, no grasp.

        Args:
            keep_time: keep the simulation time running (default: /clock never jumps back,
                which would upset the nodes using sim time); False = time 0.
        """
        with self.lock:
            t = float(self.data.time)
            self._mj.mj_resetData(self.model, self.data)
            if keep_time:
                self.data.time = t
            self.data.qpos[:] = self.scene.initial_qpos
            self.grasp.release_all(self.data)
            self.follower.hold(self.standing, float(self.data.time))
            for act, q in self._uncontrolled:
                self.data.ctrl[act] = q
            self._mj.mj_forward(self.model, self.data)
            self.events = []

    def step(self, n: int = 1) -> None:
        """Advance n physics steps."""
        mj = self._mj
        with self.lock:
            for _ in range(n):
                q, v = self.follower.sample(self.data.time)
                self.data.ctrl[self._act] = q + self._kv_over_kp * v
                mj.mj_step(self.model, self.data)
                if self._finger_slot:
                    events = self.grasp.update(
                        self.data, {g: q[k] for g, k in self._finger_slot.items()})
                    if events:
                        self.events.extend(events)

    def joint_positions(self) -> Dict[str, float]:
        """joint -> measured position (rad or m)."""
        with self.lock:
            return dict(zip(self.scene.joint_names, self.data.qpos[self._jq].tolist()))

    def joint_state(self) -> Tuple[List[str], np.ndarray, np.ndarray, np.ndarray, float]:
        """(names, positions, velocities, efforts, time) of every robot joint.

        Efforts are the actuator forces on each joint (N m or N; 0 for mimic joints).
        """
        with self.lock:
            return (list(self.scene.joint_names), self.data.qpos[self._jq].copy(),
                    self.data.qvel[self._jv].copy(), self.data.qfrc_actuator[self._jv].copy(),
                    float(self.data.time))

    def submit(self, controller: str, trajectory: Trajectory) -> SubmitResult:
        """Hand a trajectory to the follower at the current simulation time."""
        with self.lock:
            now = float(self.data.time)
            measured = dict(zip(self.scene.joint_names, self.data.qpos[self._jq].tolist()))
        return self.follower.submit(controller, trajectory, now, measured)

    def snapshot(self) -> Tuple[np.ndarray, np.ndarray, float]:
        """(qpos, mocap_pos, time) copies, for rendering in another thread."""
        with self.lock:
            return self.data.qpos.copy(), self.data.mocap_pos.copy(), float(self.data.time)

    # ------------------------------------------------------------------ parts
    def part(self, part_id: str):
        """The SimPart with this id (KeyError if none)."""
        return self._parts[part_id]

    def part_pose(self, part_id: str) -> np.ndarray:
        """4x4 world pose of a part's frame (centre of its seat plane)."""
        p = self._parts[part_id]
        adr = self.scene.part_qpos_adr[p.body]
        with self.lock:
            q = self.data.qpos[adr:adr + 7].copy()
        pose = np.eye(4)
        pose[:3, :3] = quat_to_matrix(q[3:7])
        pose[:3, 3] = q[:3]
        return pose

    def part_states(self) -> Tuple[Dict[str, np.ndarray], List[str], Dict[str, float]]:
        """(part id -> 4x4 world pose, ids held by a gripper, part id -> speed m/s)."""
        poses, speeds = {}, {}
        with self.lock:
            for p in self.scene.parts:
                adr = self.scene.part_qpos_adr[p.body]
                q = self.data.qpos[adr:adr + 7]
                pose = np.eye(4)
                pose[:3, :3] = quat_to_matrix(q[3:7])
                pose[:3, 3] = q[:3]
                poses[p.part_id] = pose
                dof = self.scene.part_dof_adr[p.body]
                speeds[p.part_id] = float(np.linalg.norm(self.data.qvel[dof:dof + 3]))
            held = [p.part_id for p in self.scene.parts if self.grasp.holder_of(p.body)]
        return poses, held, speeds

    def set_part_pose(self, part_id: str, xyz: Sequence[float], yaw: float = 0.0) -> None:
        """Teleport a part (test/demo helper): frame at xyz (world, m), rotated by yaw."""
        p = self._parts[part_id]
        adr = self.scene.part_qpos_adr[p.body]
        dof = self.scene.part_dof_adr[p.body]
        with self.lock:
            holder = self.grasp.holder_of(p.body)
            if holder is not None:
                self.grasp.release(self.data, holder)
            self.data.qpos[adr:adr + 3] = xyz
            self.data.qpos[adr + 3:adr + 7] = [math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)]
            self.data.qvel[dof:dof + 6] = 0.0
            self._mj.mj_forward(self.model, self.data)

    def set_expected_verdict(self, part_id: str, verdict: str) -> None:
        """Remember the verdict the grading table gives part_id's true defects (X-ray station)."""
        with self.lock:
            self._expected_verdicts = dict(getattr(self, '_expected_verdicts', {}))
            self._expected_verdicts[part_id] = verdict

    def ground_truth(self) -> dict:
        """JSON-friendly state of the cell: every part with its pose and hidden defects.

        Returns:
            {'time': s, 'parts': [{'part_id', 'family', 'seed', 'slot', 'defective',
            'expected_verdict' (once the part was X-rayed: its true defects graded),
            'defects': [{'kind', 'center_mm', 'size_mm', ...}], 'position': [x, y, z] (world,
            m), 'quaternion_wxyz': [...], 'yaw': rad, 'held_by': 'left'|'right'|None}],
            'grasped': {gripper: part_id or None}}
        """
        out = []
        with self.lock:
            t = float(self.data.time)
            held = dict(self.grasp.attached)
        by_body = {p.body: p.part_id for p in self.scene.parts}
        for p in self.scene.parts:
            pose = self.part_pose(p.part_id)
            adr = self.scene.part_qpos_adr[p.body]
            quat = self.data.qpos[adr + 3:adr + 7].tolist()
            out.append({
                'part_id': p.part_id, 'family': p.family, 'seed': p.casting.seed,
                'slot': p.slot, 'defective': p.defective,
                'defects': [d.to_dict() for d in p.casting.defects],
                'position': [round(float(v), 5) for v in pose[:3, 3]],
                'quaternion_wxyz': [round(float(v), 6) for v in quat],
                'yaw': round(math.atan2(pose[1, 0], pose[0, 0]), 5),
                'held_by': self.grasp.holder_of(p.body),
            })
            verdict = getattr(self, '_expected_verdicts', {}).get(p.part_id)
            if verdict:
                out[-1]['expected_verdict'] = verdict
        return {'time': round(t, 4), 'parts': out,
                'grasped': {g: (by_body.get(b) if b else None) for g, b in held.items()}}

    def ground_truth_json(self) -> str:
        """ground_truth() as a JSON string."""
        return json.dumps(self.ground_truth(), default=_json_default)


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')


def make_trajectory(joint_names: Sequence[str], points: Sequence[Tuple],
                    start_time: float = 0.0) -> Trajectory:
    """Convenience: Trajectory from (time, positions[, velocities]) tuples."""
    from humanoid_inspection.sim.trajectory_follower import TrajectoryPoint
    pts = tuple(TrajectoryPoint(float(p[0]), tuple(float(v) for v in p[1]),
                                tuple(float(v) for v in p[2]) if len(p) > 2 else ())
                for p in points)
    return Trajectory(tuple(joint_names), pts, float(start_time))
