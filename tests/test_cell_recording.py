"""MCAP recording of every topic: schemas from the .msg files, CDR data decodable back."""

import time

import pytest

from conftest import wait_for
from humanoid_inspection.cell.recording import (
    DefinitionError, McapRecorderFile, message_definition)


def test_definitions_include_nested_types_once():
    text = message_definition('humanoid_inspection_interfaces/msg/InspectionResult')
    assert text.startswith('# The X-ray inspection of one part')
    assert text.count('MSG: humanoid_inspection_interfaces/XrayDefect') == 1
    assert text.count('MSG: std_msgs/Header') == 1
    assert 'MSG: builtin_interfaces/Time' in text and 'MSG: sensor_msgs/Image' in text
    fb = message_definition('humanoid_inspection_interfaces/action/PickPlace_FeedbackMessage')
    assert 'MSG: humanoid_inspection_interfaces/action/PickPlace_Feedback' in fb
    with pytest.raises(DefinitionError, match='no_such_pkg'):
        message_definition('no_such_pkg/msg/Thing')
    with pytest.raises(DefinitionError, match='not a ROS type'):
        message_definition('justaname')


@pytest.mark.ros
def test_records_live_topics_to_a_decodable_mcap(ros_client, ros_domain_id, tmp_path,
                                                 monkeypatch):
    from humanoid_inspection_interfaces.msg import CellStatus
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from humanoid_inspection.nodes.cell_demo_client import DemoClient
    monkeypatch.setenv('ROS_DOMAIN_ID', str(ros_domain_id))
    status_pub = ros_client.node.create_publisher(CellStatus, 'cell/status', 10)
    image_pub = ros_client.node.create_publisher(Image, 'cam/image', qos_profile_sensor_data)
    demo = DemoClient('recorder_test')
    path = tmp_path / 'run.mcap'
    recorder = demo.start_recording(path)
    try:
        wait_for(lambda: (recorder.discover() or True) and 'cam/image' in str(
            list(recorder._subs)) and '/cell/status' in recorder._subs, 10.0, what='discovery')
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and min(
                recorder.file.counts.get('/cell/status', 0),
                recorder.file.counts.get('/cam/image', 0)) < 3:
            status_pub.publish(CellStatus(state='running', parts_done=2, message='hi'))
            image_pub.publish(Image(height=2, width=3, encoding='mono8', step=3,
                                    data=bytes(range(6))))
            time.sleep(0.1)
    finally:
        demo.close()
    with open(path, 'rb') as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == 'ros2'
        messages = [(c.topic, m) for _, c, _, m in reader.iter_decoded_messages()]
    assert {'/cell/status', '/cam/image'} <= {t for t, _ in messages}
    status = [m for t, m in messages if t == '/cell/status'][0]
    assert status.state == 'running' and status.parts_done == 2
    image = [m for t, m in messages if t == '/cam/image'][0]
    assert bytes(image.data) == bytes(range(6)) and image.encoding == 'mono8'


def test_write_to_unregistered_topic_is_ignored(tmp_path):
    f = McapRecorderFile(tmp_path / 'x.mcap')
    f.write('/nothing', b'1234')
    assert not f.add_topic('/bad', 'no_pkg/msg/Nope') and '/bad' in f.skipped
    f.close()
    assert (tmp_path / 'x.mcap').stat().st_size > 0
