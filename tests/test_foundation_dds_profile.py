"""The stack's Fast DDS profile: large shared-memory segments, UDP on loopback only, applied
by env.sh, the process launcher and the tests (delivery measured by
bench/bench_dds_large_messages.py)."""

import signal
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import wait_for
from humanoid_inspection.launcher import fastdds_profile, ros_environment

ROOT = Path(__file__).resolve().parents[1]
NS = {'d': 'http://www.eprosima.com'}
DEPTH_IMAGE_BYTES = 640 * 480 * 4


def _transports():
    root = ET.parse(ROOT / 'config' / 'fastdds_localhost.xml').getroot()
    out = {}
    for t in root.iterfind('.//d:transport_descriptor', NS):
        out[t.findtext('d:transport_id', namespaces=NS)] = t
    participant = root.find('.//d:participant', NS)
    return out, participant


def test_profile_carries_depth_images_in_shared_memory_and_keeps_udp_on_loopback():
    transports, participant = _transports()
    kinds = {name: t.findtext('d:type', namespaces=NS) for name, t in transports.items()}
    assert sorted(kinds.values()) == ['SHM', 'UDPv4']
    shm = next(t for t in transports.values() if t.findtext('d:type', namespaces=NS) == 'SHM')
    # several depth images fit a segment (the default 512 KiB holds none)
    assert int(shm.findtext('d:segment_size', namespaces=NS)) >= 4 * DEPTH_IMAGE_BYTES
    udp = next(t for t in transports.values() if t.findtext('d:type', namespaces=NS) == 'UDPv4')
    assert [a.text for a in udp.iterfind('.//d:address', NS)] == ['127.0.0.1']
    assert participant.get('is_default_profile') == 'true'
    assert participant.findtext('.//d:useBuiltinTransports', namespaces=NS) == 'false'
    used = [t.text for t in participant.iterfind('.//d:userTransports/d:transport_id', NS)]
    assert sorted(used) == sorted(transports)


def test_node_processes_get_the_profile_only_on_loopback_discovery():
    path = fastdds_profile()
    assert path is not None and path.is_file() and path.name == 'fastdds_localhost.xml'
    env = ros_environment(base={})
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert env['FASTDDS_DEFAULT_PROFILES_FILE'] == str(path)
    # a user's own profile is kept; a wider discovery range gets no loopback-only profile
    assert ros_environment(base={'FASTDDS_DEFAULT_PROFILES_FILE': '/etc/mine.xml'})[
        'FASTDDS_DEFAULT_PROFILES_FILE'] == '/etc/mine.xml'
    assert 'FASTDDS_DEFAULT_PROFILES_FILE' not in ros_environment(
        base={'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'})
    env_sh = (ROOT / 'scripts' / 'env.sh').read_text()
    assert 'FASTDDS_DEFAULT_PROFILES_FILE' in env_sh and 'fastdds_localhost.xml' in env_sh


_PROBE_SERVER = r'''
import sys, time, rclpy
from rclpy.executors import SingleThreadedExecutor
from std_srvs.srv import Trigger
rclpy.init()
node = rclpy.create_node('reply_probe_server')
def on_call(_request, response):
    print('call', time.monotonic(), flush=True)
    response.success = True
    return response
node.create_service(Trigger, sys.argv[1], on_call)
executor = SingleThreadedExecutor()
executor.add_node(node)
try:
    executor.spin()
except KeyboardInterrupt:
    pass
'''


@pytest.mark.ros
def test_a_service_waits_seconds_for_the_clients_reply_reader_with_the_profile(
        ros_client, ros_domain_id, tmp_path):
    """The profile's "service" data writer reaches rmw_fastrtps's reply writers.

    A client whose reply reader can never match the server's reply writer (it asks for
    transient-local replies; a service offers volatile) is the lost-reply race made
    permanent: the server takes each request, then waits max_blocking_time for the reader and
    drops the reply. The gap between two requests taken back to back is that wait: about 5 s
    with the stack's profile, 0.1 s (Fast DDS's default) with the same profile less its
    "service" data writer.
    """
    import subprocess
    import sys
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_srvs.srv import Trigger
    tree = ET.parse(ROOT / 'config' / 'fastdds_localhost.xml')
    profiles = tree.getroot().find('d:profiles', NS)
    writer = profiles.find("d:data_writer[@profile_name='service']", NS)
    assert writer is not None
    profiles.remove(writer)
    ET.register_namespace('', NS['d'])
    baseline = tmp_path / 'without_service_writer.xml'
    tree.write(baseline)
    servers = {}
    for name, profile in (('stack', fastdds_profile()), ('default', baseline)):
        env = ros_environment(ros_domain_id)
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(profile)
        servers[name] = subprocess.Popen(
            [sys.executable, '-c', _PROBE_SERVER, f'probe/{name}'], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        never_matching = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        clients = {name: ros_client.node.create_client(Trigger, f'probe/{name}',
                                                       qos_profile=never_matching)
                   for name in servers}
        # wait_for_service needs the reply path too; the request path shows in the graph
        wait_for(lambda: all(ros_client.node.count_services(f'/probe/{n}') for n in clients),
                 30.0, what='both probe services')
        time.sleep(1.0)           # the servers match the clients' request writers
        for client in clients.values():
            client.call_async(Trigger.Request())
            client.call_async(Trigger.Request())
        time.sleep(9.0)           # the stack's server answers the second after ~5 s
    finally:
        outputs = {}
        for name, proc in servers.items():
            proc.send_signal(signal.SIGINT)
            try:
                outputs[name] = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                outputs[name] = proc.communicate()
    gaps = {}
    for name, (out, err) in outputs.items():
        calls = [float(line.split()[1]) for line in out.splitlines() if line.startswith('call')]
        assert len(calls) == 2, (name, out, err[-2000:])
        assert 'failed to send response' in err, (name, err[-2000:])
        gaps[name] = calls[1] - calls[0]
    assert gaps['stack'] >= 4.0, gaps
    assert gaps['default'] < 1.0, gaps
