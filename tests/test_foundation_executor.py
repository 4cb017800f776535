"""HandOffExecutor runs callbacks as rclpy's MultiThreadedExecutor does, over real DDS.

What it changes (the wait for a worker to take each callback) must not change what runs: every
message of a mutually exclusive subscription arrives in order and one at a time, a reentrant
group runs callbacks side by side, and a callback that waits for a service of the same node (the
cell_manager pattern) is answered. Its CPU saving is measured by bench/bench_executor.py.
"""

import threading
import time

import pytest

from conftest import wait_for


@pytest.fixture
def two_nodes(ros_domain_id):
    import rclpy
    from rclpy.context import Context

    from humanoid_inspection.nodes.executor import HandOffExecutor
    context = Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    server = rclpy.create_node('handoff_under_test', context=context)
    sender = rclpy.create_node('handoff_sender', context=context)
    executor = HandOffExecutor(num_threads=4, context=context)
    executor.add_node(server)
    executor.add_node(sender)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield server, sender
    executor.shutdown(timeout_sec=2.0)
    server.destroy_node()
    sender.destroy_node()
    rclpy.try_shutdown(context=context)
    thread.join(timeout=5.0)


def _publisher(node, topic):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Int32
    qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
    return node.create_publisher(Int32, topic, qos), qos


class _Probe:
    """A subscription callback that takes `seconds` and records order and overlap."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.got, self.active, self.most = [], 0, 0
        self.lock = threading.Lock()

    def __call__(self, msg):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(self.seconds)
        with self.lock:
            self.got.append(msg.data)
            self.active -= 1


def test_a_mutually_exclusive_subscription_gets_every_message_in_order_one_at_a_time(two_nodes):
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from std_msgs.msg import Int32
    server, sender = two_nodes
    pub, qos = _publisher(sender, 'handoff_seq')
    probe = _Probe(0.002)
    server.create_subscription(Int32, 'handoff_seq', probe, qos,
                               callback_group=MutuallyExclusiveCallbackGroup())
    wait_for(lambda: pub.get_subscription_count() > 0, 10.0, what='subscriber')
    for k in range(100):
        pub.publish(Int32(data=k))
        time.sleep(0.001)
    wait_for(lambda: len(probe.got) >= 100, 20.0, what='100 messages')
    assert probe.got == list(range(100))
    assert probe.most == 1


def test_a_reentrant_group_runs_callbacks_side_by_side(two_nodes):
    from rclpy.callback_groups import ReentrantCallbackGroup
    from std_msgs.msg import Int32
    server, sender = two_nodes
    pub, qos = _publisher(sender, 'handoff_parallel')
    probe = _Probe(0.3)
    server.create_subscription(Int32, 'handoff_parallel', probe, qos,
                               callback_group=ReentrantCallbackGroup())
    wait_for(lambda: pub.get_subscription_count() > 0, 10.0, what='subscriber')
    for k in range(3):
        pub.publish(Int32(data=k))
    wait_for(lambda: len(probe.got) == 3, 10.0, what='3 slow callbacks')
    assert probe.most >= 2


def test_a_callback_waiting_for_a_service_of_its_own_node_is_answered(two_nodes):
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
    from std_msgs.msg import Int32
    from std_srvs.srv import Trigger
    server, sender = two_nodes
    calls = ReentrantCallbackGroup()
    server.create_service(Trigger, 'handoff_ping',
                          lambda _req, resp: setattr(resp, 'success', True) or resp,
                          callback_group=calls)
    client = server.create_client(Trigger, 'handoff_ping', callback_group=calls)
    answers = []

    def on_msg(_msg):
        future = client.call_async(Trigger.Request())
        deadline = time.monotonic() + 5.0
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        answers.append(future.done() and future.result().success)

    pub, qos = _publisher(sender, 'handoff_trigger')
    server.create_subscription(Int32, 'handoff_trigger', on_msg, qos,
                               callback_group=MutuallyExclusiveCallbackGroup())
    wait_for(lambda: pub.get_subscription_count() > 0 and client.service_is_ready(), 10.0,
             what='subscriber and service')
    for k in range(3):
        pub.publish(Int32(data=k))
    wait_for(lambda: len(answers) == 3, 20.0, what='3 answered calls')
    assert answers == [True, True, True]


@pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')
def test_a_bad_handoff_timeout_is_refused():
    import gc
    from humanoid_inspection.nodes.executor import HandOffExecutor
    with pytest.raises(ValueError, match='handoff_timeout_s'):
        HandOffExecutor(num_threads=2, handoff_timeout_s=0.0)
    gc.collect()            # the half-built executor is collected without an error


def test_this_rclpy_gets_the_hand_off():
    # the override relies on MultiThreadedExecutor's thread pool and futures list (Jazzy,
    # Kilted); without them it spins as its parent does, so a changed rclpy shows up here
    import rclpy
    from rclpy.context import Context

    from humanoid_inspection.nodes.executor import HandOffExecutor
    context = Context()
    rclpy.init(context=context)
    try:
        assert HandOffExecutor(num_threads=2, context=context).hands_off
    finally:
        rclpy.try_shutdown(context=context)
