"""The whole stack as separate processes over real DDS: graph == docs/interfaces.md.

Starts every node of launch_spec.ALL_NODES with its config file (as the demo does), then reads
the ROS graph from a client on the same (test-only) domain, on loopback only.
"""

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import wait_for

from humanoid_inspection import launch_spec
from humanoid_inspection.launcher import ros_environment

ROOT = Path(__file__).resolve().parents[1]
INFRA_TOPICS = {'/rosout', '/parameter_events'}
INFRA_SERVICE_SUFFIXES = (
    '/describe_parameters', '/get_parameters', '/get_parameter_types', '/list_parameters',
    '/set_parameters', '/set_parameters_atomically', '/get_type_description')

pytestmark = pytest.mark.ros


def documented_graph():
    """{(node, kind, '/name'): type} parsed from the table in docs/interfaces.md."""
    rows = {}
    for line in (ROOT / 'docs' / 'interfaces.md').read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 4 and cells[1] in ('pub', 'sub', 'srv', 'action'):
            node, kind, name, type_ = cells
            rows[(node, kind, '/' + name)] = type_
    return rows


def live_graph(client_node, node_names):
    """{(node, kind, '/name'): type} read from the running graph for the given nodes."""
    from rclpy.action import get_action_server_names_and_types_by_node
    rows = {}
    present = {name for name, _ in client_node.get_node_names_and_namespaces()}
    for node in node_names:
        if node not in present:  # the by-node queries raise for a node not (yet) discovered
            continue
        actions = get_action_server_names_and_types_by_node(client_node, node, '/')
        action_names = {name for name, _ in actions}
        for name, types in actions:
            rows[(node, 'action', name)] = types[0]
        for name, types in client_node.get_publisher_names_and_types_by_node(node, '/'):
            if name not in INFRA_TOPICS and '/_action/' not in name:
                rows[(node, 'pub', name)] = types[0]
        for name, types in client_node.get_subscriber_names_and_types_by_node(node, '/'):
            if name not in INFRA_TOPICS | {'/clock'} and '/_action/' not in name:
                rows[(node, 'sub', name)] = types[0]
        for name, types in client_node.get_service_names_and_types_by_node(node, '/'):
            if name.endswith(INFRA_SERVICE_SUFFIXES) or '/_action/' in name:
                continue
            if any(name.startswith(a + '/_action') for a in action_names):
                continue
            rows[(node, 'srv', name)] = types[0]
    return rows


@pytest.mark.slow
def test_stack_graph_matches_the_documented_interfaces(launch_nodes, ros_client):
    names = [spec.name for spec in launch_spec.ALL_NODES]
    stack = launch_nodes(names, use_sim_time=True)
    expected = documented_graph()
    assert {node for node, _, _ in expected} == set(names), \
        'docs/interfaces.md must describe every node of the stack'

    def graph_complete():
        stack.check_alive()
        live = live_graph(ros_client.node, names)
        return live if set(expected) <= set(live) else None

    try:
        live = wait_for(graph_complete, timeout=120, interval=0.5, what='the documented graph')
    except TimeoutError:
        live = live_graph(ros_client.node, names)
        missing = sorted(set(expected) - set(live))
        pytest.fail(f'documented but not in the graph: {missing}')
    for key, type_ in expected.items():
        assert live[key] == type_, f'{key}: graph type {live[key]}, documented {type_}'
    undocumented = sorted(set(live) - set(expected))
    assert not undocumented, f'in the graph but not in docs/interfaces.md: {undocumented}'

    # Every parameter set in a node's config file is a parameter the node declared.
    from rcl_interfaces.srv import ListParameters
    for spec in launch_spec.ALL_NODES:
        client = ros_client.node.create_client(ListParameters, f'/{spec.name}/list_parameters')
        assert client.wait_for_service(timeout_sec=10.0), f'{spec.name}: no parameter service'
        declared = set(ros_client.wait_future(
            client.call_async(ListParameters.Request()), 10.0).result.names)
        for file_name in spec.param_files:
            data = yaml.safe_load((ROOT / 'config' / file_name).read_text())
            configured = _flatten(data[spec.name]['ros__parameters'])
            unknown = sorted(set(configured) - declared)
            assert not unknown, f'config/{file_name}: {spec.name} does not declare {unknown}'

    # A stop is a clean exit: every node leaves with code 0 on SIGINT (no RCLError racing the
    # context shutdown, no escalation to SIGTERM/SIGKILL).
    codes = stack.stop(sigint_timeout=15.0)
    failed = {name: code for name, code in codes.items() if code != 0}
    assert not failed, 'exit codes after SIGINT: ' + ', '.join(
        f'{p.spec.name}={p.popen.returncode}:\n{p.log_tail(15)}'
        for p in stack.processes if p.spec.name in failed)


def _flatten(params, prefix=''):
    names = []
    for key, value in params.items():
        if isinstance(value, dict):
            names += _flatten(value, f'{prefix}{key}.')
        else:
            names.append(prefix + key)
    return names


def _run_node(args, domain_id, timeout=60):
    env = ros_environment(domain_id)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


NODE_NAMES = [spec.name for spec in launch_spec.ALL_NODES]


@pytest.mark.parametrize('node', NODE_NAMES)
def test_wrong_parameter_type_fails_at_startup_naming_the_parameter(node, ros_domain_id):
    spec = launch_spec.nodes_by_name([node])[0]
    config = yaml.safe_load((ROOT / 'config' / spec.param_files[0]).read_text())
    name, value = next((k, v) for k, v in config[spec.name]['ros__parameters'].items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool))
    args = [launch_spec.executable_path(spec)] + launch_spec.ros_arguments(
        spec, False, extra_params={name: 'not_a_number'})
    result = _run_node(args, ros_domain_id)
    assert result.returncode != 0
    assert re.search(re.escape(name), result.stderr + result.stdout), result.stderr[-2000:]


def test_unknown_parameter_file_fails_at_startup(ros_domain_id, tmp_path):
    spec = launch_spec.nodes_by_name(['xray_inspection'])[0]
    missing = tmp_path / 'no_such_params.yaml'
    args = [launch_spec.executable_path(spec), '--ros-args', '--params-file', str(missing)]
    result = _run_node(args, ros_domain_id)
    assert result.returncode != 0
    assert 'no_such_params.yaml' in result.stderr + result.stdout


@pytest.mark.parametrize('node', NODE_NAMES)
def test_unknown_parameter_name_in_a_file_fails_at_startup(node, ros_domain_id, tmp_path):
    spec = launch_spec.nodes_by_name([node])[0]
    typo = tmp_path / 'typo.yaml'
    typo.write_text(yaml.safe_dump({spec.name: {'ros__parameters': {'detektor': 'cnn'}}}))
    args = [launch_spec.executable_path(spec)] + launch_spec.ros_arguments(
        spec, False, extra_param_files=[typo])
    result = _run_node(args, ros_domain_id)
    assert result.returncode != 0
    assert 'detektor' in result.stderr + result.stdout
