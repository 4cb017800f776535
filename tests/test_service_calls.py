"""nodes/service_calls.py over real DDS: an unanswered idempotent request is sent again."""

import threading
import time

import pytest

from conftest import lose_replies

pytestmark = pytest.mark.ros


class _DroppingServer:
    """A Trigger service in the test's process that loses the replies to its first requests.

    The lost reply is made by not sending it (conftest.lose_replies).
    """

    def __init__(self, node, name, drop_first: int, serve_s: float = 0.0):
        from std_srvs.srv import Trigger
        from rclpy.callback_groups import ReentrantCallbackGroup
        self.requests = 0
        self.drop_first = drop_first
        self.serve_s = serve_s
        self._lock = threading.Lock()
        self.service = node.create_service(Trigger, name, self._on_call,
                                           callback_group=ReentrantCallbackGroup())
        lose_replies(self.service,
                     lambda r: int(r.message.rsplit('#', 1)[1]) <= self.drop_first)

    def _on_call(self, _request, response):
        with self._lock:
            self.requests += 1
            n = self.requests
        time.sleep(self.serve_s)
        response.success = True
        response.message = f'served #{n}'
        return response


def test_a_lost_reply_is_asked_again_and_the_first_answer_returned(ros_client):
    from std_srvs.srv import Trigger
    from humanoid_inspection.nodes.service_calls import call_resending
    server = _DroppingServer(ros_client.node, 'probe/drops_two', drop_first=2)
    client = ros_client.node.create_client(Trigger, 'probe/drops_two')
    assert client.wait_for_service(timeout_sec=10.0)
    lines = []
    t0 = time.monotonic()
    reply = call_resending(client, Trigger.Request(), answer_within_s=0.5, total_s=10.0,
                           what='probe/drops_two', log=lines.append)
    took = time.monotonic() - t0
    assert reply.success and reply.message == 'served #3'
    assert server.requests == 3
    assert len(lines) == 2 and all('no answer within' in line for line in lines)
    assert '#2' in lines[0] and '#3' in lines[1]
    assert took < 5.0
    # the abandoned requests are not left pending in the client
    assert not client._pending_requests


def test_a_slow_answer_to_an_earlier_send_is_taken(ros_client):
    from std_srvs.srv import Trigger
    from humanoid_inspection.nodes.service_calls import call_resending
    server = _DroppingServer(ros_client.node, 'probe/slow', drop_first=0, serve_s=1.2)
    client = ros_client.node.create_client(Trigger, 'probe/slow')
    assert client.wait_for_service(timeout_sec=10.0)
    reply = call_resending(client, Trigger.Request(), answer_within_s=0.5, total_s=10.0,
                           what='probe/slow')
    # the first send's answer comes first (each is served in 1.2 s, the first started first)
    assert reply.message == 'served #1'
    assert server.requests >= 2


def test_no_answer_at_all_times_out_and_a_dead_caller_stops_waiting(ros_client):
    from std_srvs.srv import Trigger
    from humanoid_inspection.nodes.service_calls import call_resending
    server = _DroppingServer(ros_client.node, 'probe/never', drop_first=10 ** 6)
    client = ros_client.node.create_client(Trigger, 'probe/never')
    assert client.wait_for_service(timeout_sec=10.0)
    with pytest.raises(TimeoutError, match=r'probe/never: no answer within 2 s \(\d request'):
        call_resending(client, Trigger.Request(), answer_within_s=0.5, total_s=2.0,
                       what='probe/never')
    assert server.requests >= 3

    def died():
        raise RuntimeError('manipulation died')
    with pytest.raises(RuntimeError, match='manipulation died'):
        call_resending(client, Trigger.Request(), answer_within_s=5.0, total_s=30.0,
                       what='probe/never', alive=died)
    with pytest.raises(ValueError):
        call_resending(client, Trigger.Request(), answer_within_s=0.0, total_s=1.0,
                       what='probe/never')
