"""Top view of the inspection cell (docs/images/cell_layout.png) and the joint-limits table.

    python -m humanoid_inspection.sim.cell_layout            # writes docs/images/cell_layout.png
                                                             # and prints the limits table

Both are derived from config/cell.yaml and urdf/humanoid.urdf.xacro, so the documentation can
be regenerated after a change (tests/test_description_docs.py checks the table in
docs/robot_and_cell.md). Pure Python (matplotlib with the Agg backend), no ROS.
"""

import argparse
import math
import sys
from pathlib import Path
from typing import Optional, Sequence

from humanoid_inspection import robot_description as rd
from humanoid_inspection.cell_geometry import CellGeometry, load_cell


def joint_limits_table(urdf_xml: Optional[str] = None) -> str:
    """Returns a Markdown table of every movable joint: type, axis, limits, velocity, effort.

    Args:
        urdf_xml: the URDF (default: `robot_description.expand_xacro()`).
    """
    from urdf_parser_py.urdf import URDF
    robot = URDF.from_xml_string(urdf_xml or rd.expand_xacro())
    lines = ['| joint | type | axis | lower | upper | max velocity | max effort |',
             '|---|---|---|---|---|---|---|']
    for name in rd.all_movable_joints():
        joint = robot.joint_map[name]
        lim = joint.limit
        if joint.type == 'prismatic':
            lower, upper = f'{lim.lower:.3f} m', f'{lim.upper:.3f} m'
            vel, eff = f'{lim.velocity:.2f} m/s', f'{lim.effort:.0f} N'
        else:
            lower = f'{lim.lower:.2f} rad ({math.degrees(lim.lower):.0f} deg)'
            upper = f'{lim.upper:.2f} rad ({math.degrees(lim.upper):.0f} deg)'
            vel, eff = f'{lim.velocity:.1f} rad/s', f'{lim.effort:.0f} N m'
        axis = ' '.join(f'{a:g}' for a in joint.axis)
        kind = joint.type + (f' (mimics {joint.mimic.joint})' if joint.mimic else '')
        lines.append(f'| {name} | {kind} | {axis} | {lower} | {upper} | {vel} | {eff} |')
    return '\n'.join(lines)


def mass_table(urdf_xml: Optional[str] = None) -> str:
    """Returns a Markdown table of link masses grouped by body part, with the total."""
    from urdf_parser_py.urdf import URDF
    robot = URDF.from_xml_string(urdf_xml or rd.expand_xacro())
    groups = {'pelvis': 0.0, 'legs (both)': 0.0, 'torso': 0.0, 'neck + head + camera': 0.0,
              'arms + grippers (both)': 0.0}
    for link in robot.links:
        if link.inertial is None:
            continue
        name, mass = link.name, link.inertial.mass
        if name == 'base_link':
            groups['pelvis'] += mass
        elif any(k in name for k in ('hip', 'thigh', 'shank', 'ankle', 'foot')):
            groups['legs (both)'] += mass
        elif name == 'torso_link':
            groups['torso'] += mass
        elif name.startswith(('neck', 'head')):
            groups['neck + head + camera'] += mass
        else:
            groups['arms + grippers (both)'] += mass
    lines = ['| body part | mass |', '|---|---|']
    lines += [f'| {k} | {v:.1f} kg |' for k, v in groups.items()]
    lines.append(f'| **total** | **{sum(groups.values()):.1f} kg** |')
    return '\n'.join(lines)


def plot_cell_layout(cell: CellGeometry, path: Path, reach_m: float = 0.78) -> Path:
    """Draws the top view of the cell as seen from above and behind the robot.

    The robot faces up the page (world x up) and its left (world y) is to the left, so the
    page's horizontal axis is -y.

    Args:
        cell: the cell geometry.
        path: PNG to write (folders created).
        reach_m: shoulder-to-TCP reach drawn as circles around the shoulders, m.

    Returns:
        The written path.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    fig, ax = plt.subplots(figsize=(8.0, 6.4), dpi=110)

    def rect(cx, cy, sx, sy, **kw):
        """World box centre (cx, cy), extents (sx, sy) -> page rectangle."""
        ax.add_patch(Rectangle((-cy - sy / 2, cx - sx / 2), sy, sx, **kw))

    def page(x, y):
        return -y, x

    t = cell.table
    rect(t.pose.xyz[0], t.pose.xyz[1], t.size[0], t.size[1], fc='#d8c3a5', ec='k', label='table')
    for i, (x, y) in enumerate(t.part_slots):
        rect(x, y, t.slot_size[0], t.slot_size[1], fc='none', ec='#8a6d3b', ls='--')
        ax.text(*page(x, y), f'slot {i}', ha='center', va='center', fontsize=7)
    r = cell.review
    rect(r.pose.xyz[0], r.pose.xyz[1], r.size[0], r.size[1], fc='#6fa8dc', ec='k',
         label='review tray')
    cab = cell.xray_cabinet
    rect(cab.pose.xyz[0], cab.pose.xyz[1], cab.size[0], cab.size[1], fc='#b7b7b7', ec='k',
         label=f'X-ray cabinet (open side {cab.open_side})')
    fix = cab.fixture
    rect(fix.pose.xyz[0], fix.pose.xyz[1], fix.size[0], fix.size[1], fc='#f1c232', ec='k',
         label='X-ray fixture seat')
    for b in (cell.accept_bin, cell.reject_bin):
        w = b.wall_thickness
        rect(b.pose.xyz[0], b.pose.xyz[1], b.inner_size[0] + 2 * w, b.inner_size[1] + 2 * w,
             fc=b.colour[:3], ec='k', alpha=0.7, label=f'{b.name} bin')
    # The robot: pelvis, feet, shoulders and reach circles.
    bx, by, _ = cell.robot.pose.xyz
    rect(bx, by, 0.20, 0.32, fc='#444444', ec='k', label='humanoid torso')
    for side, sign in (('left', 1), ('right', -1)):
        sy = by + sign * 0.26
        ax.add_patch(Circle(page(bx, sy), 0.035, fc='#e69138', ec='k'))
        ax.add_patch(Circle(page(bx, sy), reach_m, fc='none', ec='#e69138', ls=':'))
    ax.annotate('', xy=page(bx + 0.2, by), xytext=page(bx, by),
                arrowprops=dict(arrowstyle='->', color='w'))
    ax.text(*page(bx - 0.12, by + 0.09), 'facing +x', fontsize=7, color='w')
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-0.45, 1.0)
    ax.set_aspect('equal')
    ax.set_xlabel('-(world y) [m]   (robot\'s left <-  -> robot\'s right)')
    ax.set_ylabel('world x [m] (forward)')
    ax.set_title('Inspection cell, top view (config/cell.yaml)\n'
                 f'dotted: shoulder-to-TCP reach {reach_m:.2f} m')
    ax.grid(True, alpha=0.3)
    ax.legend(loc='lower center', fontsize=7, ncol=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Writes the layout picture and prints the joint-limit and mass tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=str(Path(__file__).resolve().parents[3] / 'docs'
                                             / 'images' / 'cell_layout.png'))
    args = parser.parse_args(argv)
    print(f'wrote {plot_cell_layout(load_cell(), Path(args.out))}')
    urdf = rd.expand_xacro()
    print(mass_table(urdf))
    print()
    print(joint_limits_table(urdf))
    return 0


if __name__ == '__main__':
    sys.exit(main())
