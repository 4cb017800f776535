"""The stack's Fast DDS profile: large shared-memory segments, UDP on loopback only, applied
by env.sh, the process launcher and the tests (delivery measured by
bench/bench_dds_large_messages.py)."""

import xml.etree.ElementTree as ET
from pathlib import Path

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
