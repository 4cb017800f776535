"""The demo's ROS side: a client of run_inspection_cycle and a record-every-topic MCAP recorder.

Used by humanoid_inspection.cell.demo (which imports it only after it has set the DDS
environment). Kept here because only nodes/ imports rclpy.
"""

import json
import threading
import time
from typing import Callable, Iterable, Optional

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from humanoid_inspection.cell.recording import McapRecorderFile
from humanoid_inspection.nodes.executor import HandOffExecutor
from humanoid_inspection.nodes.service_calls import call_resending


class DemoClient:
    """An rclpy context + node on the current ROS_DOMAIN_ID, spun in a background thread.

    rclpy's own signal handlers are not installed: Ctrl-C is a plain KeyboardInterrupt in the
    main thread, which cancels the cycle over this (still valid) context and then stops the
    stack (run_cycle, cell.demo).
    """

    def __init__(self, name: str = 'cell_demo'):
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = HandOffExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.recorder: Optional['TopicRecorder'] = None
        self.cancel_wait_s = 30.0
        self.cancelled_result = None

    def _spin(self):
        try:
            self.executor.spin()
        except (ExternalShutdownException, rclpy.executors.ShutdownException):
            pass

    @staticmethod
    def _wait(future, timeout: float, alive: Callable[[], None], what: str):
        deadline = time.monotonic() + timeout
        while not future.done():
            alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f'{what}: no answer within {timeout:.0f} s')
            time.sleep(0.05)
        return future.result()

    def wait_ready(self, timeout: float, alive: Callable[[], None],
                   progress: Callable[[str], None]) -> None:
        """Wait until run_inspection_cycle is served and cell_manager sees all its servers.

        See wait_cell_ready; the action client is kept for run_cycle.
        """
        from humanoid_inspection_interfaces.action import RunInspectionCycle
        from rclpy.action import ActionClient
        self.cycle_client = ActionClient(self.node, RunInspectionCycle, 'run_inspection_cycle')
        wait_cell_ready(self.node, self.cycle_client, timeout, alive, progress)

    def run_cycle(self, max_parts: int, timeout: float, alive: Callable[[], None],
                  on_feedback: Callable[[object], None],
                  on_interrupt: Optional[Callable[[], None]] = None):
        """Send the goal, forward feedback, return the result message (RunInspectionCycle).

        A dead node (alive() raising), the timeout or Ctrl-C cancels the goal, then re-raises.
        After Ctrl-C the cancelled cycle gets `cancel_wait_s` to put the robot at rest and
        record the part it was handling (a second Ctrl-C cuts that short).
        """
        from humanoid_inspection_interfaces.action import RunInspectionCycle
        goal = RunInspectionCycle.Goal(max_parts=int(max_parts))
        handle = self._wait(self.cycle_client.send_goal_async(
            goal, feedback_callback=lambda m: on_feedback(m.feedback)), 30.0, alive,
            'run_inspection_cycle goal')
        if not handle.accepted:
            raise RuntimeError('run_inspection_cycle rejected the goal (a cycle is running?)')
        result = handle.get_result_async()
        try:
            return self._wait(result, timeout, alive, 'run_inspection_cycle').result
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            if interrupted and on_interrupt is not None:
                on_interrupt()
            try:
                cancel = handle.cancel_goal_async()
                deadline = time.monotonic() + (self.cancel_wait_s if interrupted else 5.0)
                while not (result.done() if interrupted else cancel.done()) \
                        and time.monotonic() < deadline:
                    time.sleep(0.05)
                if interrupted:
                    self.cancelled_result = result.result().result if result.done() else None
            except Exception:  # the stack may be gone already
                pass
            raise

    def ground_truth(self, timeout: float, alive: Callable[[], None],
                     service: str = 'sim/ground_truth',
                     log: Callable[[str], None] = print) -> dict:
        """The simulation's ground truth (std_srvs/Trigger, JSON in the message), decoded.

        The request is sent again every 5 s while unanswered (nodes/service_calls.py): this
        client is new, and its first reply can be lost while discovery completes.

        Raises:
            TimeoutError: the service did not answer within timeout.
            RuntimeError: it answered with a failure or with a message that is not JSON.
        """
        from std_srvs.srv import Trigger
        client = self.node.create_client(Trigger, service)
        try:
            deadline = time.monotonic() + timeout
            while not client.wait_for_service(timeout_sec=0.2):
                alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f'{service}: not served within {timeout:.0f} s')
            # a read: sent again when unanswered (a fresh client's first reply can be lost)
            reply = call_resending(client, Trigger.Request(), answer_within_s=5.0,
                                   total_s=max(1.0, deadline - time.monotonic()), what=service,
                                   alive=alive, log=log)
        finally:
            self.node.destroy_client(client)
        if not reply.success:
            raise RuntimeError(f'{service} failed: {reply.message[:200]}')
        try:
            return json.loads(reply.message)
        except ValueError as exc:
            raise RuntimeError(f'{service} answered with a message that is not JSON: '
                               f'{exc}') from exc

    def start_recording(self, path, exclude: Iterable[str] = ()) -> 'TopicRecorder':
        """Record every topic of the graph (discovered once a second) to an MCAP file."""
        self.recorder = TopicRecorder(self.node, McapRecorderFile(path), exclude)
        return self.recorder

    def close(self) -> None:
        """Stop recording, destroy the node, shut the context down."""
        if self.recorder is not None:
            self.recorder.close()
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


