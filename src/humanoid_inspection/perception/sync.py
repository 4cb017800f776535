"""Approximate-time synchroniser for N message streams (pure python, no ROS).

message_filters cannot be installed here, so this is a small re-implementation of its
ApproximateTimeSynchronizer policy: each stream keeps a bounded queue of (stamp, message);
when a message arrives, the synchroniser looks for one message per stream whose stamps all lie
within `slop` seconds of each other, picks for every other stream the message closest in time
to the new one, emits the set and drops it and everything older. Messages that never find
partners fall out of their bounded queue.
"""

import threading
from collections import deque
from typing import Any, Callable, List, Optional, Sequence


class ApproximateTimeSync:
    """Match messages of N streams whose stamps lie within slop seconds of each other."""

    def __init__(self, n_streams: int, slop: float, queue_size: int = 10,
                 callback: Optional[Callable[..., None]] = None):
        """Create the synchroniser.

        Args:
            n_streams: number of streams (>= 2).
            slop: largest allowed spread of stamps in one matched set (s).
            queue_size: messages kept per stream while waiting for partners.
            callback: called with one message per stream (stream order) on every match.

        Raises:
            ValueError: bad n_streams, slop or queue_size.
        """
        if n_streams < 2 or slop < 0 or queue_size < 1:
            raise ValueError(f'need n_streams >= 2, slop >= 0, queue_size >= 1 '
                             f'(got {n_streams}, {slop}, {queue_size})')
        self.slop = float(slop)
        self.callback = callback
        self._queues = [deque(maxlen=queue_size) for _ in range(n_streams)]
        self._lock = threading.Lock()
        self.matched = 0

    def add(self, stream: int, stamp: float, msg: Any) -> Optional[List[Any]]:
        """Add one message with its stamp (s); return the matched set (and call the callback)
        if this message completes one, else None."""
        with self._lock:
            self._queues[stream].append((float(stamp), msg))
            match = self._find(stream, float(stamp))
            if match is None:
                return None
            for q, (t, _) in zip(self._queues, match):
                while q and q[0][0] <= t:
                    q.popleft()
            self.matched += 1
            msgs = [m for _, m in match]
        if self.callback is not None:
            self.callback(*msgs)
        return msgs

    def _find(self, stream: int, stamp: float):
        chosen = []
        for i, q in enumerate(self._queues):
            if i == stream:
                chosen.append((stamp, q[-1][1]))
                continue
            if not q:
                return None
            best = min(q, key=lambda item: abs(item[0] - stamp))
            chosen.append(best)
        stamps = [t for t, _ in chosen]
        if max(stamps) - min(stamps) > self.slop:
            return None
        return chosen

    def pending(self) -> Sequence[int]:
        """Number of queued messages per stream."""
        with self._lock:
            return [len(q) for q in self._queues]
