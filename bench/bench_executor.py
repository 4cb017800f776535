"""CPU an idle node spends on its executor: rclpy's MultiThreadedExecutor vs HandOffExecutor.

One process publishes what the sim publishes to every node (``joint_states`` with the robot's
33 joints at 100 Hz, ``/clock`` at 20 Hz, config/mujoco_sim.yaml). For each executor, a node
process with ``use_sim_time`` (so it takes every /clock message) and a ``joint_states``
subscription in a mutually exclusive callback group (as the manipulation node has) runs for
``--seconds``; its CPU time (user + system, /proc) and the messages its callback got are
measured. Baseline (rclpy's MultiThreadedExecutor) and HandOffExecutor run in the same run,
one after the other, on their own ROS domain (loopback DDS).

``--busy N`` runs N processes that keep a core busy meanwhile, as the other nodes and the sim do
in the running cell: the stock executor spins until a worker thread gets the CPU and the GIL,
so its cost grows with the load around it (on a quiet machine it is small).

Usage: python bench/bench_executor.py [--seconds 10] [--rate 100] [--clock-rate 50]
       [--busy 0 2] [--out bench/results/executor.json]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))
EXECUTORS = ('MultiThreadedExecutor', 'HandOffExecutor')


def busy() -> None:
    """Busy role: keep one core busy with Python work until killed."""
    x = 0
    while True:
        x = (x * 31 + 7) % 1000003


def publish(rate: float, clock_rate: float) -> None:
    """Publisher role: joint_states at rate and /clock at clock_rate until killed."""
    import rclpy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState

    from humanoid_inspection import robot_description as rd
    rclpy.init()
    node = rclpy.create_node('bench_executor_publisher')
    js = node.create_publisher(JointState, 'joint_states', 10)
    clock = node.create_publisher(Clock, '/clock', 10)
    names = list(rd.standing_pose())
    t0 = time.monotonic()
    sent_js = sent_clock = 0
    while True:
        now = time.monotonic() - t0
        while sent_js < now * rate:
            js.publish(JointState(name=names, position=[0.0] * len(names),
                                  velocity=[0.0] * len(names), effort=[0.0] * len(names)))
            sent_js += 1
        while sent_clock < now * clock_rate:
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = int(now), int((now % 1) * 1e9)
            clock.publish(msg)
            sent_clock += 1
        time.sleep(min(1.0 / rate, 1.0 / clock_rate) / 2)


def subscribe(executor_name: str, seconds: float, out: str) -> None:
    """Subscriber role: spin a node for seconds; write its CPU time and callbacks to out."""
    import threading

    import rclpy
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState

    from humanoid_inspection.nodes.executor import HandOffExecutor
    rclpy.init()
    node = rclpy.create_node('bench_executor_subscriber', parameter_overrides=[
        Parameter('use_sim_time', value=True)])
    lock = threading.Lock()
    state = {'callbacks': 0, 'positions': {}}

    def on_joints(msg):
        with lock:
            state['callbacks'] += 1
            state['positions'].update(zip(msg.name, msg.position))

    node.create_subscription(JointState, 'joint_states', on_joints, 10,
                             callback_group=MutuallyExclusiveCallbackGroup())
    cls = HandOffExecutor if executor_name == 'HandOffExecutor' else MultiThreadedExecutor
    executor = cls(num_threads=4)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    time.sleep(2.0)                      # discovery
    with lock:
        state['callbacks'] = 0
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    with lock:
        callbacks = state['callbacks']
    Path(out).write_text(json.dumps({
        'executor': executor_name, 'seconds': wall, 'cpu_s': cpu,
        'cpu_percent_of_a_core': 100.0 * cpu / wall, 'callbacks_per_s': callbacks / wall}))
    os._exit(0)


def main(argv=None) -> int:
    """Run the publisher and one subscriber per executor; print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=10.0)
    parser.add_argument('--rate', type=float, default=100.0, help='joint_states rate (Hz)')
    parser.add_argument('--clock-rate', type=float, default=50.0, help='/clock rate (Hz)')
    parser.add_argument('--busy', type=int, nargs='+', default=[0, 2],
                        help='busy processes beside the node, one measurement per value')
    parser.add_argument('--domain-id', type=int, default=43)
    parser.add_argument('--role', default='', help=argparse.SUPPRESS)
    parser.add_argument('--executor', default='', help=argparse.SUPPRESS)
    parser.add_argument('--result', default='', help=argparse.SUPPRESS)
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'executor.json'))
    args = parser.parse_args(argv)
    if args.role == 'busy':
        busy()
        return 0
    if args.role == 'publish':
        publish(args.rate, args.clock_rate)
        return 0
    if args.role == 'subscribe':
        subscribe(args.executor, args.seconds, args.result)
        return 0
    from humanoid_inspection.launcher import ros_environment
    env = ros_environment(args.domain_id)
    me = [sys.executable, str(Path(__file__).resolve())]
    pub = subprocess.Popen(me + ['--role', 'publish', '--rate', str(args.rate),
                                 '--clock-rate', str(args.clock_rate)], env=env)
    rows = []
    try:
        for n_busy in args.busy:
            hogs = [subprocess.Popen(me + ['--role', 'busy']) for _ in range(n_busy)]
            try:
                for name in EXECUTORS:
                    result = Path(f'/tmp/bench_executor_{os.getpid()}_{name}.json')
                    print(f'{name}: idle node, joint_states {args.rate:.0f} Hz + /clock '
                          f'{args.clock_rate:.0f} Hz, {n_busy} busy process(es), '
                          f'{args.seconds:.0f} s ...', flush=True)
                    subprocess.run(me + ['--role', 'subscribe', '--executor', name,
                                         '--seconds', str(args.seconds), '--result',
                                         str(result)], env=env, check=True,
                                   timeout=args.seconds + 60)
                    row = json.loads(result.read_text())
                    row['busy_processes'] = n_busy
                    rows.append(row)
                    result.unlink()
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
    finally:
        pub.kill()
        pub.wait()
    load = os.getloadavg()[0]
    print(f"\n{'executor':<24}{'busy':>6}{'CPU % of a core':>17}{'callbacks/s':>13}")
    for r in rows:
        print(f"{r['executor']:<24}{r['busy_processes']:>6}{r['cpu_percent_of_a_core']:>17.1f}"
              f"{r['callbacks_per_s']:>13.1f}")
    print(f'(joint_states sent at {args.rate:.0f}/s; load average {load:.2f}, {os.cpu_count()} '
          'cores)')
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        'command': 'python bench/bench_executor.py ' + ' '.join(
            argv if argv is not None else sys.argv[1:]),
        'joint_states_hz': args.rate, 'clock_hz': args.clock_rate, 'load_average_1min': load,
        'cores': os.cpu_count(), 'rows': rows}, indent=2))
    print(f'saved {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