def wait_cell_ready(node, cycle_client, timeout: float, alive: Callable[[], None],
                    progress: Callable[[str], None] = lambda _line: None) -> None:
    """Wait until run_inspection_cycle is served and cell_manager sees all its servers.

    The stack is ready when cell_manager's 'dependencies' diagnostic is OK (affordance,
    X-ray, manipulation servers and a perception publisher present), as an operator would wait
    before starting a cycle: a goal sent earlier may find perception or manipulation still
    loading and stop the run.

    Args:
        node: an rclpy node spun elsewhere (it gets a diagnostics subscription meanwhile).
        cycle_client: ActionClient of run_inspection_cycle on that node.
        timeout: seconds.
        alive: raises when a node process has died (called while waiting).
        progress: gets a line now and then.

    Raises:
        TimeoutError: naming what was still missing.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    latest = {}

    def on_diag(msg):
        for status in msg.status:
            if status.name == 'cell_manager: dependencies':
                latest['deps'] = status

    sub = node.create_subscription(DiagnosticArray, 'diagnostics', on_diag, 10)
    deadline = time.monotonic() + timeout
    last_print = 0.0
    missing = 'run_inspection_cycle'
    try:
        while True:
            alive()
            if cycle_client.server_is_ready():
                deps = latest.get('deps')
                if deps is not None and _level(deps.level) == 0:
                    return
                missing = deps.message if deps is not None else 'cell_manager diagnostics'
            if time.monotonic() > deadline:
                raise TimeoutError(f'stack not ready after {timeout:.0f} s: {missing}')
            if time.monotonic() - last_print > 10.0:
                progress(f'waiting for the stack ({missing})')
                last_print = time.monotonic()
            time.sleep(0.2)
    finally:
        node.destroy_subscription(sub)


def _level(level) -> int:
    """DiagnosticStatus.level as an int (rclpy gives a byte field as bytes)."""
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)


def _import_type(type_name: str):
    import importlib
    pkg, sub, name = type_name.split('/')
    return getattr(importlib.import_module(f'{pkg}.{sub}'), name)


class TopicRecorder:
    """Subscribe to every topic (raw CDR) and write it to an McapRecorderFile.

    Subscriptions are best effort, which matches reliable and best-effort publishers alike
    (a message lost under load is lost from the recording, never blocks a publisher).
    """

    def __init__(self, node, mcap_file: McapRecorderFile, exclude: Iterable[str] = ()):
        self.node = node
        self.file = mcap_file
        self.exclude = set(exclude)
        self._subs = {}
        self._lock = threading.Lock()
        self._timer = node.create_timer(1.0, self.discover)
        self.discover()

    def discover(self) -> None:
        """Subscribe to topics not seen yet."""
        for topic, types in self.node.get_topic_names_and_types():
            if topic in self._subs or topic in self.exclude or not types:
                continue
            type_name = types[0]
            try:
                msg_type = _import_type(type_name)
            except Exception as exc:  # type not importable here
                self.file.skipped[topic] = f'{type_name}: {exc}'
                self._subs[topic] = None
                continue
            if not self.file.add_topic(topic, type_name):
                self._subs[topic] = None
                continue
            # best effort + volatile is compatible with every publisher (reliable or not,
            # latched or not); a publisher not discovered yet can't tell its QoS
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
            self._subs[topic] = self.node.create_subscription(
                msg_type, topic, lambda data, t=topic: self._on_message(t, data), qos, raw=True)

    def _on_message(self, topic: str, data: bytes) -> None:
        with self._lock:
            self.file.write(topic, data)

    def close(self) -> None:
        """Stop the subscriptions and finish the file."""
        self.node.destroy_timer(self._timer)
        for sub in self._subs.values():
            if sub is not None:
                self.node.destroy_subscription(sub)
        with self._lock:
            self.file.close()
