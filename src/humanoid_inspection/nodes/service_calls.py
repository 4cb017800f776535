"""Calling an idempotent ROS service so that a lost reply costs seconds, not the whole timeout.

A ROS 2 service call is a request topic and a reply topic. Fast DDS can lose the reply while
discovery is still completing (ros2/ros2#1253): the client's ``wait_for_service`` returns once
*it* has matched the server, the server takes and serves the request, but its reply writer has
not yet matched the client's reply reader. rmw_fastrtps waits ``max_blocking_time`` for that
match (100 ms by default), then drops the reply with only a warning in the *server's* log
("failed to send response (timeout): client will not receive response"). The caller hears
nothing and waits out its own timeout. It happened to cell_manager's first ``manipulation/rest``
call in CI on a loaded 2-core machine: the cycle waited silently for its 300 s timeout.

Two defences, both in this project:

- config/fastdds_localhost.xml raises ``max_blocking_time`` of every service reply writer (the
  ``service`` profile), so the server waits for the match instead of dropping the reply.
- call_resending() here, for requests that can be served twice without harm (a rest motion
  when at rest is a no-op; ground truth is a read): no answer within ``answer_within_s`` and
  the same request goes again; the first answer to any of the sends is returned. A request
  lost on the way in (the server not yet matched to the client's request writer) is covered
  by the same resend.

Needs the client's node to be spun by another thread (the futures complete there).
"""

import threading
import time
from typing import Any, Callable, Optional


def call_resending(client, request, *, answer_within_s: float, total_s: float, what: str,
                   alive: Optional[Callable[[], None]] = None,
                   log: Optional[Callable[[str], None]] = None) -> Any:
    """Call ``client`` with ``request``; send it again whenever no answer came in time.

    Args:
        client: an rclpy Client whose node another thread spins.
        request: the request (sent unchanged each time: it must be idempotent).
        answer_within_s: no answer within this long after a send -> send again.
        total_s: give up after this long in all.
        what: the call's name for messages.
        alive: called while waiting; may raise (a process that died, a cancel).
        log: gets one line per resend.

    Returns:
        The first response to any of the sends.

    Raises:
        ValueError: answer_within_s or total_s not > 0.
        TimeoutError: no send was answered within total_s.
    """
    if not (answer_within_s > 0 and total_s > 0):
        raise ValueError(f'answer_within_s and total_s must be > 0, got {answer_within_s}, '
                         f'{total_s}')
    answered = threading.Event()
    futures = []
    deadline = time.monotonic() + total_s
    try:
        while True:
            future = client.call_async(request)
            future.add_done_callback(lambda _f: answered.set())
            futures.append(future)
            resend_at = min(deadline, time.monotonic() + answer_within_s)
            while not answered.is_set() and time.monotonic() < resend_at:
                if alive is not None:
                    alive()
                answered.wait(min(0.2, max(0.0, resend_at - time.monotonic())))
            done = [f for f in futures if f.done()]
            if done:
                return done[0].result()
            if time.monotonic() >= deadline:
                raise TimeoutError(f'{what}: no answer within {total_s:.0f} s '
                                   f'({len(futures)} request(s) sent)')
            if log is not None:
                log(f'{what}: no answer within {answer_within_s:.0f} s; sending the request '
                    f'again (#{len(futures) + 1}; a reply can be lost while DDS discovery '
                    'completes)')
    finally:
        for future in futures:
            if not future.done():
                client.remove_pending_request(future)
