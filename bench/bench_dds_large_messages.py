"""Depth-image delivery between two ROS processes with the stack's Fast DDS profile vs the default.

A 640x480 32FC1 depth image (1.2 MB) is larger than Fast DDS's default 512 KiB shared-memory
segment: without a profile it travels as UDP fragments through the default socket buffers,
and with the CPU busy whole images are lost. config/fastdds_localhost.xml gives shared memory
16 MiB segments (and keeps UDP on loopback). This bench publishes --count depth images at
--rate Hz with the sensor-data QoS (best effort, depth 5, as the sim camera) from one process
to a subscriber process whose callback does a little work, while --load busy processes keep
the cores occupied; it counts what arrives. Baseline in the same run: the same with Fast DDS's
default transports (FASTDDS_DEFAULT_PROFILES_FILE unset).

Usage: python bench/bench_dds_large_messages.py [--count 150] [--rate 15] [--load 2]
       [--out bench/results/dds_large_messages.json]
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))

PUBLISHER = '''
import sys, time, rclpy, numpy as np
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init(); node = rclpy.create_node('bench_depth_publisher')
pub = node.create_publisher(Image, 'bench/depth', qos_profile_sensor_data)
msg = Image(height=480, width=640, encoding='32FC1', step=2560)
msg.data = np.random.default_rng(0).bytes(480 * 2560)
deadline = time.monotonic() + 10.0
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.5)
count, period = int(sys.argv[1]), 1.0 / float(sys.argv[2])
for i in range(count):
    msg.header.frame_id = str(i)
    pub.publish(msg)
    time.sleep(period)
time.sleep(1.0)
'''

SUBSCRIBER = '''
import sys, time, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init(); node = rclpy.create_node('bench_depth_subscriber')
got = set()
def on_depth(msg):
    got.add(msg.header.frame_id)
    sum(range(20000))          # a callback that does some work, as a perception node
node.create_subscription(Image, 'bench/depth', on_depth, qos_profile_sensor_data)
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.1)
print(len(got), flush=True)
'''


def run_case(profile: bool, count: int, rate: float, load: int) -> dict:
    """Received / sent for one transport configuration."""
    from humanoid_inspection.launcher import fastdds_profile, ros_environment
    env = ros_environment(domain_id=random.Random().randint(101, 160))
    env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    if profile:
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(fastdds_profile())
    duration = 4.0 + count / rate + 4.0
    burners = [subprocess.Popen([sys.executable, '-c', 'while True: pass'])
               for _ in range(load)]
    try:
        sub = subprocess.Popen([sys.executable, '-c', SUBSCRIBER, str(duration)], env=env,
                               stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        t0 = time.monotonic()
        subprocess.run([sys.executable, '-c', PUBLISHER, str(count), str(rate)], env=env,
                       check=True, timeout=duration + 30)
        out, _ = sub.communicate(timeout=duration + 30)
        received = int(out.strip().splitlines()[-1])
    finally:
        for b in burners:
            b.kill()
            b.wait()
    return {'profile': str(fastdds_profile()) if profile else 'Fast DDS default transports',
            'sent': count, 'received': received, 'delivered': received / count,
            'wall_s': time.monotonic() - t0}


def main(argv=None) -> int:
    """Run both cases; print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--count', type=int, default=150)
    parser.add_argument('--rate', type=float, default=15.0)
    parser.add_argument('--load', type=int, default=2, help='busy processes during the run')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' /
                                             'dds_large_messages.json'))
    args = parser.parse_args(argv)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    results = {}
    for name, profile in (('baseline_default_transports', False), ('stack_profile', True)):
        print(f'{name}: {args.count} depth images (1.2 MB) at {args.rate:g} Hz, '
              f'{args.load} busy process(es) ...', flush=True)
        results[name] = run_case(profile, args.count, args.rate, args.load)
        r = results[name]
        print(f'  received {r["received"]}/{r["sent"]} ({100 * r["delivered"]:.0f} %)',
              flush=True)
    out = {'command': 'python bench/bench_dds_large_messages.py ' + ' '.join(argv or sys.argv[1:]),
           'count': args.count, 'rate_hz': args.rate, 'load_processes': args.load,
           'load_average': os.getloadavg(), 'results': results}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f'saved {path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
