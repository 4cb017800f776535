"""Build the MuJoCo model of the cell: the humanoid from its URDF + the cell from cell.yaml.

Steps (`build_scene`):
1. The expanded URDF gets a `<mujoco><compiler discardvisual="false" fusestatic="false"/>`
   block and is parsed by `mujoco.MjSpec.from_string` (MuJoCo's URDF importer: the root link is
   fixed to the world, mimic joints become joint equalities). base_link is placed at
   `robot.base_xyz/base_rpy` of cell.yaml (FIXED-BASE mode).
2. Robot: every robot body gets gravity compensation (`gravcomp=1`, as a torque controller
   with a gravity feed-forward would give); every movable joint gets rotor armature and a
   joint-space PD position actuator (`<position kp kv>`; force range = the URDF effort limit).
   Gains come from a natural frequency and damping ratio per joint group
   (`ActuatorGroupGains`), applied to the joint's effective inertia at the standing pose:
   kp = I w^2, kv = 2 zeta I w. The mirror finger joints follow their finger through the
   URDF mimic (a joint equality), so each gripper has one actuator.
3. Cell (from the CellGeometry): floor, table (slab + legs) with its part slots, the X-ray
   cabinet (solid base, chamber walls with the loading port open, roof) and the fixture seat,
   accept/reject bins on stands, the review tray, lights.
4. Head camera: an MJCF camera on the body of `head_camera_optical_frame` (turned 180 deg
   about x: MuJoCo cameras look down -z with y up), vertical fov from cell.yaml.
5. Sleeping (MuJoCo 4) is on: parts at rest cost nothing until something wakes them.
6. Parts: free bodies with primitive collision shapes (parts.py) on their table slots, and
   one inactive weld equality per (gripper, part) for the grasp model (grasp.py).

Collision filtering (contype/conaffinity bits: 1 cell, 2 robot, 4 parts): the robot collides
with the cell and the parts but not with itself (the planner checks self-collision) nor with
the floor (its feet stand on it); parts collide with everything.
"""

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from humanoid_inspection.sim.grasp import GripperSpec
from humanoid_inspection.sim.parts import BoxShape, CylinderShape, SimPart

CAMERA_NAME = 'head_camera'
OPTICAL_FRAME = 'head_camera_optical_frame'
# contype / conaffinity bits
CELL_BIT, ROBOT_BIT, PART_BIT = 1, 2, 4
PART_RGBA = (0.72, 0.74, 0.78, 1.0)
MUJOCO_BLOCK = ('<mujoco><compiler discardvisual="false" fusestatic="false" '
                'strippath="false" balanceinertia="true"/></mujoco>')


class SceneError(ValueError):
    """The URDF or the cell cannot be turned into a simulation (the message says why)."""


@dataclass(frozen=True)
class ActuatorGroupGains:
    """PD tuning of one joint group: natural frequency (rad/s), damping ratio, armature."""

    omega: float
    zeta: float = 1.0
    armature: float = 0.05
    kp_min: float = 5.0


# Joint-name prefix (first match wins) -> gains. Documented in docs/simulation.md.
DEFAULT_GAINS: Tuple[Tuple[str, ActuatorGroupGains], ...] = (
    ('finger', ActuatorGroupGains(omega=40.0, zeta=1.0, armature=0.1, kp_min=3000.0)),
    ('wrist', ActuatorGroupGains(omega=60.0, zeta=1.0, armature=0.02)),
    ('neck', ActuatorGroupGains(omega=30.0, zeta=1.0, armature=0.02)),
    ('waist', ActuatorGroupGains(omega=25.0, zeta=1.0, armature=0.2)),
    ('hip', ActuatorGroupGains(omega=25.0, zeta=1.0, armature=0.2)),
    ('knee', ActuatorGroupGains(omega=25.0, zeta=1.0, armature=0.2)),
    ('ankle', ActuatorGroupGains(omega=25.0, zeta=1.0, armature=0.1)),
    ('', ActuatorGroupGains(omega=30.0, zeta=1.0, armature=0.1)),
)


