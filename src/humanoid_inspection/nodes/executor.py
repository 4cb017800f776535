"""HandOffExecutor: rclpy's MultiThreadedExecutor without its busy wait for a free worker.

rclpy's MultiThreadedExecutor (Kilted) submits each ready callback to its thread pool and goes
straight back to collecting work. Until a worker has started the callback, the task is still
"not executing", so the executor yields it again, submits it again (a no-op in the worker) and
rebuilds its wait set, over and over, holding the GIL the worker needs to start. Every message
costs milliseconds of spinning: an idle node with a 100 Hz ``joint_states`` subscription in a
mutually exclusive callback group used 47 % of a core and still took only 54 of the 100
messages a second; every node with ``use_sim_time`` paid the same for each ``/clock`` message.
In the running cell that was most of a core, and the planning and X-ray stages of a part ran
about twice as slowly as on their own (``python bench/bench_executor.py`` measures it; see
docs/cell.md).

This executor hands a callback to a worker and waits (GIL released) until the worker has begun
it, for at most ``handoff_timeout_s``: when every worker is busy it goes on as rclpy's does.
Callback groups, futures, tasks and coroutines behave exactly as in MultiThreadedExecutor, which
it subclasses; only the hand-off differs. It overrides ``_spin_once_impl`` of rclpy's
MultiThreadedExecutor (Jazzy, Kilted: a thread pool ``_executor`` and a ``_futures`` list); an
rclpy without those runs the parent's spin unchanged.
"""

import threading
from typing import Callable, Optional

from rclpy.executors import (ConditionReachedException, ExternalShutdownException,
                             MultiThreadedExecutor, ShutdownException, TimeoutException)


class HandOffExecutor(MultiThreadedExecutor):
    """MultiThreadedExecutor that waits for a worker to take each callback.

    Args:
        num_threads: worker threads (as MultiThreadedExecutor).
        handoff_timeout_s: longest wait for a worker to begin a callback (s).
        context: the rclpy context.
    """

    # rclpy's Executor.__del__ reads this; an __init__ that raised before the parent's ran
    # would otherwise leave an AttributeError for the garbage collector to print
    _sigint_gc = None

    def __init__(self, num_threads: Optional[int] = None, handoff_timeout_s: float = 0.05,
                 *, context=None):
        if not handoff_timeout_s > 0:
            raise ValueError(f'handoff_timeout_s must be > 0, got {handoff_timeout_s}')
        super().__init__(num_threads=num_threads, context=context)
        self.handoff_timeout_s = float(handoff_timeout_s)
        self.hands_off = hasattr(self, '_executor') and isinstance(
            getattr(self, '_futures', None), list)

    def _spin_once_impl(self, timeout_sec=None,
                        wait_condition: Callable[[], bool] = lambda: False) -> None:
        if not self.hands_off:
            super()._spin_once_impl(timeout_sec, wait_condition)
            return
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(timeout_sec, None,
                                                                    wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException,
                ConditionReachedException):
            return
        begun = threading.Event()

        def run():
            begun.set()
            handler()

        self._executor.submit(run)
        self._futures.append(handler)
        # The worker marks the task executing as soon as it runs it; until then the task would
        # be yielded (and submitted) again. Waiting here releases the GIL to the worker.
        begun.wait(self.handoff_timeout_s)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # raise any exceptions, as MultiThreadedExecutor does
