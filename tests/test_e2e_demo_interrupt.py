"""Ctrl-C on the demo: the cycle is cancelled, every process of the stack stops, exit code 130.

The demo is started as a user starts it (`humanoid-inspection demo`, its own process group
like a terminal's foreground job) and gets SIGINT once the cycle runs. The cancel must reach
cell_manager over DDS and its cancelled result come back before the processes are stopped.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from humanoid_inspection.launcher import ros_environment

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _processes_on_domain(domain_id: int):
    """PIDs of live (non-zombie) processes whose environment has this ROS_DOMAIN_ID."""
    needle = f'ROS_DOMAIN_ID={domain_id}'.encode()
    found = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / 'stat').read_text().split(') ')[-1].startswith('Z'):
                continue
            environ = (entry / 'environ').read_bytes().split(b'\0')
        except OSError:
            continue
        if needle in environ:
            found.append(int(entry.name))
    return found


def test_ctrl_c_cancels_the_cycle_and_stops_every_process(ros_domain_id, tmp_path):
    env = ros_environment(ros_domain_id)
    out = tmp_path / 'demo'
    # A terminal's foreground job starts with Ctrl-C at its default. When the tests themselves
    # run as a background job of a non-interactive shell (`bash scripts/test.sh &`), SIGINT
    # is ignored and a child would inherit that (Python then installs no KeyboardInterrupt
    # handler): give the demo the default disposition, as a terminal would.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        demo = subprocess.Popen(
            [sys.executable, '-m', 'humanoid_inspection.cli', 'demo', '--parts', '2',
             '--out', str(out), '--domain-id', str(ros_domain_id)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    lines, errors = [], []
    readers = [threading.Thread(target=lambda s=s, sink=sink: sink.extend(s), daemon=True)
               for s, sink in ((demo.stdout, lines), (demo.stderr, errors))]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 240.0
        while not any('running the cycle' in line for line in lines):
            assert demo.poll() is None, f'demo ended before the cycle: {"".join(errors)[-3000:]}'
            assert time.monotonic() < deadline, 'the demo never started its cycle'
            time.sleep(0.2)
        time.sleep(3.0)  # inside the first part's pick
        os.killpg(demo.pid, signal.SIGINT)
        code = demo.wait(timeout=120.0)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    for reader in readers:
        reader.join(timeout=5.0)
    stdout, stderr = ''.join(lines), ''.join(errors)
    assert code == 130, f'exit code {code}\n{stdout[-2000:]}\n{stderr[-3000:]}'
    assert 'interrupted: cancelling the cycle' in stdout
    # the cancel reached cell_manager over DDS and its cancelled result came back
    assert 'cycle cancelled:' in stdout, stdout[-2000:]
    assert 'DEMO INTERRUPTED' in stderr and str(out / 'cell.db') in stderr
    assert 'all processes stopped' in stdout
    left = _processes_on_domain(ros_domain_id)
    assert not left, f'processes of the stack outlived the demo: {left}'
    assert (out / 'cell.db').exists()
