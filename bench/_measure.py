"""What the benchmarks share: the venv, CPU accounting, percentiles, and the
ERP under test (a PostgreSQL database initialised with trytond-admin and
scripts/load_demo.py, served by gunicorn or granian on a free port of
127.0.0.1).

Standard library only at import time, so that a benchmark started with
another interpreter can import this module and then re-run itself with the
project's venv (`ensure_venv`).
"""
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / '.venv' / 'bin' / 'python'
LOAD_DEMO = ROOT / 'scripts' / 'load_demo.py'

# Durable commits as in production: an acknowledged write must survive a
# crash.  pgcluster's defaults trade durability for speed; not here.
DURABLE_PG_SETTINGS = {
    'fsync': 'on',
    'synchronous_commit': 'on',
    'full_page_writes': 'on',
    'shared_buffers': '256MB',
    'max_connections': '300',
    }
TIMEOUT_CONNECT = 10
TIMEOUT_SERVER_READY = 90
TIMEOUT_STOP = 15


class BenchError(RuntimeError):
    "The benchmark could not run (not a finding about what it measures)."


def terminate(signum, frame):
    "SIGTERM handler: unwind like Ctrl-C, so that cleanups run."
    raise KeyboardInterrupt(f"signal {signum}")


def ensure_venv(*modules):
    """Import `modules`; when one is missing and this is not the project's
    venv, run the script again with `.venv/bin/python`."""
    try:
        for name in modules:
            __import__(name)
    except ImportError:
        if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (
                ROOT / '.venv').resolve():
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
        raise


def bin_dir():
    "The venv's bin (trytond-admin, gunicorn, py-spy)."
    return Path(sys.executable).parent


# --- statistics --------------------------------------------------------------