@dataclass(frozen=True)
class SceneOptions:
    """Tunables of the scene (defaults = config/mujoco_sim.yaml's)."""

    timestep: float = 0.002
    image_width: int = 640
    image_height: int = 480
    gains: Tuple[Tuple[str, ActuatorGroupGains], ...] = DEFAULT_GAINS
    part_friction: float = 1.0
    sleep: bool = True
    weld_solref: Tuple[float, float] = (0.01, 1.0)


@dataclass
class SimScene:
    """The compiled model and the names/indices the simulation needs.

    Attributes:
        model: the mujoco.MjModel.
        joint_names: robot joints reported in joint_states (all movable URDF joints).
        actuated: joint -> actuator id (joints driven by a PD actuator).
        gains: joint -> (kp, kv) actually used.
        limits: joint -> (lower, upper, velocity) from the URDF.
        parts: the spawned parts.
        grippers: the grippers for the grasp model.
        welds: (gripper, part body) -> weld equality id.
        initial_qpos: standing pose + parts on their slots.
        fixture_pose: 4x4 world pose of the fixture seat surface.
        cell: the CellGeometry.
    """

    model: object
    joint_names: List[str]
    actuated: Dict[str, int]
    gains: Dict[str, Tuple[float, float]]
    limits: Dict[str, Tuple[float, float, float]]
    parts: List[SimPart]
    grippers: List[GripperSpec]
    welds: Dict[Tuple[str, str], int]
    initial_qpos: np.ndarray
    fixture_pose: np.ndarray
    cell: object
    qpos_adr: Dict[str, int] = field(default_factory=dict)
    dof_adr: Dict[str, int] = field(default_factory=dict)
    part_qpos_adr: Dict[str, int] = field(default_factory=dict)
    part_dof_adr: Dict[str, int] = field(default_factory=dict)

    @property
    def camera(self) -> str:
        """Name of the head camera in the model."""
        return CAMERA_NAME


# ------------------------------------------------------------------------------ helpers
def rpy_quat(rpy: Sequence[float]) -> np.ndarray:
    """Quaternion (w, x, y, z) of URDF roll-pitch-yaw (R = Rz Ry Rx)."""
    r, p, y = (float(v) / 2.0 for v in rpy)
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), \
        math.cos(y), math.sin(y)
    return np.array([cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy,
                     cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy])


