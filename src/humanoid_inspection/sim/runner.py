"""Run a Simulation at real time: a physics thread, a render thread, periodic callbacks.

Physics thread: steps the simulation so that simulation time follows wall-clock time times
`real_time_factor` (1.0 = real time; 0 = as fast as possible). It steps in small batches,
sleeps until the next step is due, and when it falls more than `max_lag` behind (a slow
machine) it drops the debt instead of spiralling, which shows up as a real-time factor < 1 in
`stats()`. After each batch it runs the periodic callbacks whose period (in SIMULATION time)
has elapsed: e.g. /clock at 100 Hz and /joint_states at 100 Hz in the ROS node.

Render thread (optional): every 1 / camera_rate_hz of simulation time the physics thread
hands it a snapshot of the state (qpos, time); the render thread runs the kinematics on its
own MjData and renders colour + depth (MuJoCo releases the GIL while stepping and rendering,
so both threads use a core each). A frame due while the previous one is still rendering is
skipped and counted. The OpenGL context is created, used and freed in the render thread.
"""

import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

from humanoid_inspection.sim.camera import RgbdCamera, RgbdFrame


@dataclass
class RunnerStats:
    """Counters since start (wall s, sim s, frames)."""

    wall_time: float = 0.0
    sim_time: float = 0.0
    steps: int = 0
    frames: int = 0
    frames_skipped: int = 0
    render_time: float = 0.0
    lag_resets: int = 0

    @property
    def real_time_factor(self) -> float:
        """Simulated seconds per wall second."""
        return self.sim_time / self.wall_time if self.wall_time > 0 else 0.0

    @property
    def camera_rate_hz(self) -> float:
        """Rendered frames per wall second."""
        return self.frames / self.wall_time if self.wall_time > 0 else 0.0

    @property
    def render_ms(self) -> float:
        """Mean render time per frame (ms)."""
        return 1000.0 * self.render_time / self.frames if self.frames else 0.0

    def as_dict(self) -> dict:
        """JSON-friendly summary."""
        return {'wall_time_s': round(self.wall_time, 3), 'sim_time_s': round(self.sim_time, 3),
                'steps': self.steps, 'real_time_factor': round(self.real_time_factor, 4),
                'frames': self.frames, 'frames_skipped': self.frames_skipped,
                'camera_rate_hz': round(self.camera_rate_hz, 3),
                'render_ms': round(self.render_ms, 2), 'lag_resets': self.lag_resets}


@dataclass
class Periodic:
    """A callback run from the physics thread every period_s of simulation time."""

    period_s: float
    callback: Callable[[float], None]
    next_due: float = 0.0