def percentile(values, p, scale=1.0, digits=1):
    """Nearest-rank percentile of values × scale, rounded; None without
    values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return round(ordered[int(rank) - 1] * scale, digits)


# --- CPU accounting ----------------------------------------------------------

CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


def proc_cpu(pid):
    "CPU seconds (user + system) used by a process, 0 when it is gone."
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def children(ppid):
    "Pids of the direct children of ppid."
    result = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
            if int(fields[1]) == ppid:
                result.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return result


def system_cpu():
    "(busy, total) jiffies of all CPUs."
    with open('/proc/stat') as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def children_cpu():
    "CPU seconds of this process's reaped children."
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CPUMeter:
    """CPU used between start() and stop(), in % of one core: this process
    (`own`), each named group of processes (a root pid and its direct
    children: gunicorn's master and workers, the postmaster and its
    backends) and everything else on the machine (`others_pct`)."""

    def __init__(self, groups, own='loadgen'):
        self.groups = {name: pid for name, pid in groups.items()}
        self.own = own

    def _sample(self):
        sample = {
            'time': time.monotonic(),
            'own': time.process_time(),
            'system': system_cpu(),
            }
        for name, pid in self.groups.items():
            pids = [pid, *children(pid)] if pid else []
            sample[name] = {p: proc_cpu(p) for p in pids}
        return sample

    def start(self):
        self.begin = self._sample()

    def stop(self):
        end = self._sample()
        begin = self.begin
        wall = max(end['time'] - begin['time'], 1e-9)

        def group(name):
            return sum(cpu - begin[name].get(pid, 0.0)
                for pid, cpu in end[name].items())
        busy = end['system'][0] - begin['system'][0]
        total = max(end['system'][1] - begin['system'][1], 1)
        cores = os.cpu_count() or 1
        seconds = {self.own: end['own'] - begin['own']}
        for name in self.groups:
            seconds[name] = group(name)
        machine = cores * busy / total * wall
        result = {f'{name}_pct': round(100 * value / wall, 1)
            for name, value in seconds.items()}
        result.update({
            # CPU of everything else on the machine during the run
            'others_pct': round(
                100 * max(0, machine - sum(seconds.values())) / wall, 1),
            'machine_busy_pct': round(100 * machine / wall, 1),
            'cores': cores,
            'seconds': seconds,
            })
        return result

    @contextlib.contextmanager
    def measure(self):
        "with meter.measure() as cpu: ...  — cpu holds stop()'s result."
        result = {}
        self.start()
        try:
            yield result
        finally:
            result.update(self.stop())


# --- a run's JSON line -------------------------------------------------------

def cores():
    "The machine's CPUs."
    return os.cpu_count() or 1


def load_average():
    "The 1-minute load average, as each result line carries it."
    return round(os.getloadavg()[0], 2)


def ms_per(cpu, name, count, digits=3):
    """CPU ms of the group `name` (a CPUMeter result's seconds) per one of
    `count` operations."""
    return round(1000 * cpu['seconds'][name] / (count or 1), digits)


def machine(cpu, load_before):
    """What a result line carries beside its figures so that they can be
    judged: the other processes' CPU during the run and the load average
    before and after it (the machine is shared)."""
    return {'others_pct': cpu['others_pct'], 'load_before': load_before,
        'load_after': load_average()}


def emit(line, lines=None):
    "Print a result as one JSON line (and keep it in `lines`)."
    if lines is not None:
        lines.append(line)
    print(json.dumps(line, ensure_ascii=False), flush=True)


# --- the ERP under test ------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def conninfo(uri, dbname):
    return uri.rstrip('/') + '/' + dbname


def pg_connect(uri, dbname, **kwargs):
    import psycopg
    return psycopg.connect(conninfo(uri, dbname),
        connect_timeout=TIMEOUT_CONNECT, **kwargs)


def postmaster_pid(uri, dbname):
    "The PostgreSQL server's pid (for CPU accounting), or None."
    import psycopg
    try:
        with pg_connect(uri, dbname) as conn:
            datadir = conn.execute('SHOW data_directory').fetchone()[0]
        with open(os.path.join(datadir, 'postmaster.pid')) as f:
            return int(f.readline())
    except (OSError, ValueError, psycopg.Error):
        return None


def write_config(tmpdir, uri, pii_key, clean_timeout=0):
    """A temporary trytond configuration with a bench-only personal-data key.
    clean_timeout 0: the processes clear each other's caches at once
    (PostgreSQL LISTEN/NOTIFY on channel ir_cache); only a test of the
    stale case passes another value."""
    path = Path(tmpdir) / 'trytond.conf'
    path.write_text(f"""[database]
uri = {uri}
list = False
# Two requests racing on a row: let trytond retry instead of failing.
retry = 5

[cache]
# 0 on PostgreSQL: a change committed by one process (a price edited in
# sao, the expiry cron) clears the caches of every other one at once.
clean_timeout = {clean_timeout}

[scenic]
pii_key = {pii_key}
# the bench pays with the simulated provider: a demo-like configuration
demo = True

[scenic_payment]
default = simulated

[scenic_booking]
# the bench's clients share an address and hold many places at once
max_holds_client = 1000000
max_unpaid_percent = 100
max_holds_phone = 1000000
""")
    return path


def run_step(cmd, env, what, timeout, log):
    "Run a set-up command; BenchError with its output when it fails."
    log(f"{what}...")
    start = time.monotonic()
    try:
        result = subprocess.run([str(c) for c in cmd], env=env, cwd=ROOT,
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} did not finish within {timeout} s")
    if result.returncode:
        raise BenchError(f"{what} failed (exit {result.returncode}):\n"
            + (result.stdout + result.stderr)[-4000:])
    log(f"{what}: {time.monotonic() - start:.0f} s")
    return result


def setup_env(tmpdir):
    """Environment of the set-up commands: the admin password, and commits
    that need not wait for the disk (the server's sessions keep
    synchronous_commit on)."""
    passfile = Path(tmpdir) / 'admin-password'
    passfile.write_text('admin\n')
    env = dict(os.environ, TRYTONPASSFILE=str(passfile),
        PGOPTIONS='-c synchronous_commit=off')
    env.pop('TRYTOND_CONFIG', None)
    return env


def initialise(uri, conf, tmpdir, database, log, languages=('zh_CN',),
        timeout_admin=300, timeout_demo=300):
    """Create and fill `database` (trytond-admin --all, load_demo.py: the
    scenic modules and the demo, gates included) unless it already holds
    the demo; True when it was made now."""
    with pg_connect(uri, 'postgres', autocommit=True) as conn:
        exists = conn.execute('SELECT 1 FROM pg_database WHERE datname=%s',
            (database,)).fetchone()
        if not exists:
            conn.execute(f"CREATE DATABASE {database} TEMPLATE template0 "
                "ENCODING 'UTF8'")
    with pg_connect(uri, database) as conn:
        ready = conn.execute(
            "SELECT to_regclass('scenic_time_slot') IS NOT NULL").fetchone()[0]
        if ready:
            ready = conn.execute("SELECT count(*) FROM company_company"
                ).fetchone()[0] > 0
    if ready:
        log(f"database {database!r} already initialised: reusing it")
        return False
    env = setup_env(tmpdir)
    admin = bin_dir() / 'trytond-admin'
    languages = ['-l', *languages] if languages else []
    run_step([admin, '-c', conf, '-d', database, '--all', *languages,
            '--email', 'admin@example.com'],
        env, "trytond-admin --all", timeout_admin, log)
    run_step([sys.executable, LOAD_DEMO, '-c', conf, '-d', database],
        env, "load_demo.py", timeout_demo, log)
    return True


# The HTTP servers a benchmark can serve the application with (--http),
# and the one the booking engine is served with (scripts/demo.py, the
# benches' default), chosen by bench/reservation_rush.py's figures
# (bench/README.md, "The booking engine").
HTTP_SERVERS = ('gunicorn', 'granian')
ENGINE_HTTP = 'granian'


def server_argv(http, app, listen, workers, threads, pythonpath=None):
    """The command serving the WSGI application `app` (gunicorn's notation,
    'module:name' or 'module:factory()') on `listen` (host:port) with
    `workers` processes of `threads` request threads each:

    - gunicorn: gthread workers, the application loaded once in the master
      before the fork (--preload);
    - granian: its Rust HTTP/1 server, `threads` blocking threads per
      worker running the WSGI callable (a factory is called in each
      worker: granian loads the application after the fork).

    SIGTERM stops either gracefully."""
    host, _, port = listen.rpartition(':')
    host = host.strip('[]')  # granian takes an IPv6 address bare
    if http == 'gunicorn':
        return [str(bin_dir() / 'gunicorn'), '-k', 'gthread',
            '-w', str(workers), '--threads', str(threads),
            '-b', listen, '--preload',
            '--backlog', '2048', '--keep-alive', '10', '--timeout', '60',
            '--graceful-timeout', '5', '--log-level', 'warning',
            # The default control socket path is shared by every gunicorn
            # of the user: do not touch other servers'.
            '--no-control-socket',
            *(['--pythonpath', str(pythonpath)] if pythonpath else []),
            app]
    if http == 'granian':
        factory = app.endswith('()')
        return [str(bin_dir() / 'granian'), '--interface', 'wsgi',
            '--host', host, '--port', port,
            '--workers', str(workers), '--blocking-threads', str(threads),
            '--runtime-threads', '1', '--http', '1', '--no-ws',
            '--backlog', '2048', '--workers-kill-timeout', '5',
            '--log-level', 'warning',
            *(['--working-dir', str(pythonpath)] if pythonpath else []),
            *(['--factory'] if factory else []),
            app[:-2] if factory else app]
    raise ValueError(f"unknown HTTP server {http!r}")


class Server:
    """The application served by gunicorn (or granian, `http`) on a free
    port of 127.0.0.1; stopped with its group."""

    def __init__(self, conf, tmpdir, database, workers, threads, log,
            ready_path=None, app='trytond.application:app', pythonpath=None,
            http='gunicorn'):
        self.conf = conf
        self.app = app
        self.http = http
        self.pythonpath = pythonpath
        self.database = database
        self.workers = workers
        self.threads = threads
        self.log = log
        self.ready_path = ready_path or f'/{database}/scenic/v1/openapi.json'
        self.port = free_port()
        self.logfile = Path(tmpdir) / f'{http}.log'
        self.process = None
        self._log = None

    @property
    def settings(self):
        if self.http == 'granian':
            return {'app': self.app, 'http': 'granian',
                'workers': self.workers, 'blocking_threads': self.threads}
        return {'app': self.app, 'http': 'gunicorn',
            'worker_class': 'gthread', 'workers': self.workers,
            'threads': self.threads, 'preload': True}

    def start(self):
        env = dict(os.environ, TRYTOND_CONFIG=str(self.conf),
            # Initialise the pool at start (gunicorn: in the master, before
            # forking workers).
            TRYTOND_DATABASE_NAMES=self.database,
            # Warnings and errors only: request logs cost CPU.
            TRYTOND_LOGGING_LEVEL='30')
        env.pop('TRYTOND_LOGGING_CONFIG', None)
        env.pop('PGOPTIONS', None)
        cmd = server_argv(self.http, self.app, f'127.0.0.1:{self.port}',
            self.workers, self.threads, self.pythonpath)
        self.log(f"starting {self.http}: {self.workers} workers x "
            f"{self.threads} threads on 127.0.0.1:{self.port}")
        self._log = open(self.logfile, 'w')
        self.process = subprocess.Popen(cmd, env=env, cwd=ROOT,
            stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready()

    def log_tail(self, size=3000):
        try:
            return self.logfile.read_text(errors='replace')[-size:]
        except OSError:
            return ''

    def wait_ready(self):
        import http.client
        deadline = time.monotonic() + TIMEOUT_SERVER_READY
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.http} exited:\n"
                    + self.log_tail())
            try:
                conn = http.client.HTTPConnection('127.0.0.1', self.port,
                    timeout=5)
                conn.request('GET', self.ready_path)
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise BenchError(f"{self.http} did not answer within "
            f"{TIMEOUT_SERVER_READY} s:\n" + self.log_tail())

    def stop(self):
        if self.process and self.process.poll() is None:
            for sig, wait in [(signal.SIGTERM, TIMEOUT_STOP),
                    (signal.SIGKILL, 5)]:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, sig)
                try:
                    self.process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log:
            self._log.close()
            self._log = None
