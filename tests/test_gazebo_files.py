"""The Gazebo path (gz sim Harmonic, not installable here) checked by parsing and cross-checks.

worlds/inspection_cell.sdf = generated from config/cell.yaml; config/gz_bridge.yaml bridges the
sim topics of CONTRACTS.md with matching types; launch/sim_gazebo.launch.py parses and refers
only to things that exist; config/inspection.rviz is valid YAML showing the project's topics.
"""

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from humanoid_inspection import robot_description as rd
from humanoid_inspection.cell_geometry import load_cell
from humanoid_inspection.launch_spec import APP_NODES
from humanoid_inspection.sim import sdf_world

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch' / 'sim_gazebo.launch.py'

# CONTRACTS.md: what the simulator publishes (ROS name -> ROS type).
SIM_TOPICS = {
    'clock': 'rosgraph_msgs/msg/Clock',
    'joint_states': 'sensor_msgs/msg/JointState',
    'head_camera/color/image_raw': 'sensor_msgs/msg/Image',
    'head_camera/depth/image_raw': 'sensor_msgs/msg/Image',
    'head_camera/color/camera_info': 'sensor_msgs/msg/CameraInfo',
}
# ros_gz_bridge's ROS <-> gz type pairs for these messages.
GZ_TYPES = {
    'rosgraph_msgs/msg/Clock': 'gz.msgs.Clock',
    'sensor_msgs/msg/JointState': 'gz.msgs.Model',
    'sensor_msgs/msg/Image': 'gz.msgs.Image',
    'sensor_msgs/msg/CameraInfo': 'gz.msgs.CameraInfo',
}


def test_committed_world_is_regenerated_identically_from_cell_yaml():
    committed = (ROOT / 'worlds' / 'inspection_cell.sdf').read_text()
    assert committed == sdf_world.build_world(load_cell()), \
        'worlds/inspection_cell.sdf is stale: run python -m humanoid_inspection.sim.sdf_world'
    assert sdf_world.main(['--check']) == 0


def test_world_dimensions_equal_cell_yaml():
    cell = load_cell()
    models = sdf_world.model_box_sizes((ROOT / 'worlds' / 'inspection_cell.sdf').read_text())
    table = models['table']
    assert table['__pose__'][:3] == pytest.approx(cell.table.pose.xyz)
    assert table['top_collision'][1] == pytest.approx(cell.table.size)
    # top surface of the slab at the table height
    assert table['__pose__'][2] + table['top_collision'][0][2] + cell.table.size[2] / 2 == \
        pytest.approx(cell.table.top_z)
    cabinet = models['xray_cabinet']
    assert cabinet['__pose__'][:3] == pytest.approx(cell.xray_cabinet.pose.xyz)
    assert cabinet['base_collision'][1] == pytest.approx(
        cell.xray_cabinet.size[:2] + (cell.xray_cabinet.base_height,))
    roof = cabinet['roof_collision']
    assert roof[0][2] + roof[1][2] / 2 == pytest.approx(cell.xray_cabinet.size[2])
    assert 'wall_ny_collision' not in cabinet and 'wall_py_collision' in cabinet  # open port
    fixture = models['xray_fixture']
    assert fixture['__pose__'][:3] == pytest.approx(cell.xray_cabinet.fixture.pose.xyz)
    assert fixture['seat_collision'][1] == pytest.approx(cell.xray_cabinet.fixture.size)
    for b in (cell.accept_bin, cell.reject_bin):
        model = models[f'{b.name}_bin']
        assert model['__pose__'][:3] == pytest.approx(b.pose.xyz)
        wall = model['wall_px_collision']
        assert wall[1][2] == pytest.approx(b.wall_height)
        inner_x = 2 * wall[0][0] - b.wall_thickness
        assert inner_x == pytest.approx(b.inner_size[0])
        stand = model['stand_collision']
        assert b.pose.xyz[2] + stand[0][2] - stand[1][2] / 2 == pytest.approx(0.0)  # on floor
    assert models['review_tray']['__pose__'][:3] == pytest.approx(cell.review.pose.xyz)
    for i in range(sdf_world.STAND_IN_PARTS):
        x, y, _ = models[f'part_{i}']['__pose__'][:3]
        assert (x, y) == pytest.approx(cell.table.part_slots[i])


def test_world_loads_the_systems_the_camera_and_physics_need():
    root = ET.parse(ROOT / 'worlds' / 'inspection_cell.sdf').getroot()
    assert root.get('version') == '1.9'
    world = root.find('world')
    assert world.get('name') == sdf_world.WORLD_NAME
    plugins = {p.get('filename') for p in world.findall('plugin')}
    assert {'gz-sim-physics-system', 'gz-sim-sensors-system', 'gz-sim-scene-broadcaster-system',
            'gz-sim-user-commands-system'} <= plugins
    sensors = world.find("plugin[@filename='gz-sim-sensors-system']")
    assert sensors.findtext('render_engine') == 'ogre2'