class RealTimeRunner:
    """Threads that step and render a Simulation."""

    def __init__(self, sim, real_time_factor: float = 1.0, camera_rate_hz: float = 15.0,
                 render: bool = True, on_frame: Optional[Callable[[RgbdFrame], None]] = None,
                 camera_kwargs: Optional[dict] = None, batch_steps: int = 5,
                 max_lag: float = 0.25,
                 on_error: Optional[Callable[[BaseException], None]] = None):
        """Set up (nothing runs before start()).

        Args:
            sim: the simulation.Simulation.
            real_time_factor: target sim seconds per wall second (0 = free-running).
            camera_rate_hz: frames per simulated second (render=True).
            render: render the head camera.
            on_frame: called in the render thread with each RgbdFrame.
            camera_kwargs: extra RgbdCamera arguments (width, height, max_range, min_range).
            batch_steps: most physics steps between two checks of the clock and callbacks.
            max_lag: wall seconds of lag after which the debt is dropped.
            on_error: called with an exception that stopped a thread.
        """
        self.sim = sim
        self.real_time_factor = float(real_time_factor)
        self.camera_rate_hz = float(camera_rate_hz)
        self.render = bool(render)
        self.on_frame = on_frame
        self.camera_kwargs = dict(camera_kwargs or {})
        self.batch_steps = max(1, int(batch_steps))
        self.max_lag = float(max_lag)
        self.on_error = on_error
        self.periodic: List[Periodic] = []
        self.stats = RunnerStats()
        self._stop = threading.Event()
        self._frame_ready = threading.Event()
        self._frame_request = None
        self._render_busy = False
        self._threads: List[threading.Thread] = []
        self._camera_ready = threading.Event()
        self.camera_error: Optional[BaseException] = None
        self.intrinsics = None

    def every(self, period_s: float, callback: Callable[[float], None]) -> None:
        """Run callback(sim_time) from the physics thread every period_s simulated seconds."""
        if not period_s > 0:
            raise ValueError(f'period must be > 0, got {period_s}')
        self.periodic.append(Periodic(float(period_s), callback, self.sim.time))

    def start(self) -> None:
        """Start the threads (and wait until the camera is ready, if rendering)."""
        if self._threads:
            raise RuntimeError('runner already started')
        if self.render:
            t = threading.Thread(target=self._render_loop, name='sim_render', daemon=True)
            self._threads.append(t)
            t.start()
            self._camera_ready.wait(30.0)
            if self.camera_error is not None:
                self.stop()
                raise RuntimeError(f'head camera renderer failed: {self.camera_error}') \
                    from self.camera_error
        t = threading.Thread(target=self._physics_loop, name='sim_physics', daemon=True)
        self._threads.append(t)
        t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and join the threads (idempotent)."""
        self._stop.set()
        self._frame_ready.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    @property
    def running(self) -> bool:
        """True while the physics thread runs."""
        return any(t.is_alive() and t.name == 'sim_physics' for t in self._threads)

    # ------------------------------------------------------------------ physics
    def _physics_loop(self) -> None:
        try:
            self._physics()
        except BaseException as exc:  # report, then stop everything
            if self.on_error:
                self.on_error(exc)
            self._stop.set()
            self._frame_ready.set()

    def _physics(self) -> None:
        sim = self.sim
        dt = sim.timestep
        rtf = self.real_time_factor
        wall0 = time.monotonic()
        sim0 = sim.time
        anchor_wall, anchor_sim = wall0, sim0
        next_frame = sim.time
        frame_period = 1.0 / self.camera_rate_hz if self.render and self.camera_rate_hz > 0 \
            else None
        while not self._stop.is_set():
            now = time.monotonic()
            if rtf > 0:
                target = anchor_sim + (now - anchor_wall) * rtf
                behind = (target - sim.time) / rtf
                if behind > self.max_lag:       # cannot keep up: drop the debt
                    anchor_wall, anchor_sim = now, sim.time
                    self.stats.lag_resets += 1
                    target = sim.time + dt
                n = int((target - sim.time) / dt + 1e-9)
                if n <= 0:
                    wait = (sim.time + dt - target) / rtf
                    time.sleep(min(max(wait, 0.0), 0.002))
                    continue
                n = min(n, self.batch_steps)
            else:
                n = self.batch_steps
            sim.step(n)
            self.stats.steps += n
            t = sim.time
            for p in self.periodic:
                if t + 1e-9 >= p.next_due:
                    p.callback(t)
                    p.next_due += p.period_s
                    if p.next_due <= t:
                        p.next_due = t + p.period_s
            if frame_period is not None and t + 1e-9 >= next_frame:
                next_frame += frame_period
                if next_frame <= t:
                    next_frame = t + frame_period
                if self._render_busy:
                    self.stats.frames_skipped += 1
                else:
                    self._frame_request = sim.snapshot()
                    self._render_busy = True
                    self._frame_ready.set()
            self.stats.wall_time = time.monotonic() - wall0
            self.stats.sim_time = t - sim0

    # ------------------------------------------------------------------ rendering
    def _render_loop(self) -> None:
        import mujoco
        model = self.sim.model
        try:
            camera = RgbdCamera(model, self.sim.scene.camera, **self.camera_kwargs)
        except BaseException as exc:
            self.camera_error = exc
            self._camera_ready.set()
            return
        self.intrinsics = camera.intrinsics
        self._camera_ready.set()
        data = mujoco.MjData(model)
        try:
            while not self._stop.is_set():
                self._frame_ready.wait(0.5)
                if self._stop.is_set():
                    break
                if not self._frame_ready.is_set():
                    continue
                self._frame_ready.clear()
                request = self._frame_request
                if request is None:
                    continue
                qpos, mocap, t = request
                t0 = time.monotonic()
                data.qpos[:] = qpos
                if mocap.size:
                    data.mocap_pos[:] = mocap
                data.time = t
                mujoco.mj_kinematics(model, data)
                mujoco.mj_camlight(model, data)
                frame = camera.render(data, t)
                self.stats.render_time += time.monotonic() - t0
                self.stats.frames += 1
                self._render_busy = False
                if self.on_frame is not None:
                    self.on_frame(frame)
        except BaseException as exc:
            if self.on_error:
                self.on_error(exc)
            self._stop.set()
        finally:
            self._render_busy = False
            camera.close()
