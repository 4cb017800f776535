"""Start the stack's nodes as separate processes and stop them cleanly (no `ros2 launch` here).

`humanoid-inspection launch` is the laptop/CI counterpart of `ros2 launch humanoid_inspection
sim_mujoco.launch.py`: the same executables, node names and parameter files (launch_spec.py).
Each node runs in its own process group with DDS kept on loopback
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless the caller sets it). Stopping sends SIGINT,
waits, then SIGTERM, then SIGKILL, to the whole process group, so no orphan stays behind.
No ROS imports: usable from tests and the demo before rclpy is initialised.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from humanoid_inspection import launch_spec
from humanoid_inspection.launch_spec import NodeSpec


def fastdds_profile() -> Optional[Path]:
    """config/fastdds_localhost.xml (large shared-memory segments, UDP on loopback), if found.

    Fast DDS's default 512 KiB shared-memory segment cannot carry a 1.2 MB depth image: it
    went as UDP fragments and was lost under load (see the file's comment).
    """
    try:
        path = launch_spec.config_dir() / 'fastdds_localhost.xml'
    except FileNotFoundError:
        return None
    return path if path.is_file() else None


def ros_environment(domain_id: Optional[int] = None, base: Optional[Dict[str, str]] = None
                    ) -> Dict[str, str]:
    """A copy of the environment for node processes: loopback DDS, given domain, unbuffered."""
    env = dict(os.environ if base is None else base)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    if env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST':
        profile = fastdds_profile()
        if profile is not None:
            env.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(profile))
    env.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    env.setdefault('MUJOCO_GL', 'osmesa')
    env.setdefault('PYOPENGL_PLATFORM', env['MUJOCO_GL'])
    env['PYTHONUNBUFFERED'] = '1'
    if domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(int(domain_id))
    return env


def live_group_members(pgid: int) -> List[int]:
    """PIDs of the processes in process group pgid that are still running (zombies excluded).

    A zombie has already released everything; it only waits for its parent (or, orphaned, for
    an init that may not reap) to collect its exit status.
    """
    members = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
        except OSError:
            continue
        fields = stat.rsplit(')', 1)[1].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ('Z', 'X'):
            members.append(int(entry.name))
    return members


@dataclass
class NodeProcess:
    """A running node process and where its output goes."""

    spec: NodeSpec
    popen: subprocess.Popen
    log_path: Path

    @property
    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the node printed (stdout and stderr)."""
        try:
            text = self.log_path.read_text(errors='replace')
        except OSError:
            return ''
        return '\n'.join(text.splitlines()[-lines:])


class StackLauncher:
    """Start node processes; stop them with SIGINT -> SIGTERM -> SIGKILL on their groups.

    Usable as a context manager: ``with StackLauncher(specs, log_dir) as stack: ...``.
    """

    def __init__(self, specs: Sequence[NodeSpec], log_dir: Path, *, use_sim_time: bool = True,
                 domain_id: Optional[int] = None, params: Optional[Dict[str, dict]] = None,
                 param_files: Optional[Dict[str, Sequence[Path]]] = None,
                 env: Optional[Dict[str, str]] = None, echo: bool = False):
        self.specs = list(specs)
        self.log_dir = Path(log_dir)
        self.use_sim_time = use_sim_time
        self.params = params or {}
        self.param_files = param_files or {}
        self.env = ros_environment(domain_id, env)
        self.echo = echo
        self.processes: List[NodeProcess] = []

    def command(self, spec: NodeSpec) -> List[str]:
        """The full command line of one node."""
        return [launch_spec.executable_path(spec)] + launch_spec.ros_arguments(
            spec, self.use_sim_time, extra_params=self.params.get(spec.name),
            extra_param_files=self.param_files.get(spec.name, ()))

    def start(self) -> 'StackLauncher':
        """Start every node (in spec order)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.specs:
            log_path = self.log_dir / f'{spec.name}.log'
            log_file = open(log_path, 'wb')
            popen = subprocess.Popen(
                self.command(spec), env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
            log_file.close()
            self.processes.append(NodeProcess(spec, popen, log_path))
            if self.echo:
                print(f'[launch] started {spec.name} (pid {popen.pid}), log {log_path}',
                      flush=True)
        return self

    def dead(self) -> List[NodeProcess]:
        """Processes that have exited."""
        return [p for p in self.processes if not p.alive]

    def check_alive(self) -> None:
        """Raise RuntimeError naming every node that has exited, with the end of its log."""
        dead = self.dead()
        if dead:
            details = '\n'.join(
                f'--- {p.spec.name} exited with code {p.popen.returncode}:\n{p.log_tail()}'
                for p in dead)
            raise RuntimeError(f'node process(es) exited: {[p.spec.name for p in dead]}\n'
                               f'{details}')

    @staticmethod
    def _signal_group(proc: NodeProcess, sig: int) -> None:
        try:
            os.killpg(proc.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, sigint_timeout: float = 10.0, sigterm_timeout: float = 5.0) -> Dict[str, int]:
        """Stop all nodes: SIGINT, then SIGTERM, then SIGKILL. Return {name: exit code}."""
        for stage_signal, timeout in ((signal.SIGINT, sigint_timeout),
                                      (signal.SIGTERM, sigterm_timeout),
                                      (signal.SIGKILL, 5.0)):
            running = [p for p in self.processes if p.alive]
            if not running:
                break
            for proc in running:
                self._signal_group(proc, stage_signal)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(p.alive for p in running):
                time.sleep(0.05)
            if self.echo and stage_signal != signal.SIGINT:
                print(f'[launch] sent {signal.Signals(stage_signal).name} to '
                      f'{[p.spec.name for p in running]}', flush=True)
        for proc in self.processes:
            # The group may hold children of the node; make sure none outlives it.
            self._signal_group(proc, signal.SIGKILL)
            proc.popen.wait()
        return {p.spec.name: p.popen.returncode for p in self.processes}

    def kill(self) -> None:
        """SIGKILL every node immediately (crash simulation)."""
        for proc in self.processes:
            self._signal_group(proc, signal.SIGKILL)
        for proc in self.processes:
            proc.popen.wait()

    def __enter__(self) -> 'StackLauncher':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv=None) -> int:
    """`humanoid-inspection launch`: start the stack and keep it up until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog='humanoid-inspection launch',
        description='Start the stack as separate ROS 2 processes (DDS on loopback by default).')
    parser.add_argument('--nodes', help='comma-separated node names (default: all)')
    parser.add_argument('--no-sim', action='store_true',
                        help='do not start mujoco_sim (robot hardware or another sim provides '
                             'clock, joint_states and the camera)')
    parser.add_argument('--domain-id', type=int, default=None, help='ROS_DOMAIN_ID for the nodes')
    parser.add_argument('--log-dir', default='runs/launch', help='folder for the node logs')
    parser.add_argument('--wall-time', action='store_true', help='use_sim_time:=false')
    args = parser.parse_args(argv)
    specs = launch_spec.nodes_by_name(args.nodes.split(',') if args.nodes else None)
    if args.no_sim:
        specs = [s for s in specs if s.robot]
    stack = StackLauncher(specs, Path(args.log_dir), use_sim_time=not args.wall_time,
                          domain_id=args.domain_id, echo=True)
    stop_requested = []

    def request_stop(signum, _frame):
        stop_requested.append(signum)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stack.start()
    print(f'[launch] {len(specs)} node(s) up; ROS_DOMAIN_ID={stack.env.get("ROS_DOMAIN_ID", "0")}'
          f', discovery range {stack.env["ROS_AUTOMATIC_DISCOVERY_RANGE"]}; Ctrl-C stops',
          flush=True)
    code = 0
    try:
        while not stop_requested:
            dead = stack.dead()
            if dead:
                for proc in dead:
                    print(f'[launch] {proc.spec.name} exited with code {proc.popen.returncode}:'
                          f'\n{proc.log_tail()}', file=sys.stderr, flush=True)
                code = 1
                break
            time.sleep(0.2)
    finally:
        codes = stack.stop()
        print(f'[launch] stopped: {codes}', flush=True)
    return code
