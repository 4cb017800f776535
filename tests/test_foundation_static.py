"""Static checks of the package: launch files, config files, entry points, interface docs."""

import ast
import configparser
import importlib
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from humanoid_inspection import launch_spec

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / 'launch').glob('*.launch.py'))
CONFIG_FILES = sorted((ROOT / 'config').glob('*.yaml'))


def console_scripts():
    """{name: 'module:function'} from setup.py's entry points (evaluated, not regex-guessed)."""
    tree = ast.parse((ROOT / 'setup.py').read_text())
    nodes = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], 'id', '') == 'NODES')
    table = ast.literal_eval(nodes.value)
    scripts = {name: f'humanoid_inspection.nodes.{module}:main' for name, module in table.items()}
    scripts['humanoid-inspection'] = 'humanoid_inspection.cli:main'
    return scripts


def test_layout_is_an_ament_python_package():
    assert (ROOT / 'package.xml').is_file()
    assert (ROOT / 'resource' / 'humanoid_inspection').is_file()
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / 'setup.cfg')
    assert cfg['install']['install_scripts'] == '$base/lib/humanoid_inspection'
    iface = (ROOT / 'interfaces' / 'package.xml').read_text()
    assert '<build_type>ament_cmake</build_type>' in iface
    assert 'rosidl_interface_packages' in iface


def test_every_console_script_resolves_to_a_main_function():
    for name, target in console_scripts().items():
        module_name, func = target.split(':')
        module = importlib.import_module(module_name)
        assert callable(getattr(module, func)), f'{name}: {target} has no {func}()'


def test_launch_spec_nodes_have_console_scripts_and_param_files():
    scripts = console_scripts()
    for spec in launch_spec.ALL_NODES:
        assert spec.executable in scripts, f'{spec.executable} is not a console script'
        for name in spec.param_files:
            assert (ROOT / 'config' / name).is_file(), f'{spec.name}: missing config/{name}'


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_references_exist(path):
    """Each launch file parses, defines generate_launch_description, and every executable of
    this package and every file name it mentions exists."""
    tree = ast.parse(path.read_text(), filename=str(path))
    funcs = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in funcs
    scripts = console_scripts()
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        kwargs = {k.arg: k.value for k in call.keywords}
        pkg, exe = kwargs.get('package'), kwargs.get('executable')
        if isinstance(exe, ast.Constant) and (
                (isinstance(pkg, ast.Constant) and pkg.value == 'humanoid_inspection')
                or (isinstance(pkg, ast.Name) and pkg.id == 'PACKAGE')):
            assert exe.value in scripts, f'{path.name}: unknown executable {exe.value}'
    folders = {'.yaml': 'config', '.rviz': 'config', '.sdf': 'worlds', '.xacro': 'urdf',
               '.launch.py': 'launch'}
    for const in (n for n in ast.walk(tree) if isinstance(n, ast.Constant)):
        if not isinstance(const.value, str) or '/' in const.value or ' ' in const.value:
            continue
        for suffix, folder in folders.items():
            if const.value.endswith(suffix) and const.value != suffix:
                assert (ROOT / folder / const.value).is_file(), \
                    f'{path.name} references {folder}/{const.value}, which does not exist'


@pytest.mark.parametrize('path', CONFIG_FILES, ids=lambda p: p.name)
def test_config_file_parses(path):
    data = yaml.safe_load(path.read_text())
    if path.name == 'gz_bridge.yaml':  # ros_gz_bridge wants a top-level list of bridges
        assert isinstance(data, list) and all('ros_topic_name' in b for b in data)
        return
    assert isinstance(data, dict), f'{path.name}: top level must be a mapping'
    node_names = {spec.name for spec in launch_spec.ALL_NODES}
    for key, value in data.items():
        if isinstance(value, dict) and 'ros__parameters' in value:
            assert key in node_names or key in ('/**', 'controller_manager') \
                or key.endswith('_controller') or key.endswith('_broadcaster'), \
                f'{path.name}: parameters for unknown node {key!r}'
            assert isinstance(value['ros__parameters'], dict)


def test_node_param_files_name_their_node():
    for spec in launch_spec.ALL_NODES:
        for name in spec.param_files:
            data = yaml.safe_load((ROOT / 'config' / name).read_text())
            assert spec.name in data and 'ros__parameters' in data[spec.name], \
                f'config/{name} must hold "{spec.name}: ros__parameters: ..."'


INTERFACE_FILES = sorted((ROOT / 'interfaces').glob('*/*.*'))
INTERFACE_FILES = [p for p in INTERFACE_FILES if p.suffix in ('.msg', '.srv', '.action')]


@pytest.mark.parametrize('path', INTERFACE_FILES, ids=lambda p: p.name)
def test_interface_fields_are_documented(path):
    """Every field either carries a comment or is a self-explanatory flag/constant."""
    self_explanatory = {'success', 'message', 'header'}
    undocumented = []
    for line in path.read_text().splitlines():
        code = line.split('#', 1)[0].strip()
        if not code or code == '---':
            continue
        field = code.split()[1].split('=')[0]
        if '#' not in line and field not in self_explanatory and '=' not in code:
            undocumented.append(field)
    assert not undocumented, f'{path.name}: fields without a comment: {undocumented}'
    assert path.read_text().lstrip().startswith('#'), f'{path.name}: needs a header comment'


def test_setup_refuses_a_full_disk_before_installing_anything(tmp_path):
    """A disk without room for the pinned requirements stops setup.sh at once, with a message
    that says how much is needed and free, instead of pip's Errno 28 half-way through."""
    (tmp_path / 'scripts').mkdir()
    for name in ('scripts/setup.sh', 'requirements.txt'):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    proc = subprocess.run(['bash', str(tmp_path / 'scripts' / 'setup.sh')], cwd=tmp_path,
                          env={**os.environ, 'SETUP_NEED_MIB': str(10 ** 9)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'need about 1000000000 MiB free' in proc.stdout
    assert 'MiB are free' in proc.stdout
    site = list((tmp_path / '.venv').glob('lib/python*/site-packages'))
    assert site and not list(site[0].glob('numpy*')), 'nothing was installed'
