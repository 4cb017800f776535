"""Contact-triggered weld grasp: how a simulated gripper holds a part.

Model (chosen over a pure friction grasp because a friction grasp of a 0.3-1 kg part between
two PD-driven box fingers at a 2 ms time step slips or jitters unless the contact parameters
are tuned per part; the weld holds any part without tuning, and is what most simulated
pick-and-place benchmarks use):
- The scene declares, for every (gripper, part) pair, a MuJoCo weld equality between the
  gripper's hand body and the part's free body, inactive at start.
- A gripper ATTACHES a part when (1) both of its fingers are in contact with that part and
  (2) the gripper is closing: the finger set-point is more than `squeeze_margin` beyond the
  measured finger position towards the closed end (the fingers press on the part).
  On attachment the weld's relative pose is set to the current hand-to-part pose, so the part
  does not jump, and the constraint is switched on.
- It RELEASES the part when the finger set-point is more than `squeeze_margin` more open than
  the finger position at which it holds the part (the gripper is opening), or on reset. That
  grip position is where the fingers closed most while holding, not where they first touched:
  fingers that touched a hub's rim with their outsides at the approach opening and then closed
  on its boss hold the boss, and opening back to the approach opening lets it go (with the first
  touch as the grip, such a hub stayed welded to the hand and was carried off the table).
- One part per gripper; a part held by one gripper cannot be attached by the other.
Contacts are read from MjData.contact after each step; the check runs at the physics rate
(cheap: a pass over the active contacts).
"""

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class GripperSpec:
    """One gripper of the robot, by MuJoCo names.

    Attributes:
        name: 'left' or 'right'.
        hand_body: body the part is welded to (the hand / palm link).
        finger_bodies: the two finger bodies.
        finger_joint: the actuated finger joint (prismatic, m).
        closed_position: finger joint value of the closed gripper (m).
    """

    name: str
    hand_body: str
    finger_bodies: Tuple[str, str]
    finger_joint: str
    closed_position: float = 0.0


@dataclass(frozen=True)
class GraspEvent:
    """An attach or release."""

    gripper: str
    part_body: str
    kind: str       # 'attach' | 'release'
    time: float


