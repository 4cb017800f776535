"""Benchmark of the MuJoCo cell: real-time factor and head-camera rate, with and without rendering.

Runs the same Simulation + RealTimeRunner as the mujoco_sim node (no ROS, so the figures are
the simulator's own), pinned to at most 2 CPU cores, with the robot swinging its left arm back
and forth (so the solver and the actuators work) and N parts on the table:
  1. physics_only_free: physics alone as fast as it goes -> the baseline (max RTF)
  2. physics_only_realtime: physics at real time (target RTF 1.0), no camera
  3. render_realtime: physics at real time + head camera 640x480 colour + depth at the
     requested rate (the node's configuration): achieved RTF and camera rate
  4. render_free: physics as fast as it goes + the camera (headroom)
Prints a table and saves JSON (default bench/results/sim.json), including the load average of
the machine (other processes on a shared machine lower the figures).

    MUJOCO_GL=osmesa python bench/bench_sim.py --seconds 10 --camera-rate 15 --parts 6
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / 'results' / 'sim.json'
ARM = ['left_shoulder_pitch', 'left_shoulder_roll', 'left_shoulder_yaw', 'left_elbow',
       'left_wrist_yaw', 'left_wrist_pitch', 'left_wrist_roll']
SWING = {'left_shoulder_pitch': 0.9, 'left_shoulder_yaw': 0.5, 'left_elbow': -0.6,
         'left_wrist_yaw': 1.0, 'left_wrist_roll': 0.5, 'left_wrist_pitch': 0.3}


def pin_cores(count: int) -> list:
    """Restrict this process (and its threads) to the first `count` allowed cores."""
    cores = sorted(os.sched_getaffinity(0))[:count]
    os.sched_setaffinity(0, cores)
    return cores


def swing_arm(sim, period_s: float = 2.0):
    """A periodic callback that sends the left arm back and forth (2 s each way)."""
    from humanoid_inspection.sim.simulation import make_trajectory
    home = sim.joint_positions()
    state = {'out': False}

    def callback(_t):
        state['out'] = not state['out']
        goal = {**home, **SWING} if state['out'] else home
        sim.submit('left_arm_controller',
                   make_trajectory(ARM, [(period_s * 0.9, [goal[j] for j in ARM])]))
    return callback


def run_case(name: str, seconds: float, rtf: float, render: bool, camera_rate: float,
             parts: int, seed: int) -> dict:
    """One configuration; returns the runner statistics + the case settings."""
    from humanoid_inspection.sim.factory import load_simulation
    from humanoid_inspection.sim.runner import RealTimeRunner
    sim = load_simulation(num_parts=parts, seed=seed)
    runner = RealTimeRunner(sim, real_time_factor=rtf, camera_rate_hz=camera_rate,
                            render=render)
    runner.every(2.0, swing_arm(sim))
    runner.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)
        print(f'  {name}: {runner.stats.wall_time:5.1f} s wall, '
              f'sim {runner.stats.sim_time:6.1f} s', end='\r', flush=True)
    runner.stop()
    print(' ' * 70, end='\r')
    stats = runner.stats.as_dict()
    stats['camera_rate_per_sim_s'] = round(stats['frames'] / stats['sim_time_s'], 3) \
        if stats['sim_time_s'] else 0.0
    stats.update({'case': name, 'target_rtf': rtf, 'render': render,
                  'requested_camera_hz': camera_rate if render else 0.0})
    return stats


def main(argv=None) -> int:
    """Run the cases, print the table, save JSON; exit 0."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=10.0, help='wall seconds per case')
    parser.add_argument('--camera-rate', type=float, default=15.0, help='camera Hz (sim time)')
    parser.add_argument('--parts', type=int, default=6)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cores', type=int, default=2, help='CPU cores to run on')
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    os.environ.setdefault('MUJOCO_GL', 'osmesa')
    os.environ.setdefault('PYOPENGL_PLATFORM', os.environ['MUJOCO_GL'])
    cores = pin_cores(args.cores)
    load_before = os.getloadavg()
    cases = [
        ('physics_only_free', 0.0, False),
        ('physics_only_realtime', 1.0, False),
        ('render_realtime', 1.0, True),
        ('render_free', 0.0, True),
    ]
    results = []
    for name, rtf, render in cases:
        print(f'[{len(results) + 1}/{len(cases)}] {name} ...', flush=True)
        results.append(run_case(name, args.seconds, rtf, render, args.camera_rate, args.parts,
                                args.seed))
    import mujoco
    report = {
        'benchmark': 'sim', 'command': 'python bench/bench_sim.py ' + ' '.join(
            argv if argv is not None else sys.argv[1:]),
        'cores': cores, 'cpu': platform.processor() or platform.machine(),
        'mujoco': mujoco.__version__, 'mujoco_gl': os.environ.get('MUJOCO_GL'),
        'timestep_s': 0.002, 'parts': args.parts, 'seconds_per_case': args.seconds,
        'load_average_before': [round(v, 2) for v in load_before],
        'load_average_after': [round(v, 2) for v in os.getloadavg()],
        'baseline': 'physics_only_free', 'cases': results,
    }
    base = results[0]['real_time_factor']
    print(f"\n{'case':<24}{'RTF':>8}{'vs base':>9}{'cam Hz':>9}{'cam/sim s':>11}"
          f"{'render ms':>11}{'skipped':>9}")
    for r in results:
        print(f"{r['case']:<24}{r['real_time_factor']:>8.2f}"
              f"{r['real_time_factor'] / base if base else 0:>8.2f}x"
              f"{r['camera_rate_hz']:>9.1f}{r['camera_rate_per_sim_s']:>11.1f}"
              f"{r['render_ms']:>11.1f}{r['frames_skipped']:>9d}")
    print(f"cores {cores}, load average before {report['load_average_before']}, "
          f"after {report['load_average_after']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + '\n')
    print(f'saved {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
