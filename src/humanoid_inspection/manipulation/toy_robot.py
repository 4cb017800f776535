"""A small two-arm URDF generator (waist + two 7-DoF arms + parallel grippers) for unit tests.

The joint, link and frame names follow docs CONTRACTS (``waist_yaw``, ``left_shoulder_pitch`` ...
``left_tcp``, ``left_finger_joint``), so everything in ``manipulation/`` can be exercised on a
model that is tiny, known exactly and independent of the project's humanoid description.
Collision geometry is made of boxes and cylinders, like the project's URDF.
"""

ARM_JOINT_SUFFIXES = ('shoulder_pitch', 'shoulder_roll', 'shoulder_yaw', 'elbow',
                      'wrist_yaw', 'wrist_pitch', 'wrist_roll')

# axis, origin xyz (from the parent link), limits (lower, upper) rad, velocity rad/s
_ARM_CHAIN = (
    ('0 1 0', '0 {s}0.20 0.30', (-2.8, 2.0), 2.5),
    ('1 0 0', '0 {s}0.05 0', (-1.6, 1.6), 2.5),
    ('0 0 1', '0 0 -0.12', (-2.6, 2.6), 3.0),
    ('0 1 0', '0 0 -0.16', (-2.4, 0.0), 3.0),
    ('0 0 1', '0 0 -0.12', (-2.8, 2.8), 4.0),
    ('0 1 0', '0 0 -0.14', (-1.5, 1.5), 4.0),
    ('1 0 0', '0 0 -0.04', (-2.8, 2.8), 4.0),
)


def _box(size, xyz='0 0 0'):
    return (f'<collision><origin xyz="{xyz}" rpy="0 0 0"/><geometry>'
            f'<box size="{size}"/></geometry></collision>')


def _cyl(radius, length, xyz='0 0 0'):
    return (f'<collision><origin xyz="{xyz}" rpy="0 0 0"/><geometry>'
            f'<cylinder radius="{radius}" length="{length}"/></geometry></collision>')


def _inertial(mass=1.0):
    return (f'<inertial><mass value="{mass}"/><origin xyz="0 0 0"/>'
            '<inertia ixx="0.01" ixy="0" ixz="0" iyy="0.01" iyz="0" izz="0.01"/></inertial>')


def _link(name, collision=''):
    return f'<link name="{name}">{_inertial()}{collision}</link>'


def _joint(name, jtype, parent, child, xyz, axis='0 0 1', limits=None, vel=2.0, extra=''):
    limit = ''
    if limits is not None:
        limit = (f'<limit lower="{limits[0]}" upper="{limits[1]}" effort="50" '
                 f'velocity="{vel}"/>')
    return (f'<joint name="{name}" type="{jtype}"><parent link="{parent}"/>'
            f'<child link="{child}"/><origin xyz="{xyz}" rpy="0 0 0"/>'
            f'<axis xyz="{axis}"/>{limit}{extra}</joint>')


def toy_humanoid_urdf() -> str:
    """Return the URDF XML of the toy robot (root link ``base_link``).

    Returns:
        URDF XML string: base_link -> waist_yaw -> torso -> two 7-DoF arms, each ending in a
        palm with two prismatic fingers (``<side>_finger_joint`` and its mirror) and a fixed
        ``<side>_tcp`` frame whose x axis points out of the palm.
    """
    parts = ['<?xml version="1.0"?><robot name="toy_humanoid">']
    parts.append(_link('base_link', _box('0.25 0.30 0.15')))
    parts.append(_link('torso', _box('0.20 0.30 0.40', '0 0 0.25')))
    parts.append(_joint('waist_yaw', 'revolute', 'base_link', 'torso', '0 0 0.1',
                        limits=(-1.0, 1.0), vel=1.5))
    for side, sign in (('left', ''), ('right', '-')):
        parent = 'torso'
        for i, (suffix, (axis, xyz, lim, vel)) in enumerate(zip(ARM_JOINT_SUFFIXES, _ARM_CHAIN)):
            child = f'{side}_{suffix}_link'
            geom = ''
            if suffix == 'shoulder_yaw':
                geom = _cyl(0.045, 0.14, '0 0 -0.06')
            elif suffix == 'wrist_yaw':
                geom = _cyl(0.04, 0.12, '0 0 -0.06')
            elif suffix == 'wrist_roll':
                geom = _box('0.06 0.08 0.04', '0 0 -0.02')
            parts.append(_link(child, geom))
            parts.append(_joint(f'{side}_{suffix}', 'revolute', parent, child,
                                xyz.format(s=sign), axis, lim, vel))
            parent = child
        # palm: tcp x axis points down the forearm (-z of the wrist) -> rotate with rpy
        parts.append(_link(f'{side}_palm', ''))
        parts.append(f'<joint name="{side}_palm_fixed" type="fixed"><parent link="{parent}"/>'
                     f'<child link="{side}_palm"/><origin xyz="0 0 -0.04" rpy="0 1.5707963 0"/>'
                     '</joint>')
        for finger, fsign, extra in (
                ('finger', '', ''),
                ('finger_mirror', '-',
                 f'<mimic joint="{side}_finger_joint" multiplier="1" offset="0"/>')):
            link = f'{side}_{finger}_link'
            parts.append(_link(link, _box('0.05 0.01 0.02', '0.025 0 0')))
            parts.append(_joint(f'{side}_{finger}_joint', 'prismatic', f'{side}_palm', link,
                                '0.0 0 0', f'0 {fsign}1 0', (0.0, 0.05), 0.1, extra))
        parts.append(_link(f'{side}_tcp', ''))
        parts.append(f'<joint name="{side}_tcp_fixed" type="fixed"><parent link="{side}_palm"/>'
                     f'<child link="{side}_tcp"/><origin xyz="0.05 0 0" rpy="0 0 0"/></joint>')
    parts.append('</robot>')
    return ''.join(parts)


TOY_ARM_JOINTS = {side: [f'{side}_{s}' for s in ARM_JOINT_SUFFIXES] for side in ('left', 'right')}
TOY_GRIPPER_JOINTS = {side: [f'{side}_finger_joint'] for side in ('left', 'right')}
TOY_WAIST_JOINTS = ['waist_yaw']
