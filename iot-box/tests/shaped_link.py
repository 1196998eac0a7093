"""A slow, lossy link between a box and its ERP, for the site-sync test and
bench/site_sync.py.

Bandwidth: a network namespace with a veth pair to this one, and a ``tbf``
qdisc on both ends (this kernel has tbf and htb, not netem).  Delay, loss
and drops: a small TCP proxy that runs inside the namespace, between the
box (this namespace) and the ERP (this namespace, on the veth address):

    box ──► ns:proxy_port ──(veth, tbf both ways)──► host:erp_port

The proxy holds every chunk ``delay`` seconds in each direction, stalls a
chunk one retransmission timeout with probability ``loss`` (what a lost
segment costs TCP), and while the link is down (``down()`` / ``up()``,
SIGUSR1 / SIGUSR2) resets every connection and refuses new ones.  Its byte
counts come back from ``stop()``.

Needs root, ``ip`` and ``tc``; ``unavailable()`` says why not, for a skip.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

PROXY = r'''
import json, random, signal, socket, sys, threading, time
listen_host, listen_port, target_host, target_port = sys.argv[1:5]
delay, loss, rto = float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
down = threading.Event()
stats = {'up_bytes': 0, 'down_bytes': 0, 'connections': 0, 'resets': 0,
    'stalls': 0}
lock = threading.Lock()
conns = set()

def reset_all():
    with lock:
        for c in list(conns):
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    b'\1\0\0\0\0\0\0\0')
                c.shutdown(socket.SHUT_RDWR)    # wakes the pumps
            except OSError:
                pass
            stats['resets'] += 1
        conns.clear()

signal.signal(signal.SIGUSR1, lambda *a: (down.set(), reset_all()))
signal.signal(signal.SIGUSR2, lambda *a: down.clear())
def finish(*a):
    sys.stdout.write(json.dumps(stats) + '\n'); sys.stdout.flush()
    sys.exit(0)
signal.signal(signal.SIGTERM, finish)

def pump(src, dst, key):
    # a chunk leaves `delay` s after it arrived; order is kept
    queue, cond, done = [], threading.Condition(), []
    def writer():
        while True:
            with cond:
                while not queue and not done:
                    cond.wait()
                if not queue:
                    break
                due, data = queue.pop(0)
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                dst.sendall(data)
            except OSError:
                break
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    t = threading.Thread(target=writer, daemon=True); t.start()
    last = 0.0
    while True:
        try:
            data = src.recv(16384)
        except OSError:
            data = b''
        if not data:
            break
        with lock:
            stats[key] += len(data)
        due = time.monotonic() + delay
        if random.random() < loss:
            due += rto
            with lock:
                stats['stalls'] += 1
        last = max(last, due)
        with cond:
            queue.append((last, data)); cond.notify()
    with cond:
        done.append(1); cond.notify()
    t.join()

def handle(client):
    try:
        server = socket.create_connection((target_host, int(target_port)),
            timeout=10)
    except OSError:
        client.close(); return
    server.settimeout(None)
    with lock:
        conns.update([client, server]); stats['connections'] += 1
    a = threading.Thread(target=pump, args=(client, server, 'up_bytes'),
        daemon=True)
    a.start()
    pump(server, client, 'down_bytes')
    a.join()
    for c in (client, server):
        try:
            c.close()
        except OSError:
            pass
    with lock:
        conns.difference_update([client, server])

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((listen_host, int(listen_port)))
listener.listen(64)
print('ready', flush=True)
while True:
    try:
        client, _ = listener.accept()
    except InterruptedError:
        continue
    if down.is_set():
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
            b'\1\0\0\0\0\0\0\0')
        client.close()
        continue
    threading.Thread(target=handle, args=(client,), daemon=True).start()
'''


def _run(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def unavailable():
    "None when a namespace link can be built here, else why not."
    if os.geteuid() != 0:
        return 'network namespaces need root'
    for tool in ('ip', 'tc'):
        if shutil.which(tool) is None:
            return f'{tool!r} is not installed'
    name = f'scnprobe{os.getpid() % 100000}'
    probe = _run('ip', 'netns', 'add', name, check=False)
    if probe.returncode:
        return f'ip netns add failed: {probe.stderr.strip()}'
    try:
        tbf = _run('ip', 'netns', 'exec', name, 'tc', 'qdisc', 'add', 'dev',
            'lo', 'root', 'tbf', 'rate', '256kbit', 'burst', '16kb',
            'latency', '400ms', check=False)
        if tbf.returncode:
            return f'tc tbf is not available: {tbf.stderr.strip()}'
    finally:
        _run('ip', 'netns', 'del', name, check=False)
    return None


class ShapedLink:
    """``with ShapedLink(erp_port, ...) as link:`` then talk to
    ``link.host:link.port``; the ERP must listen on ``link.erp_host``."""

    def __init__(self, rate='256kbit', delay=0.3, loss=0.05, rto=0.4,
            burst='32kb'):
        n = os.getpid() % 100000
        self.ns = f'scnlink{n}'
        self.veth_host, self.veth_ns = f'scv{n}a', f'scv{n}b'
        third = n % 250 + 1
        self.erp_host = f'10.213.{third}.1'
        self.host = f'10.213.{third}.2'
        self.port = 8700
        self.rate, self.burst = rate, burst
        self.delay, self.loss, self.rto = delay, loss, rto
        self.proxy = None
        self.stats = None

    def build(self):
        "The namespace, the veth pair and the tbf qdiscs (before the ERP)."
        self.teardown()
        ns = ('ip', 'netns', 'exec', self.ns)
        _run('ip', 'netns', 'add', self.ns)
        _run('ip', 'link', 'add', self.veth_host, 'type', 'veth', 'peer',
            'name', self.veth_ns)
        _run('ip', 'link', 'set', self.veth_ns, 'netns', self.ns)
        _run('ip', 'addr', 'add', f'{self.erp_host}/30', 'dev',
            self.veth_host)
        _run('ip', 'link', 'set', self.veth_host, 'up')
        _run(*ns, 'ip', 'addr', 'add', f'{self.host}/30', 'dev',
            self.veth_ns)
        _run(*ns, 'ip', 'link', 'set', self.veth_ns, 'up')
        _run(*ns, 'ip', 'link', 'set', 'lo', 'up')
        # the same rate both ways: each end shapes what it sends
        for prefix, dev in [((), self.veth_host), (ns, self.veth_ns)]:
            _run(*prefix, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf',
                'rate', self.rate, 'burst', self.burst, 'latency', '2s')
        return self

    def start_proxy(self, erp_port):
        script = Path(f'/tmp/scenic-link-proxy-{os.getpid()}.py')
        script.write_text(PROXY)
        self.proxy = subprocess.Popen(['ip', 'netns', 'exec', self.ns,
                sys.executable, str(script), self.host, str(self.port),
                self.erp_host, str(erp_port), str(self.delay),
                str(self.loss), str(self.rto)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proxy.stdout.readline().strip()
        if line != 'ready':
            raise RuntimeError('link proxy did not start: '
                + self.proxy.stderr.read())
        return self

    def down(self):
        "The link drops: every connection is reset, new ones refused."
        self.proxy.send_signal(signal.SIGUSR1)

    def up(self):
        self.proxy.send_signal(signal.SIGUSR2)

    def tc_stats(self):
        "Bytes and drops tbf saw on the host end (what the ERP sent)."
        out = _run('tc', '-s', '-j', 'qdisc', 'show', 'dev', self.veth_host,
            check=False).stdout
        try:
            data = json.loads(out)[0]
            return {'bytes': data.get('bytes'), 'packets': data.get(
                'packets'), 'drops': data.get('drops')}
        except (ValueError, IndexError, KeyError):
            return {}

    def stop(self):
        "Stop the proxy; its counts (bytes each way, resets, stalls)."
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.terminate()
            try:
                out, _ = self.proxy.communicate(timeout=10)
                self.stats = json.loads(out.strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                self.proxy.kill()
                self.proxy.wait()
        self.proxy = None
        return self.stats

    def teardown(self):
        self.stop()
        _run('ip', 'link', 'del', self.veth_host, check=False)
        _run('ip', 'netns', 'del', self.ns, check=False)
        Path(f'/tmp/scenic-link-proxy-{os.getpid()}.py').unlink(
            missing_ok=True)

    def __enter__(self):
        return self.build()

    def __exit__(self, *exc):
        self.teardown()
