"""docs/robot_and_cell.md stays true to the URDF: its joint-limit table is regenerated and
compared, and the layout picture exists."""

from pathlib import Path

from humanoid_inspection import robot_description as rd
from humanoid_inspection.sim import cell_layout

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / 'docs' / 'robot_and_cell.md'


def test_joint_limit_and_mass_tables_match_the_urdf():
    text = DOC.read_text()
    begin, end = '<!-- joint-limits:begin -->', '<!-- joint-limits:end -->'
    documented = text[text.index(begin) + len(begin):text.index(end)].strip()
    urdf = rd.expand_xacro()
    assert documented == cell_layout.joint_limits_table(urdf), \
        'joint limits changed: paste `python -m humanoid_inspection.sim.cell_layout` output'
    assert cell_layout.mass_table(urdf) in text


def test_layout_picture_is_rendered(tmp_path):
    out = cell_layout.plot_cell_layout(cell_layout.load_cell(), tmp_path / 'layout.png')
    assert out.stat().st_size > 10_000
    assert (ROOT / 'docs' / 'images' / 'cell_layout.png').is_file()
