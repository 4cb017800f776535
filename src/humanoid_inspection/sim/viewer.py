"""Optional interactive window on the running simulation (MuJoCo's passive viewer).

Only where a display exists (DISPLAY or WAYLAND_DISPLAY set); headless machines (CI, the
project's laptops over SSH) skip it. The viewer needs an on-screen OpenGL (GLFW), so it is
not available in a process that forced MUJOCO_GL=osmesa for offscreen rendering: then
`start_viewer` returns None with the reason.
"""

import os
import threading
import time
from typing import Optional, Tuple


def display_available() -> bool:
    """True if an X11 or Wayland display is set."""
    return bool(os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'))


class PassiveViewer:
    """A thread that syncs MuJoCo's passive viewer with the simulation at ~30 Hz."""

    def __init__(self, sim, rate_hz: float = 30.0):
        """Open the window (raises on failure)."""
        import mujoco.viewer
        self.sim = sim
        self.period = 1.0 / rate_hz
        self._handle = mujoco.viewer.launch_passive(sim.model, sim.data,
                                                    show_left_ui=False, show_right_ui=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name='sim_viewer', daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set() and self._handle.is_running():
            with self.sim.lock:
                self._handle.sync()
            time.sleep(self.period)

    def close(self) -> None:
        """Close the window and stop the thread."""
        self._stop.set()
        self._thread.join(2.0)
        self._handle.close()


def start_viewer(sim) -> Tuple[Optional[PassiveViewer], str]:
    """(viewer, '') or (None, why not)."""
    if not display_available():
        return None, 'no display (DISPLAY/WAYLAND_DISPLAY unset)'
    if os.environ.get('MUJOCO_GL', '').lower() in ('osmesa', 'egl'):
        return None, f"MUJOCO_GL={os.environ['MUJOCO_GL']} selects offscreen OpenGL only"
    try:
        return PassiveViewer(sim), ''
    except Exception as exc:  # GLFW missing, no GL context, ...
        return None, f'viewer failed to open: {exc}'
