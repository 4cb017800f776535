"""Shared pytest fixtures: loopback-only DDS, a ROS domain per test, node processes.

Every test that talks ROS gets its own ROS_DOMAIN_ID (so parallel or consecutive tests can't
hear each other) and ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (no DDS packet leaves loopback).
"""

import itertools
import os
import threading
import time
from pathlib import Path

import pytest

from humanoid_inspection.launcher import fastdds_profile   # no ROS imports

# Set before anything imports rclpy: nothing in the test session may leave loopback.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
# large shared-memory segments, UDP on loopback (config/fastdds_localhost.xml): a depth image
# is too large for Fast DDS's default segment and was lost as UDP fragments under load. The
# launcher gives node processes the same (launcher.ros_environment); this is the test process.
if fastdds_profile() is not None:
    os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(fastdds_profile()))
os.environ.setdefault('MUJOCO_GL', 'osmesa')
os.environ.setdefault('PYOPENGL_PLATFORM', os.environ['MUJOCO_GL'])

REPO_ROOT = Path(__file__).resolve().parents[1]

# Domain ids 51..100 (the demo draws from 1..50), starting at a per-process offset so two
# pytest runs on one machine are unlikely to share one.
_DOMAIN_IDS = itertools.cycle(
    [51 + (os.getpid() + i) % 50 for i in range(50)])


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = 'condition'):
    """Poll predicate until it returns a truthy value; return it, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f'timed out after {timeout:.1f} s waiting for {what}')
        time.sleep(interval)


def lose_replies(service, lose) -> None:
    """Make an in-process rclpy Service drop the replies for which lose(response) is true.

    rclpy's Service.send_response is swapped for one that does not send those: what a client
    sees when Fast DDS drops a reply while discovery completes (nodes/service_calls.py).
    """
    send = service.send_response

    def send_response(response, header):
        if not lose(response):
            send(response, header)
    service.send_response = send_response


@pytest.fixture
def ros_domain_id():
    """A ROS_DOMAIN_ID for this test alone."""
    return next(_DOMAIN_IDS)


class RosTestClient:
    """An rclpy context + node on the test's domain, spun by a background executor."""

    def __init__(self, domain_id: int, name: str = 'test_client'):
        import rclpy
        from rclpy.context import Context
        from humanoid_inspection.nodes.executor import HandOffExecutor
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = HandOffExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.node)
        self._closing = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        from rclpy.executors import ExternalShutdownException
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass
        except Exception:
            # a callback still running while close() destroys the node raises InvalidHandle
            # from the entity it touches: the teardown's doing, not the test's
            if not self._closing:
                raise

    def wait_future(self, future, timeout: float):
        """Block until an rclpy future is done; return its result or raise TimeoutError."""
        wait_for(future.done, timeout, what='ROS future')
        return future.result()

    def close(self):
        import rclpy
        self._closing = True
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


@pytest.fixture
def ros_client(ros_domain_id):
    """A RosTestClient on this test's domain."""
    client = RosTestClient(ros_domain_id)
    yield client
    client.close()


@pytest.fixture
def launch_nodes(ros_domain_id, tmp_path):
    """Factory: launch_nodes(['xray_inspection', ...], params={...}) -> running StackLauncher.

    All launched stacks are stopped (SIGINT -> SIGTERM -> SIGKILL) at teardown, and the test
    fails if a process group is left behind.
    """
    from humanoid_inspection import launch_spec
    from humanoid_inspection.launcher import StackLauncher, live_group_members

    stacks = []

    def start(names, params=None, param_files=None, use_sim_time=False, log_dir=None):
        specs = launch_spec.nodes_by_name(names)
        stack = StackLauncher(specs, Path(log_dir or tmp_path / 'logs'),
                              use_sim_time=use_sim_time, domain_id=ros_domain_id,
                              params=params, param_files=param_files)
        stacks.append(stack)
        return stack.start()

    yield start
    for stack in stacks:
        stack.stop(sigint_timeout=5.0)
        for proc in stack.processes:
            survivors = live_group_members(proc.popen.pid)
            assert not survivors, f'{proc.spec.name}: processes {survivors} outlived the stop'