class WeldGrasp:
    """Attaches and releases parts to grippers from contacts and finger commands."""

    def __init__(self, model, grippers: List[GripperSpec], part_bodies: List[str],
                 welds: Mapping[Tuple[str, str], int], squeeze_margin: float = 0.0005):
        """Set up the lookup tables.

        Args:
            model: the mujoco.MjModel.
            grippers: the grippers.
            part_bodies: names of the graspable part bodies.
            welds: (gripper name, part body) -> id of the weld equality (inactive at start).
            squeeze_margin: set-point beyond the measured finger position (m) that counts as
                closing (or opening) the gripper.

        Raises:
            ValueError: a name that is not in the model, or a missing weld.
        """
        import mujoco
        self._mj = mujoco
        self.model = model
        self.grippers = {g.name: g for g in grippers}
        self.squeeze_margin = float(squeeze_margin)

        def body_id(name):
            i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
            if i < 0:
                raise ValueError(f"no body named '{name}' in the model")
            return i

        self._hand = {g.name: body_id(g.hand_body) for g in grippers}
        self._finger_owner: Dict[int, Tuple[str, int]] = {}
        for g in grippers:
            for k, b in enumerate(g.finger_bodies):
                self._finger_owner[body_id(b)] = (g.name, k)
        self._part_ids = {body_id(p): p for p in part_bodies}
        self._part_body_id = {p: i for i, p in self._part_ids.items()}
        self._qadr: Dict[str, int] = {}
        self._close_sign: Dict[str, float] = {}
        for g in grippers:
            j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, g.finger_joint)
            if j < 0:
                raise ValueError(f"no joint named '{g.finger_joint}' in the model")
            self._qadr[g.name] = int(model.jnt_qposadr[j])
            # which way is "closing": towards closed_position from the middle of the range
            lo, hi = model.jnt_range[j]
            self._close_sign[g.name] = -1.0 if g.closed_position <= 0.5 * (lo + hi) else 1.0
        self.welds = dict(welds)
        for g in grippers:
            for p in part_bodies:
                if (g.name, p) not in self.welds:
                    raise ValueError(f"no weld equality for gripper '{g.name}' and part '{p}'")
        self.attached: Dict[str, Optional[str]] = {g.name: None for g in grippers}
        self._grip_position: Dict[str, float] = {g.name: 0.0 for g in grippers}

    def finger_position(self, data, gripper: str) -> float:
        """Measured position of the gripper's finger joint (m)."""
        return float(data.qpos[self._qadr[gripper]])

    def grip_position(self, gripper: str) -> Optional[float]:
        """Finger position at which gripper holds its part (m); None when it holds nothing."""
        return self._grip_position[gripper] if self.attached[gripper] is not None else None

    def touching(self, data) -> Dict[str, Dict[str, set]]:
        """gripper -> part body -> set of finger indices (0, 1) touching it now."""
        out: Dict[str, Dict[str, set]] = {g: {} for g in self.grippers}
        bodyid = self.model.geom_bodyid
        for i in range(data.ncon):
            c = data.contact[i]
            b1, b2 = int(bodyid[c.geom1]), int(bodyid[c.geom2])
            for fb, pb in ((b1, b2), (b2, b1)):
                if fb in self._finger_owner and pb in self._part_ids:
                    g, k = self._finger_owner[fb]
                    out[g].setdefault(self._part_ids[pb], set()).add(k)
        return out

    def update(self, data, finger_setpoints: Mapping[str, float]) -> List[GraspEvent]:
        """Attach/release from the current contacts and finger set-points; return the events."""
        events: List[GraspEvent] = []
        touching = None
        for name in self.grippers:
            sp = finger_setpoints.get(name)
            if sp is None:
                continue
            finger = self.finger_position(data, name)
            push = self._close_sign[name] * (float(sp) - finger)
            held = self.attached[name]
            if held is not None:
                # the fingers may close further after the first touch: the grip is the most
                # closed position while holding
                if self._close_sign[name] * (finger - self._grip_position[name]) > 0:
                    self._grip_position[name] = finger
                # opening: the set-point is more open than where the fingers closed on the part
                opening = self._close_sign[name] * (float(sp) - self._grip_position[name])
                if opening < -self.squeeze_margin:
                    self._set_active(data, name, held, False)
                    events.append(GraspEvent(name, held, 'release', float(data.time)))
                continue
            if push <= self.squeeze_margin:
                continue
            if touching is None:
                touching = self.touching(data)
            for part, fingers in touching[name].items():
                if len(fingers) == 2 and part not in self.attached.values():
                    self._attach(data, name, part)
                    events.append(GraspEvent(name, part, 'attach', float(data.time)))
                    break
        return events

    def release_all(self, data) -> None:
        """Switch every weld off (reset)."""
        for (g, p), eq in self.welds.items():
            data.eq_active[eq] = 0
        for g in self.attached:
            self.attached[g] = None

    def release(self, data, gripper: str) -> None:
        """Release whatever gripper holds (no-op if nothing)."""
        held = self.attached.get(gripper)
        if held is not None:
            self._set_active(data, gripper, held, False)

    def _attach(self, data, gripper: str, part: str) -> None:
        eq = self.welds[(gripper, part)]
        h = self._hand[gripper]
        b = self._part_body_id[part]
        # weld data: anchor (in body2 = part), the same point in body1 (hand), relative quat
        # of body2 in body1, torque scale. Anchor at the part origin.
        r1 = data.xmat[h].reshape(3, 3)
        rel_pos = r1.T @ (data.xpos[b] - data.xpos[h])
        q1_inv = np.zeros(4)
        self._mj.mju_negQuat(q1_inv, data.xquat[h])
        rel_quat = np.zeros(4)
        self._mj.mju_mulQuat(rel_quat, q1_inv, data.xquat[b])
        d = self.model.eq_data[eq]
        d[0:3] = 0.0
        d[3:6] = rel_pos
        d[6:10] = rel_quat
        d[10] = 1.0
        data.eq_active[eq] = 1
        self.attached[gripper] = part
        self._grip_position[gripper] = self.finger_position(data, gripper)

    def _set_active(self, data, gripper: str, part: str, on: bool) -> None:
        data.eq_active[self.welds[(gripper, part)]] = 1 if on else 0
        if not on:
            self.attached[gripper] = None

    def holder_of(self, part: str) -> Optional[str]:
        """The gripper holding part, or None."""
        for g, p in self.attached.items():
            if p == part:
                return g
        return None