def yaw_quat(yaw: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation about z."""
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


def urdf_joint_limits(urdf_xml: str) -> Dict[str, Tuple[float, float, float]]:
    """joint -> (lower, upper, velocity) of the movable joints of a URDF (continuous: +-inf)."""
    root = ET.fromstring(urdf_xml)
    out = {}
    for j in root.iter('joint'):
        kind = j.get('type')
        if kind in ('fixed', 'floating', 'planar', None):
            continue
        lim = j.find('limit')
        lo = float(lim.get('lower', '0')) if lim is not None else -math.inf
        hi = float(lim.get('upper', '0')) if lim is not None else math.inf
        vel = float(lim.get('velocity', 'inf')) if lim is not None else math.inf
        if kind == 'continuous':
            lo, hi = -math.inf, math.inf
        out[j.get('name')] = (lo, hi, vel if vel > 0 else math.inf)
    return out


def urdf_mimic_joints(urdf_xml: str) -> Dict[str, str]:
    """mimic joint -> the joint it follows."""
    root = ET.fromstring(urdf_xml)
    return {j.get('name'): j.find('mimic').get('joint')
            for j in root.iter('joint') if j.find('mimic') is not None}


def prepare_urdf(urdf_xml: str) -> str:
    """The URDF with MuJoCo's compiler block inserted (replacing any it already has)."""
    if not urdf_xml or '<robot' not in urdf_xml:
        raise SceneError('the robot description is empty or not a URDF (no <robot> element)')
    try:
        ET.fromstring(urdf_xml)
    except ET.ParseError as exc:
        raise SceneError(f'the robot description is not valid XML: {exc}') from exc
    text = re.sub(r'<mujoco>.*?</mujoco>', '', urdf_xml, flags=re.S)
    m = re.search(r'<robot\b[^>]*>', text)
    return text[:m.end()] + MUJOCO_BLOCK + text[m.end():]


def _gains_for(name: str, table) -> ActuatorGroupGains:
    for prefix, g in table:
        if prefix in name:
            return g
    return table[-1][1]


def _box(body, name, pos, half, rgba, contype=CELL_BIT, conaffinity=ROBOT_BIT | PART_BIT,
         quat=None, group=0):
    import mujoco
    g = body.add_geom()
    g.name = name
    g.type = mujoco.mjtGeom.mjGEOM_BOX
    g.size = [float(v) for v in half]
    g.pos = [float(v) for v in pos]
    if quat is not None:
        g.quat = [float(v) for v in quat]
    g.rgba = list(rgba)
    g.contype = contype
    g.conaffinity = conaffinity
    g.group = group
    return g


# ------------------------------------------------------------------------------ the cell
def add_cell(spec, cell) -> None:
    """Add floor, table, X-ray cabinet + fixture, bins, review tray and lights to spec."""
    import mujoco
    wb = spec.worldbody
    tex = spec.add_texture()
    tex.name = 'floor_tex'
    tex.type = mujoco.mjtTexture.mjTEXTURE_2D
    tex.builtin = mujoco.mjtBuiltin.mjBUILTIN_CHECKER
    tex.rgb1 = [0.32, 0.34, 0.36]
    tex.rgb2 = [0.27, 0.29, 0.31]
    tex.width = 256
    tex.height = 256
    mat = spec.add_material()
    mat.name = 'floor_mat'
    mat.textures = ['', 'floor_tex'] + [''] * 8
    mat.texrepeat = [8, 8]
    floor = wb.add_geom()
    floor.name = 'floor'
    floor.type = mujoco.mjtGeom.mjGEOM_PLANE
    floor.size = [4.0, 4.0, 0.05]
    floor.material = 'floor_mat'
    floor.contype = CELL_BIT
    floor.conaffinity = PART_BIT

    # Table: slab (pose = centre of the top surface) + four legs.
    t = cell.table
    table = wb.add_body()
    table.name = 'table'
    table.pos = list(t.pose.xyz)
    table.quat = list(rpy_quat(t.pose.rpy))
    sx, sy, sz = t.size
    _box(table, 'table_top', (0, 0, -sz / 2), (sx / 2, sy / 2, sz / 2), (0.55, 0.42, 0.30, 1))
    leg_h = t.pose.xyz[2] - sz
    ls = t.leg_size
    for i, (fx, fy) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1))):
        _box(table, f'table_leg{i}', (fx * (sx / 2 - ls / 2), fy * (sy / 2 - ls / 2),
                                      -sz - leg_h / 2),
             (ls / 2, ls / 2, leg_h / 2), (0.3, 0.3, 0.3, 1))
    # Part slot markers (visual only, a hair above the top).
    for i, (x, y) in enumerate(t.part_slots):
        local = np.linalg.inv(t.pose.matrix()) @ np.array([x, y, t.pose.xyz[2], 1.0])
        _box(table, f'slot_mark{i}', (local[0], local[1], 0.0002),
             (t.slot_size[0] / 2, t.slot_size[1] / 2, 0.0002), (0.62, 0.50, 0.36, 1),
             contype=0, conaffinity=0, group=2)

    # X-ray cabinet: pose = centre of the footprint on the floor.
    c = cell.xray_cabinet
    cab = wb.add_body()
    cab.name = 'xray_cabinet'
    cab.pos = list(c.pose.xyz)
    cab.quat = list(rpy_quat(c.pose.rpy))
    cx, cy, cz = c.size
    w = c.wall_thickness
    grey = (0.78, 0.80, 0.74, 1.0)
    _box(cab, 'cabinet_base', (0, 0, c.base_height / 2), (cx / 2, cy / 2, c.base_height / 2),
         grey)
    ch = cz - c.base_height          # chamber height including the roof
    zc = c.base_height + ch / 2
    walls = {
        '+x': ((cx / 2 - w / 2, 0, zc), (w / 2, cy / 2, ch / 2)),
        '-x': ((-cx / 2 + w / 2, 0, zc), (w / 2, cy / 2, ch / 2)),
        '+y': ((0, cy / 2 - w / 2, zc), (cx / 2, w / 2, ch / 2)),
        '-y': ((0, -cy / 2 + w / 2, zc), (cx / 2, w / 2, ch / 2)),
    }
    for side, (pos, half) in walls.items():
        if side != c.open_side:
            _box(cab, f'cabinet_wall{side}', pos, half, grey)
    _box(cab, 'cabinet_roof', (0, 0, cz - w / 2), (cx / 2, cy / 2, w / 2), grey)
    # X-ray tube housing under the roof (visual cue), yellow radiation stripe at the port.
    _box(cab, 'xray_tube', (0, 0, cz - w - 0.04), (0.05, 0.05, 0.04), (0.2, 0.2, 0.22, 1),
         contype=0, conaffinity=0, group=2)
    f = c.fixture
    fixture = wb.add_body()
    fixture.name = 'xray_fixture'
    fixture.pos = list(f.pose.xyz)
    fixture.quat = list(rpy_quat(f.pose.rpy))
    _box(fixture, 'fixture_seat', (0, 0, -f.size[2] / 2),
         (f.size[0] / 2, f.size[1] / 2, f.size[2] / 2), (0.15, 0.35, 0.75, 1))

    # Bins on stands: pose = centre of the inner bottom surface.
    for b in (cell.accept_bin, cell.reject_bin):
        body = wb.add_body()
        body.name = f'{b.name}_bin'
        body.pos = list(b.pose.xyz)
        body.quat = list(rpy_quat(b.pose.rpy))
        ix, iy = b.inner_size
        wt, wh = b.wall_thickness, b.wall_height
        _box(body, f'{b.name}_bin_floor', (0, 0, -wt / 2), (ix / 2 + wt, iy / 2 + wt, wt / 2),
             b.colour)
        for side, (pos, half) in {
                'px': ((ix / 2 + wt / 2, 0, wh / 2), (wt / 2, iy / 2 + wt, wh / 2)),
                'nx': ((-ix / 2 - wt / 2, 0, wh / 2), (wt / 2, iy / 2 + wt, wh / 2)),
                'py': ((0, iy / 2 + wt / 2, wh / 2), (ix / 2, wt / 2, wh / 2)),
                'ny': ((0, -iy / 2 - wt / 2, wh / 2), (ix / 2, wt / 2, wh / 2))}.items():
            _box(body, f'{b.name}_bin_wall_{side}', pos, half, b.colour)
        stand_h = b.pose.xyz[2] - wt
        if stand_h > 0:
            _box(body, f'{b.name}_bin_stand', (0, 0, -wt - stand_h / 2),
                 (min(ix, iy) / 4, min(ix, iy) / 4, stand_h / 2), (0.3, 0.3, 0.3, 1))

    r = cell.review
    tray = wb.add_body()
    tray.name = 'review_tray'
    tray.pos = list(r.pose.xyz)
    tray.quat = list(rpy_quat(r.pose.rpy))
    _box(tray, 'review_tray_mark', (0, 0, 0.0003), (r.size[0] / 2, r.size[1] / 2, 0.0003),
         (0.95, 0.80, 0.10, 1), contype=0, conaffinity=0, group=2)

    for i, (pos, d) in enumerate((((0.4, 0.0, 2.6), (0.0, 0.0, -1.0)),
                                  ((-0.6, 0.6, 2.2), (0.4, -0.3, -1.0)))):
        light = wb.add_light()
        light.name = f'ceiling_light{i}'
        light.pos = list(pos)
        light.dir = list(d)
        light.castshadow = False
        light.diffuse = [0.55, 0.55, 0.55] if i == 0 else [0.3, 0.3, 0.3]
        light.specular = [0.1, 0.1, 0.1]


