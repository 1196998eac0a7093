"""scripts/demo.py's supervisor (issue 15): SIGHUP, SIGINT and SIGTERM
stop every process it started, whole groups included, and a second signal
during the clean-up does not cut it short."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A child that takes its time to stop (like trytond finishing requests)
# and has a worker in its group (like trytond-cron's).
CHILD = textwrap.dedent('''
    import os, signal, subprocess, sys, time
    out = sys.argv[1]
    worker = subprocess.Popen([sys.executable, '-c',
        'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);'
        'time.sleep(600)'])
    def slow_stop(*_):
        time.sleep(1.5)
        sys.exit(0)
    signal.signal(signal.SIGTERM, slow_stop)
    with open(out, 'a') as f:
        f.write(f'{os.getpid()} {worker.pid}\\n')
    time.sleep(600)
''')

SUPERVISOR = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[1])
    import demo
    child = [sys.executable, '-c', sys.argv[2], sys.argv[3]]
    sys.exit(demo.supervise([(child, None)] * 3, grace=5))
''')


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie not yet reaped by init counts as gone
    try:
        return Path(f'/proc/{pid}/stat').read_text().split()[2] != 'Z'
    except OSError:
        return False


def wait_for(condition, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize('signals', [
    [signal.SIGHUP], [signal.SIGINT], [signal.SIGTERM],
    [signal.SIGTERM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP]])
def test_supervisor_stops_everything(tmp_path, signals):
    pids = tmp_path / 'pids'
    pids.touch()
    demo = subprocess.Popen([sys.executable, '-c', SUPERVISOR,
            str(ROOT / 'scripts'), CHILD, str(pids)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        assert wait_for(lambda: len(pids.read_text().split()) == 6), \
            'the children did not start'
        started = [int(p) for p in pids.read_text().split()]
        demo.send_signal(signals[0])
        for signum in signals[1:]:
            time.sleep(0.3)             # during the 1.5 s clean-up
            demo.send_signal(signum)
        output = demo.communicate(timeout=30)[0].decode()
        assert demo.returncode == 0, output
        assert 'stopping' in output
        assert wait_for(lambda: not any(alive(p) for p in started), 10), \
            [p for p in started if alive(p)]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        for pid in pids.read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
