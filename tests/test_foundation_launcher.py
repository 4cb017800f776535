"""The process launcher: starts processes in their own groups, stops them, escalates."""

import signal
import sys
import textwrap
import time

import pytest

from humanoid_inspection.launch_spec import NodeSpec, nodes_by_name, ros_arguments
from humanoid_inspection.launcher import StackLauncher, live_group_members, ros_environment


def _script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(f'#!{sys.executable}\n' + textwrap.dedent(body))
    path.chmod(0o755)
    return NodeSpec(str(path), name)


def test_environment_keeps_dds_on_loopback():
    env = ros_environment(42, base={'PATH': '/bin'})
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert env['ROS_DOMAIN_ID'] == '42'


def test_ros_arguments_carry_name_param_files_and_sim_time(tmp_path):
    spec = nodes_by_name(['xray_inspection'])[0]
    args = ros_arguments(spec, True, configs=tmp_path, extra_params={'save': True})
    assert args[:3] == ['--ros-args', '-r', '__node:=xray_inspection']
    assert ['--params-file', str(tmp_path / 'xray_inspection.yaml')] == args[3:5]
    assert 'use_sim_time:=true' in args and 'save:=true' in args


def test_unknown_node_name_is_refused():
    with pytest.raises(ValueError, match='unknown node'):
        nodes_by_name(['no_such_node'])


def test_sigint_stops_a_well_behaved_process(tmp_path):
    spec = _script(tmp_path, 'polite', '''
        import signal, sys, time
        signal.signal(signal.SIGINT, lambda *a: sys.exit(0))
        print('ready', flush=True)
        while True:
            time.sleep(0.05)
    ''')
    stack = StackLauncher([spec], tmp_path / 'logs', use_sim_time=False)
    stack.command = lambda s: [s.executable]
    stack.start()
    deadline = time.monotonic() + 10
    while 'ready' not in stack.processes[0].log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    codes = stack.stop(sigint_timeout=5.0)
    assert codes == {'polite': 0}
    assert time.monotonic() - started < 5.0


def test_stop_escalates_when_sigint_is_ignored_and_reaps_children(tmp_path):
    spec = _script(tmp_path, 'stubborn', '''
        import signal, subprocess, sys, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
        print('child', child.pid, flush=True)
        while True:
            time.sleep(0.05)
    ''')
    stack = StackLauncher([spec], tmp_path / 'logs', use_sim_time=False)
    stack.command = lambda s: [s.executable]
    stack.start()
    proc = stack.processes[0]
    deadline = time.monotonic() + 10
    while 'child' not in proc.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int(proc.log_tail().split()[1])
    assert child_pid in live_group_members(proc.popen.pid)
    codes = stack.stop(sigint_timeout=0.5, sigterm_timeout=2.0)
    assert codes['stubborn'] == -signal.SIGTERM
    time.sleep(0.2)
    assert live_group_members(proc.popen.pid) == [], 'a process of the node survived'


def test_check_alive_names_the_dead_node_with_its_output(tmp_path):
    spec = _script(tmp_path, 'crasher', '''
        import sys
        print('bad parameter foo', flush=True)
        sys.exit(3)
    ''')
    stack = StackLauncher([spec], tmp_path / 'logs', use_sim_time=False)
    stack.command = lambda s: [s.executable]
    stack.start()
    stack.processes[0].popen.wait(timeout=10)
    with pytest.raises(RuntimeError, match='crasher.*code 3(.|\n)*bad parameter foo'):
        stack.check_alive()
    stack.stop()