def add_part(spec, part: SimPart, xyz: Sequence[float], yaw: float,
             friction: float = 1.0) -> None:
    """Add one part as a free body (origin = centre of its seat plane) at xyz with yaw."""
    import mujoco
    body = spec.worldbody.add_body()
    body.name = part.body
    body.pos = [float(v) for v in xyz]
    body.quat = list(yaw_quat(yaw))
    j = body.add_freejoint()
    j.name = f'{part.body}_free'
    for k, s in enumerate(part.shapes):
        g = body.add_geom()
        g.name = f'{part.body}_g{k}'
        if isinstance(s, BoxShape):
            g.type = mujoco.mjtGeom.mjGEOM_BOX
            g.size = list(s.half)
            g.quat = list(yaw_quat(s.yaw))
        elif isinstance(s, CylinderShape):
            g.type = mujoco.mjtGeom.mjGEOM_CYLINDER
            g.size = [s.radius, s.half_height, 0.0]
        else:
            raise SceneError(f'unknown part shape {s!r}')
        g.pos = list(s.center)
        g.density = 2700.0
        g.rgba = list(PART_RGBA)
        g.friction = [friction, 0.01, 0.001]
        g.contype = PART_BIT
        g.conaffinity = CELL_BIT | ROBOT_BIT | PART_BIT
        g.condim = 4