def test_build_world_rejects_more_parts_than_slots():
    with pytest.raises(ValueError, match='parts must be in'):
        sdf_world.build_world(load_cell(), parts=99)


def test_bridge_topics_and_types_equal_the_contract():
    entries = yaml.safe_load((ROOT / 'config' / 'gz_bridge.yaml').read_text())
    bridged = {}
    for entry in entries:
        assert set(entry) == {'ros_topic_name', 'gz_topic_name', 'ros_type_name',
                              'gz_type_name', 'direction'}, entry
        assert entry['direction'] == 'GZ_TO_ROS'
        assert GZ_TYPES[entry['ros_type_name']] == entry['gz_type_name'], entry
        bridged[entry['ros_topic_name'].lstrip('/')] = entry['ros_type_name']
    assert bridged == SIM_TOPICS


def test_bridge_gz_topics_are_the_ones_the_description_publishes():
    """The gz side of each bridge entry is produced by the sensor/plugin in the xacro."""
    entries = {e['ros_topic_name']: e['gz_topic_name']
               for e in yaml.safe_load((ROOT / 'config' / 'gz_bridge.yaml').read_text())}
    root = ET.fromstring(rd.expand_xacro(use_gazebo=True))
    camera_topic = root.find(".//sensor[@type='rgbd_camera']").findtext('topic')
    assert entries['head_camera/color/image_raw'] == camera_topic + '/image'
    assert entries['head_camera/depth/image_raw'] == camera_topic + '/depth_image'
    assert entries['head_camera/color/camera_info'] == camera_topic + '/camera_info'
    joint_state_topic = root.find(
        ".//plugin[@filename='gz-sim-joint-state-publisher-system']").findtext('topic')
    assert entries['joint_states'] == joint_state_topic
    assert entries['clock'] == '/clock'


def _console_scripts():
    tree = ast.parse((ROOT / 'setup.py').read_text())
    nodes = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], 'id', '') == 'NODES')
    return set(ast.literal_eval(nodes.value))


def test_launch_file_parses_and_its_references_exist():
    source = LAUNCH.read_text()
    tree = ast.parse(source, filename=str(LAUNCH))
    assert 'generate_launch_description' in {
        n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    strings = {n.value for n in ast.walk(tree)
               if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for folder, name in (('urdf', 'humanoid.urdf.xacro'), ('worlds', 'inspection_cell.sdf'),
                         ('config', 'controllers.yaml'), ('config', 'gz_bridge.yaml'),
                         ('config', 'inspection.rviz')):
        assert name in strings, f'launch file does not use {name}'
        assert (ROOT / folder / name).is_file(), f'{folder}/{name} missing'
    # The parts of the Gazebo bring-up the brief asks for.
    for needed in ('ros_gz_sim', 'create', 'robot_description', 'ros_gz_bridge',
                   'parameter_bridge', 'config_file', 'robot_state_publisher', 'spawner',
                   'use_gazebo:=true'):
        assert any(needed in s for s in strings), needed
    assert 'OnProcessExit' in source and 'RegisterEventHandler' in source
    # Every controller of the contract is spawned, and only those.
    controllers = ast.literal_eval(next(
        n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
        and getattr(n.targets[0], 'id', '') == 'CONTROLLERS'))
    assert set(controllers) == set(rd.CONTROLLER_JOINTS)
    # Application nodes: every executable and parameter file exists.
    assert 'APP_NODES' in source
    scripts = _console_scripts()
    for spec in APP_NODES:
        assert spec.executable in scripts, spec.executable
        for name in spec.param_files:
            assert (ROOT / 'config' / name).is_file(), f'config/{name} missing'


def _topics(displays):
    for display in displays:
        topic = display.get('Topic') or display.get('Description Topic')
        if isinstance(topic, dict):
            yield display['Class'], topic['Value']
        if 'Displays' in display:
            yield from _topics(display['Displays'])


def test_rviz_config_is_yaml_and_shows_the_project_topics():
    config = yaml.safe_load((ROOT / 'config' / 'inspection.rviz').read_text())
    manager = config['Visualization Manager']
    assert manager['Global Options']['Fixed Frame'] in ('world', 'base_link')
    classes = [d['Class'] for d in manager['Displays']]
    assert 'rviz_default_plugins/RobotModel' in classes
    assert 'rviz_default_plugins/TF' in classes
    topics = set(_topics(manager['Displays']))
    assert topics == {
        ('rviz_default_plugins/RobotModel', '/robot_description'),
        ('rviz_default_plugins/Image', '/head_camera/color/image_raw'),
        ('rviz_default_plugins/Image', '/inspection/overlay'),
        ('rviz_default_plugins/MarkerArray', '/affordance/markers'),
        ('rviz_default_plugins/MarkerArray', '/inspection/markers'),
    }
    frames = manager['Displays'][classes.index('rviz_default_plugins/TF')]['Frames']
    links = {link.get('name') for link in ET.fromstring(rd.expand_xacro()).findall('link')}
    assert {f for f in frames if f != 'All Enabled'} <= links