# ------------------------------------------------------------------------------ the robot
def _robot_bodies(spec) -> List[object]:
    return [b for b in spec.bodies if b.name and b.name != 'world']


def build_scene(urdf_xml: str, cell, parts: Sequence[SimPart],
                standing: Optional[Mapping[str, float]] = None,
                options: SceneOptions = SceneOptions()) -> SimScene:
    """Compile the simulation model of the cell.

    Args:
        urdf_xml: the expanded URDF (robot_description.expand_xacro()).
        cell: the CellGeometry (cell_geometry.load_cell()).
        parts: the parts to spawn (parts.plan_parts()).
        standing: joint -> initial position (the standing pose); others start at 0.
        options: SceneOptions.

    Returns:
        The SimScene.

    Raises:
        SceneError: the URDF does not parse/compile or lacks the head camera frame or the
            finger joints.
    """
    import mujoco
    standing = dict(standing or {})
    text = prepare_urdf(urdf_xml)
    limits = urdf_joint_limits(urdf_xml)
    mimic = urdf_mimic_joints(urdf_xml)
    try:
        spec = mujoco.MjSpec.from_string(text)
    except Exception as exc:
        raise SceneError(f'MuJoCo cannot read the URDF: {exc}') from exc
    spec.modelname = 'inspection_cell'
    spec.option.timestep = float(options.timestep)
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.noslip_iterations = 0
    if options.sleep:
        # Parts at rest sleep (no collision/solver work) until touched, moved or welded:
        # this takes a step from ~250 us to ~50 us with 8 parts on the table.
        spec.option.enableflags |= int(mujoco.mjtEnableBit.mjENBL_SLEEP)
    spec.visual.global_.offwidth = max(int(options.image_width), 640)
    spec.visual.global_.offheight = max(int(options.image_height), 480)
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.45, 0.45, 0.45]
    spec.visual.headlight.specular = [0.05, 0.05, 0.05]
    spec.visual.quality.shadowsize = 0

    robot_bodies = _robot_bodies(spec)
    base = spec.body('base_link')
    if base is None:
        raise SceneError("the URDF has no link named 'base_link'")
    base.pos = list(cell.robot.pose.xyz)
    base.quat = list(rpy_quat(cell.robot.pose.rpy))
    for b in robot_bodies:
        b.gravcomp = 1.0
    for g in spec.geoms:
        if g.contype == 0 and g.conaffinity == 0:
            g.group = 1             # URDF visual: shown
        else:
            g.contype = ROBOT_BIT   # URDF collision: hidden, collides with cell + parts
            g.conaffinity = 0
            g.group = 3
            g.condim = 4
            g.friction = [1.0, 0.01, 0.001]

    optical = spec.body(OPTICAL_FRAME)
    if optical is None:
        raise SceneError(f"the URDF has no link named '{OPTICAL_FRAME}' (head camera)")
    cam = optical.add_camera()
    cam.name = CAMERA_NAME
    cam.quat = [0.0, 1.0, 0.0, 0.0]   # optical (z fwd, y down) -> MuJoCo (-z fwd, y up)
    cam.fovy = math.degrees(cell.head_camera.vertical_fov)

    joint_names = [j.name for j in spec.joints if j.name in limits]
    actuated_joints = [j for j in joint_names if j not in mimic]
    for j in spec.joints:
        if j.name in limits:
            j.armature = _gains_for(j.name, options.gains).armature
    for name in actuated_joints:
        a = spec.add_actuator()
        a.name = name
        a.target = name
        a.trntype = mujoco.mjtTrn.mjTRN_JOINT
        a.set_to_position(kp=100.0, kv=10.0)     # replaced below by the tuned gains
        a.ctrllimited = False

    add_cell(spec, cell)
    table = cell.table
    for p in parts:
        x, y = table.part_slots[p.slot]
        add_part(spec, p, (x, y, table.top_z + 0.0005), p.yaw, options.part_friction)

    grippers = _grippers(spec, mimic, cell)
    welds_named = []
    for g in grippers:
        for p in parts:
            e = spec.add_equality()
            e.name = f'weld_{g.name}_{p.body}'
            e.type = mujoco.mjtEq.mjEQ_WELD
            e.objtype = mujoco.mjtObj.mjOBJ_BODY
            e.name1 = g.hand_body
            e.name2 = p.body
            e.active = False
            e.solref = list(options.weld_solref)
            welds_named.append((g.name, p.body, e.name))
    try:
        model = spec.compile()
    except Exception as exc:
        raise SceneError(f'MuJoCo cannot compile the cell scene: {exc}') from exc

    qpos_adr, dof_adr = {}, {}
    for name in joint_names:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        qpos_adr[name] = int(model.jnt_qposadr[jid])
        dof_adr[name] = int(model.jnt_dofadr[jid])
    part_adr, part_dof = {}, {}
    for p in parts:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f'{p.body}_free')
        part_adr[p.body] = int(model.jnt_qposadr[jid])
        part_dof[p.body] = int(model.jnt_dofadr[jid])
    qpos0 = model.qpos0.copy()
    for name in joint_names:
        lo, hi, _ = limits[name]
        value = float(standing.get(name, 0.0))
        if name in mimic and mimic[name] in standing:
            value = float(standing[mimic[name]])
        qpos0[qpos_adr[name]] = min(max(value, lo), hi)
    actuated = {name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, name)
                for name in actuated_joints}
    gains = _tune_gains(model, qpos0, actuated, dof_adr, options.gains)
    welds = {(g, b): mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_EQUALITY, n)
             for g, b, n in welds_named}
    f = cell.xray_cabinet.fixture
    return SimScene(model=model, joint_names=joint_names, actuated=actuated, gains=gains,
                    limits={j: limits[j] for j in joint_names}, parts=list(parts),
                    grippers=grippers, welds=welds, initial_qpos=qpos0,
                    fixture_pose=f.pose.matrix(), cell=cell, qpos_adr=qpos_adr,
                    dof_adr=dof_adr, part_qpos_adr=part_adr, part_dof_adr=part_dof)


def _grippers(spec, mimic: Mapping[str, str], cell) -> List[GripperSpec]:
    """GripperSpecs from the finger joints ('<side>_finger_joint' + its mimic)."""
    out = []
    for side in ('left', 'right'):
        name = f'{side}_finger_joint'
        j = spec.joint(name)
        if j is None:
            raise SceneError(f"the URDF has no joint '{name}' (gripper)")
        finger = j.parent
        mirror_names = [m for m, src in mimic.items() if src == name]
        if not mirror_names:
            raise SceneError(f"no mimic joint follows '{name}' (second finger)")
        mirror = spec.joint(mirror_names[0]).parent
        hand = finger.parent
        if mirror.parent.name != hand.name:
            raise SceneError(f'the fingers of the {side} gripper have different parents')
        out.append(GripperSpec(side, hand.name, (finger.name, mirror.name), name,
                               closed_position=0.0))
    return out


def _tune_gains(model, qpos0, actuated: Mapping[str, int], dof_adr: Mapping[str, int],
                table) -> Dict[str, Tuple[float, float]]:
    """Set kp = I w^2, kv = 2 zeta I w per actuator from the joint inertia at qpos0."""
    import mujoco
    data = mujoco.MjData(model)
    data.qpos[:] = qpos0
    mujoco.mj_forward(model, data)
    full = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, full)
    gains = {}
    for name, act in actuated.items():
        g = _gains_for(name, table)
        inertia = float(full[dof_adr[name], dof_adr[name]])   # includes the armature
        kp = max(inertia * g.omega ** 2, g.kp_min)
        kv = 2.0 * g.zeta * math.sqrt(kp * inertia)
        model.actuator_gainprm[act, 0] = kp
        model.actuator_biasprm[act, 1] = -kp
        model.actuator_biasprm[act, 2] = -kv
        gains[name] = (kp, kv)
    return gains
