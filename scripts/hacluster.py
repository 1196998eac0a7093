#!/usr/bin/env python3
"""A local PostgreSQL high-availability cluster: etcd + Patroni nodes.

One etcd member and N Patroni nodes (default 3: a leader, a synchronous
standby and one more replica; `synchronous_mode` strict) on 127.0.0.1,
each node in its own directory under the cluster's directory.  Patroni
manages PostgreSQL: it bootstraps the first node, clones the others with
pg_basebackup, promotes the synchronous standby when the leader's key in
etcd expires (ttl 20 s), and rewinds an old primary (pg_rewind) so that it
rejoins as a standby.  Configuration: config/ha/patroni.yml.in.

Command line (the README's runbook, section "High availability")::

    python scripts/hacluster.py up [--dir var/ha] [--nodes 3] [--port 21200]
    python scripts/hacluster.py status            # members, roles, lag
    python scripts/hacluster.py uri               # libpq multi-host URI
    python scripts/hacluster.py ctl list          # patronictl, configured
    python scripts/hacluster.py ctl switchover --leader node1 --candidate node2 --force
    python scripts/hacluster.py crash node1       # kill -9 Patroni + PostgreSQL
    python scripts/hacluster.py stop node1        # orderly stop of one node
    python scripts/hacluster.py start node1       # (re)start; rewinds/clones
    python scripts/hacluster.py replace node3     # wipe node3, clone it anew
    python scripts/hacluster.py backup            # pg_basebackup of the leader
    python scripts/hacluster.py switch-wal        # archive the current WAL now
    python scripts/hacluster.py restore BACKUP DIR --time '...+00'  # PITR copy
    python scripts/hacluster.py down [--purge]    # stop everything

Library use (tests, benchmarks)::

    with HACluster(nodes=3) as cluster:     # temporary dir, free ports
        cluster.uri()                        # multi-host, read-write
        cluster.leader(); cluster.crash_node('node1')

Tools: etcd comes from Debian's `etcd-server` (installed with apt-get when
missing and root), Patroni from PyPI into its own venv var/ha-venv, built
from /usr/bin/python3: Patroni runs as the `postgres` user, which must be
able to run that Python (root's pyenv is not readable to it).
"""
import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import pgcluster  # noqa: E402

TEMPLATE = ROOT / 'config' / 'ha' / 'patroni.yml.in'
HA_VENV = ROOT / 'var' / 'ha-venv'
PATRONI_REQUIREMENT = 'patroni[etcd3,psycopg3]==4.1.5'
ETCD_DEBS = ('etcd-server', 'etcd-client')
SCOPE = 'scenic'
SERVER_USER = pgcluster.SERVER_USER
# Settings of throwaway test clusters: a kill -9 loses no page cache, so
# fsync buys nothing there.  `up` without --fast keeps PostgreSQL's defaults.
# (full_page_writes stays on: pg_rewind refuses to run without it.)
FAST_PARAMETERS = {'fsync': 'off'}


class HAError(RuntimeError):
    pass


def log(message):
    print(f"hacluster: {message}", file=sys.stderr, flush=True)


# --- tools ---------------------------------------------------------------------

def _apt_install(packages):
    if os.geteuid() != 0 or not shutil.which('apt-get'):
        raise HAError(f"Debian packages {' '.join(packages)} are needed "
            "(run as root, or apt-get install them)")
    log(f"installing Debian packages: {' '.join(packages)}")
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    subprocess.run(['apt-get', 'update', '-qq'], check=True, env=env)
    subprocess.run(['apt-get', 'install', '-y', '-qq',
            '--no-install-recommends', *packages], check=True, env=env,
        stdout=subprocess.DEVNULL)


def ensure_tools():
    """etcd (Debian) and Patroni (PyPI, in var/ha-venv); returns
    (etcd, patroni, patronictl) paths."""
    if not (shutil.which('etcd') and shutil.which('etcdctl')):
        _apt_install(ETCD_DEBS)
    etcd = shutil.which('etcd')
    patroni = HA_VENV / 'bin' / 'patroni'
    if not patroni.exists():
        python = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') \
            else sys.executable
        log(f"creating {HA_VENV} with {python} and installing "
            f"{PATRONI_REQUIREMENT}")
        if os.path.exists(python) and subprocess.run(
                [python, '-c', 'import ensurepip'],
                capture_output=True).returncode:
            _apt_install(['python3-venv'])
        subprocess.run([python, '-m', 'venv', str(HA_VENV)], check=True)
        subprocess.run([str(HA_VENV / 'bin' / 'pip'), 'install', '--quiet',
                PATRONI_REQUIREMENT], check=True)
    return etcd, str(patroni), str(HA_VENV / 'bin' / 'patronictl')


# --- HTTP helpers ---------------------------------------------------------------

def http_json(url, method='GET', body=None, timeout=3):
    """(status, decoded JSON or text) of a Patroni REST call; (None, error)
    when nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
        headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (OSError, ValueError) as e:
        return None, str(e)
    try:
        return status, json.loads(raw or b'null')
    except ValueError:
        return status, raw.decode(errors='replace')


def _alive(pid):
    if not pid:
        return False
    try:
        with open(f'/proc/{pid}/stat') as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
        return state != 'Z'
    except OSError:
        return False


def _descendants(pid):
    result = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child in pgcluster_children(parent):
            result.append(child)
            todo.append(child)
    return result


def pgcluster_children(ppid):
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    if int(f.read().rsplit(')', 1)[1].split()[1]) == ppid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


# --- the cluster ----------------------------------------------------------------

class Node:
    def __init__(self, cluster, name, pg_port, rest_port):
        self.cluster = cluster
        self.name = name
        self.pg_port = pg_port
        self.rest_port = rest_port

    @property
    def dir(self):
        return self.cluster.dir / self.name

    @property
    def data_dir(self):
        return self.dir / 'data'

    @property
    def config(self):
        return self.dir / 'patroni.yml'

    @property
    def logfile(self):
        return self.dir / 'patroni.log'

    @property
    def pidfile(self):
        return self.dir / 'patroni.pid'

    @property
    def rest(self):
        return f'http://{self.cluster.host}:{self.rest_port}'

    @property
    def uri(self):
        return f'postgresql://postgres@{self.cluster.host}:{self.pg_port}/'

    def patroni_pid(self):
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def postmaster_pid(self):
        try:
            with open(self.data_dir / 'postmaster.pid') as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def log_tail(self, size=4000):
        try:
            return self.logfile.read_text(errors='replace')[-size:]
        except OSError:
            return ''


class HACluster:
    """etcd + Patroni nodes.  `directory=None`: a temporary directory and
    free ports, removed by down()/__exit__ (tests); otherwise a kept
    directory whose state.json lets later commands find the cluster."""

    def __init__(self, directory=None, nodes=3, port=None, fast=True,
            parameters=None, host='127.0.0.1'):
        self.host = host
        self.temporary = directory is None
        self.dir = Path(directory).resolve() if directory else None
        self.node_count = nodes
        self.base_port = port
        self.fast = fast
        self.parameters = dict(parameters or {})
        self.nodes = {}
        self.etcd_port = self.etcd_peer_port = None
        self.etcd = self.patroni = self.patronictl = None
        self.bindir = None

    # -- state ---------------------------------------------------------------
    @property
    def state_file(self):
        return self.dir / 'state.json'

    @property
    def archive_dir(self):
        return self.dir / 'wal-archive'

    def save_state(self):
        self.state_file.write_text(json.dumps({
            'host': self.host, 'fast': self.fast,
            'etcd_port': self.etcd_port, 'etcd_peer_port': self.etcd_peer_port,
            'nodes': {n.name: [n.pg_port, n.rest_port]
                for n in self.nodes.values()},
            }, indent=1))

    @classmethod
    def load(cls, directory):
        directory = Path(directory).resolve()
        try:
            state = json.loads((directory / 'state.json').read_text())
        except OSError:
            raise HAError(f"no cluster in {directory} (run `hacluster.py "
                f"up --dir {directory}` first)")
        cluster = cls(directory, nodes=len(state['nodes']),
            fast=state['fast'], host=state['host'])
        cluster.etcd_port = state['etcd_port']
        cluster.etcd_peer_port = state['etcd_peer_port']
        for name, (pg_port, rest_port) in state['nodes'].items():
            cluster.nodes[name] = Node(cluster, name, pg_port, rest_port)
        cluster.etcd, cluster.patroni, cluster.patronictl = ensure_tools()
        cluster.bindir = pgcluster.find_bindir()
        return cluster

    def _ports(self):
        count = 2 + 2 * self.node_count
        if self.base_port:
            return list(range(self.base_port, self.base_port + count))
        ports = set()
        while len(ports) < count:
            ports.add(pgcluster.free_port(self.host))
        return sorted(ports)

    # -- life cycle ------------------------------------------------------------
    def up(self, timeout=120):
        self.etcd, self.patroni, self.patronictl = ensure_tools()
        self.bindir = pgcluster.find_bindir()
        user = None
        if os.geteuid() == 0:
            pgcluster._ensure_server_user()
            user = pwd.getpwnam(SERVER_USER)
        if self.temporary:
            base = os.environ.get('SCENIC_PG_TMPDIR')
            if base:
                os.makedirs(base, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix='scenic-ha-', dir=base))
        elif (self.dir / 'state.json').exists():
            raise HAError(f"{self.dir} already holds a cluster: "
                "`hacluster.py down --purge` it first, or use another --dir")
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            ports = self._ports()
            self.etcd_port, self.etcd_peer_port = ports[:2]
            for i in range(self.node_count):
                name = f'node{i + 1}'
                self.nodes[name] = Node(self, name, ports[2 + 2 * i],
                    ports[3 + 2 * i])
            self.archive_dir.mkdir(exist_ok=True)
            for node in self.nodes.values():
                node.dir.mkdir(exist_ok=True)
            if user:
                for path in [self.dir, self.archive_dir,
                        *(n.dir for n in self.nodes.values())]:
                    os.chown(path, user.pw_uid, user.pw_gid)
            self.save_state()
            self.start_etcd()
            for node in self.nodes.values():
                self.write_config(node)
            # The first node bootstraps; the others clone it.
            first, *others = self.nodes.values()
            self.start_node(first.name)
            self.wait_leader(timeout)
            for node in others:
                self.start_node(node.name)
            self.wait_healthy(timeout)
        except BaseException:
            self.down(purge=self.temporary)
            if not self.temporary:
                self.state_file.unlink(missing_ok=True)
            raise
        return self

    def start_etcd(self):
        data = self.dir / 'etcd'
        peer = f'http://{self.host}:{self.etcd_peer_port}'
        client = f'http://{self.host}:{self.etcd_port}'
        cmd = [self.etcd, '--name', 'etcd0', '--data-dir', str(data),
            '--listen-client-urls', client, '--advertise-client-urls', client,
            '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
            '--initial-cluster', f'etcd0={peer}',
            '--initial-cluster-state', 'new', '--log-level', 'warn']
        with open(self.dir / 'etcd.log', 'ab') as logf:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        (self.dir / 'etcd.pid').write_text(str(proc.pid))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, _ = http_json(f'{client}/health')
            if status == 200:
                return
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        raise HAError("etcd did not start:\n" + self._tail('etcd.log'))

    def _tail(self, name, size=3000):
        try:
            return (self.dir / name).read_text(errors='replace')[-size:]
        except OSError:
            return ''

    def write_config(self, node):
        parameters = {**(FAST_PARAMETERS if self.fast else {}),
            **self.parameters}
        extra = ''.join(f"        {k}: '{v}'\n" for k, v in parameters.items())
        text = TEMPLATE.read_text().format(
            scope=SCOPE, name=node.name, host=self.host,
            rest_port=node.rest_port, pg_port=node.pg_port,
            etcd_hosts=f'{self.host}:{self.etcd_port}',
            archive_dir=self.archive_dir, extra_parameters=extra.rstrip('\n'),
            data_dir=node.data_dir, bin_dir=self.bindir, node_dir=node.dir,
            superuser_password='scenic-local-only',
            replication_password='scenic-local-only',
            auth_method='trust')
        node.config.write_text(text)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(node.config, user.pw_uid, user.pw_gid)

    def start_node(self, name):
        node = self.nodes[name]
        if node.patroni_pid():
            raise HAError(f"{name} is already running")
        kwargs = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            kwargs = dict(user=user.pw_uid, group=user.pw_gid,
                extra_groups=[])
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
            'HOME': str(node.dir), 'LANG': 'C.UTF-8'}
        with open(node.logfile, 'ab') as logf:
            proc = subprocess.Popen([self.patroni, str(node.config)],
                cwd=node.dir, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        node.pidfile.write_text(str(proc.pid))
        return proc.pid

    def stop_node(self, name, timeout=60):
        "Orderly stop: Patroni stops PostgreSQL (fast) and gives up the lock."
        node = self.nodes[name]
        pid = node.patroni_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                self.crash_node(name)

    def crash_node(self, name):
        """A node crash: kill -9 its Patroni, its postmaster and every
        PostgreSQL process (killing only the postmaster makes Patroni
        restart it in place, without a failover)."""
        node = self.nodes[name]
        victims = []
        for pid in (node.patroni_pid(), node.postmaster_pid()):
            if pid:
                victims.append(pid)
                victims.extend(_descendants(pid))
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return victims

    def crash_postmaster(self, name):
        "kill -9 of the postmaster only: Patroni restarts it in place."
        pid = self.nodes[name].postmaster_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
        return pid

    def replace_node(self, name, timeout=180):
        """Replace a node: stop it, drop its data directory, start it: Patroni
        clones the leader anew (pg_basebackup) and it rejoins."""
        self.stop_node(name)
        node = self.nodes[name]
        shutil.rmtree(node.data_dir, ignore_errors=True)
        self.start_node(name)
        self.wait_healthy(timeout, nodes=[name, self.wait_leader(timeout)])

    def down(self, purge=None):
        purge = self.temporary if purge is None else purge
        if self.dir is None:
            return
        for node in self.nodes.values():
            self.crash_node(node.name)
            pm = node.postmaster_pid()
            if pm:
                os.kill(pm, signal.SIGKILL)
        try:
            pid = int((self.dir / 'etcd.pid').read_text())
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        # postgres children exit on their own once the postmaster is gone
        deadline = time.monotonic() + 10
        while any(n.postmaster_pid() for n in self.nodes.values()) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        if purge:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    # -- observing ----------------------------------------------------------------
    def members(self):
        "Patroni's view: [{name, role, state, lag, ...}] (from any node)."
        for node in self.nodes.values():
            status, data = http_json(f'{node.rest}/cluster', timeout=2)
            if status == 200 and isinstance(data, dict):
                return data.get('members', [])
        return []

    def leader(self):
        "Name of the node whose REST API says it is the writable primary."
        for node in self.nodes.values():
            status, _ = http_json(f'{node.rest}/primary', timeout=2)
            if status == 200:
                return node.name
        return None

    def wait_leader(self, timeout=60, exclude=()):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            name = self.leader()
            if name and name not in exclude:
                return name
            time.sleep(0.2)
        raise HAError(f"no leader within {timeout} s:\n" + self.logs())

    def wait_healthy(self, timeout=120, nodes=None):
        """Every (given) node running; a leader; replicas streaming; in
        synchronous mode one of them the sync standby."""
        names = set(nodes or self.nodes)
        deadline = time.monotonic() + timeout
        members = []
        while time.monotonic() < deadline:
            members = self.members()
            by_name = {m['name']: m for m in members}
            if names <= set(by_name):
                roles = [by_name[n]['role'] for n in names]
                ok = all(by_name[n]['state'] in ('running', 'streaming')
                    for n in names)
                replicas_ok = all(by_name[n]['state'] == 'streaming'
                    for n in names if by_name[n]['role'] != 'leader')
                all_roles = [m['role'] for m in members]
                if ok and replicas_ok and 'leader' in roles and (
                        'sync_standby' in all_roles or len(members) == 1
                        or not self.synchronous()):
                    return members
            time.sleep(0.3)
        raise HAError(f"cluster not healthy within {timeout} s: {members}\n"
            + self.logs())

    def synchronous(self):
        config = self.dynamic_config()
        return bool(config.get('synchronous_mode'))

    def dynamic_config(self):
        for node in self.nodes.values():
            status, data = http_json(f'{node.rest}/config', timeout=2)
            if status == 200 and isinstance(data, dict):
                return data
        return {}

    def patch_config(self, changes):
        "Change cluster-wide settings (as `patronictl edit-config`)."
        for node in self.nodes.values():
            status, data = http_json(f'{node.rest}/config', 'PATCH', changes)
            if status == 200:
                return data
        raise HAError(f"could not change the configuration: {data}")

    def switchover(self, candidate, timeout=60):
        leader = self.leader()
        node = self.nodes[leader]
        status, data = http_json(f'{node.rest}/switchover', 'POST',
            {'leader': leader, 'candidate': candidate}, timeout=timeout)
        if status != 200:
            raise HAError(f"switchover refused ({status}): {data}")
        return self.wait_leader(timeout, exclude=(leader,))

    def uri(self, readonly=False, nodes=None):
        """libpq multi-host URI of every node: the writable primary
        (`target_session_attrs=read-write`), or with readonly a standby when
        there is one (`prefer-standby`)."""
        nodes = [self.nodes[n] for n in (nodes or self.nodes)]
        hosts = ','.join(f'{self.host}:{n.pg_port}' for n in nodes)
        attrs = 'prefer-standby' if readonly else 'read-write'
        return (f'postgresql://postgres@{hosts}/'
            f'?target_session_attrs={attrs}&connect_timeout=3')

    # -- backups ------------------------------------------------------------------
    def _run_pg(self, program, *args, **kwargs):
        cmd = [os.path.join(self.bindir, program), *args]
        if os.geteuid() == 0:
            cmd = ['runuser', '-u', SERVER_USER, '--', *cmd]
        kwargs.setdefault('stdin', subprocess.DEVNULL)
        return subprocess.run(cmd, **kwargs)

    def backup(self, target=None):
        """Base backup of the leader with pg_basebackup (the WAL needed to
        make it consistent streamed into it); returns its directory.  With
        the WAL archive (archive_command, wal-archive/) it restores to any
        later point in time."""
        leader = self.nodes[self.wait_leader(60)]
        backups = self.dir / 'backups'
        backups.mkdir(exist_ok=True)
        target = Path(target) if target else backups / time.strftime(
            '%Y%m%dT%H%M%S')
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(backups, user.pw_uid, user.pw_gid)
        result = self._run_pg('pg_basebackup', '-h', self.host,
            '-p', str(leader.pg_port), '-U', 'replicator', '-D', str(target),
            '-X', 'stream', '-c', 'fast', '--label', 'scenic',
            capture_output=True, text=True)
        if result.returncode:
            raise HAError(f"pg_basebackup failed: {result.stderr}")
        return target

    def switch_wal(self, timeout=60):
        """Close the leader's current WAL segment and wait until it is in
        the archive (so that a restore can reach the present); returns the
        segment's name."""
        leader = self.nodes[self.wait_leader(60)]

        def sql(query):
            result = self._run_pg('psql', '-X', '-At', '-h', str(leader.dir),
                '-p', str(leader.pg_port), '-U', 'postgres', '-d', 'postgres',
                '-c', query, capture_output=True, text=True)
            if result.returncode:
                raise HAError(f"psql failed: {result.stderr}")
            return result.stdout.strip()
        wal = sql('SELECT pg_walfile_name(pg_switch_wal())')
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.archive_dir / wal).exists():
                return wal
            time.sleep(0.2)
        raise HAError(f"{wal} was not archived within {timeout} s")

    def restore(self, backup, target, target_time=None, port=None):
        """Restore `backup` into directory `target` and replay the WAL
        archive up to `target_time` (a timestamp with time zone; None: to
        the end of the archive), then promote.  Starts a stand-alone server
        on `port` (free port by default) and returns its libpq URI; stop it
        with stop_restored(target)."""
        target = Path(target)
        shutil.copytree(backup, target / 'data', symlinks=True)
        data = target / 'data'
        settings = [f"restore_command = 'cp {self.archive_dir}/%f %p'",
            "recovery_target_action = 'promote'"]
        if target_time:
            settings.append(f"recovery_target_time = '{target_time}'")
        with open(data / 'postgresql.auto.conf', 'a') as f:
            f.write('\n'.join(settings) + '\n')
        (data / 'recovery.signal').write_text('')
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            for path in [target, *target.rglob('*')]:
                os.chown(path, user.pw_uid, user.pw_gid)
        port = port or pgcluster.free_port(self.host)
        options = ' '.join([f'-c port={port}',
            f'-c listen_addresses={self.host}',
            f"-c unix_socket_directories='{target}'",
            f"-c hba_file='{data}/pg_hba.conf'",
            f"-c ident_file='{data}/pg_ident.conf'",
            # a restored copy is no member of the cluster
            "-c archive_mode=off", "-c synchronous_standby_names=''",
            "-c primary_conninfo=''"])
        result = self._run_pg('pg_ctl', 'start', '-D', str(data), '-w',
            '-t', '120', '-l', str(target / 'server.log'), '-o', options,
            capture_output=True, text=True)
        if result.returncode:
            log_text = (target / 'server.log').read_text(errors='replace') \
                if (target / 'server.log').exists() else ''
            raise HAError(f"restored server did not start: {result.stderr}"
                f"\n{log_text[-3000:]}")
        # Wait for the end of recovery: PostgreSQL stops with an error when
        # the archive does not reach the target time.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if not (data / 'postmaster.pid').exists():
                log_text = (target / 'server.log').read_text(
                    errors='replace')
                raise HAError("the restored server stopped (is the WAL up "
                    "to the target time archived yet? a segment goes to "
                    "the archive when full or after archive_timeout, 60 s):"
                    f"\n{log_text[-2000:]}")
            result = self._run_pg('psql', '-X', '-At', '-h', str(target),
                '-p', str(port), '-U', 'postgres', '-d', 'postgres', '-c',
                'SELECT pg_is_in_recovery()', capture_output=True, text=True)
            if result.stdout.strip() == 'f':
                break
            time.sleep(0.3)
        else:
            raise HAError("the restored server is still recovering")
        return f'postgresql://postgres@{self.host}:{port}/'

    def stop_restored(self, target):
        self._run_pg('pg_ctl', 'stop', '-D', str(Path(target) / 'data'),
            '-m', 'fast', '-w', '-t', '30', capture_output=True)

    def logs(self, size=1500):
        return '\n'.join(f"--- {n.name} ---\n{n.log_tail(size)}"
            for n in self.nodes.values())

    def status_lines(self):
        lines = [f"{'member':<8}{'role':<14}{'state':<11}{'lag (MB)':>9}"
            f"  {'PostgreSQL':<20}REST"]
        by_name = {m['name']: m for m in self.members()}
        for node in self.nodes.values():
            m = by_name.get(node.name, {})
            lag = m.get('lag', '')
            lag = f'{lag / 2**20:.1f}' if isinstance(lag, (int, float)) \
                else (lag or '')
            lines.append(f"{node.name:<8}{m.get('role', '-'):<14}"
                f"{m.get('state', 'down'):<11}{lag:>9}  "
                f"{self.host}:{node.pg_port:<10}{node.rest}")
        return lines


# --- command line ---------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dir', default=str(ROOT / 'var' / 'ha'),
        help="the cluster's directory (default var/ha)")
    # --dir also after the command
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--dir', default=argparse.SUPPRESS,
        help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest='command', required=True)
    add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: add_parser(*a, parents=[common], **k)
    up = sub.add_parser('up', help="start etcd and the Patroni nodes")
    up.add_argument('--nodes', type=int, default=3)
    up.add_argument('--port', type=int, default=21200,
        help="first of 2 + 2 x nodes consecutive ports (default 21200)")
    up.add_argument('--fast', action='store_true',
        help="fsync off (throwaway data only)")
    sub.add_parser('status', help="members, roles and lag")
    sub.add_parser('uri', help="print the multi-host URIs")
    ctl = sub.add_parser('ctl', help="patronictl with this cluster's config")
    ctl.add_argument('args', nargs=argparse.REMAINDER)
    for name, text in [('crash', "kill -9 a node's Patroni and PostgreSQL"),
            ('stop', "stop a node in order"), ('start', "start a node"),
            ('replace', "wipe a node's data and clone it anew")]:
        p = sub.add_parser(name, help=text)
        p.add_argument('node')
    sub.add_parser('backup', help="base backup of the leader "
        "(into DIR/backups/)")
    sub.add_parser('switch-wal', help="archive the leader's current WAL "
        "segment now (before restoring up to the present)")
    restore = sub.add_parser('restore', help="restore a base backup + the "
        "WAL archive to a point in time, as a stand-alone server")
    restore.add_argument('backup', help="a directory made by `backup`")
    restore.add_argument('target', help="new directory for the copy")
    restore.add_argument('--time', help="recovery_target_time, e.g. "
        "'2026-12-04 17:05:00+00' (default: the end of the archive)")
    restore.add_argument('--port', type=int, default=21250)
    down = sub.add_parser('down', help="stop everything")
    down.add_argument('--purge', action='store_true',
        help="also delete the directory")
    args = parser.parse_args(argv)
    try:
        if args.command == 'up':
            cluster = HACluster(args.dir, nodes=args.nodes, port=args.port,
                fast=args.fast)
            start = time.monotonic()
            cluster.up()
            print(f"cluster up in {time.monotonic() - start:.0f} s "
                f"({args.dir})")
            print('\n'.join(cluster.status_lines()))
            print(f"write URI: {cluster.uri()}")
            print(f"read URI:  {cluster.uri(readonly=True)}")
            return 0
        cluster = HACluster.load(args.dir)
        if args.command == 'status':
            leader = cluster.leader()
            print('\n'.join(cluster.status_lines()))
            print(f"leader: {leader or 'none (failover in progress?)'}")
            return 0 if leader else 1
        if args.command == 'uri':
            print(cluster.uri())
            print(cluster.uri(readonly=True))
        elif args.command == 'ctl':
            first = next(iter(cluster.nodes.values()))
            extra = args.args[1:] if args.args[:1] == ['--'] else args.args
            return subprocess.run([cluster.patronictl, '-c',
                str(first.config), *extra]).returncode
        elif args.command == 'crash':
            print(f"killed {cluster.crash_node(args.node)}")
        elif args.command == 'stop':
            cluster.stop_node(args.node)
        elif args.command == 'start':
            cluster.start_node(args.node)
            cluster.wait_healthy(120, nodes=[args.node, cluster.wait_leader()])
            print('\n'.join(cluster.status_lines()))
        elif args.command == 'replace':
            cluster.replace_node(args.node)
            print('\n'.join(cluster.status_lines()))
        elif args.command == 'backup':
            print(cluster.backup())
        elif args.command == 'switch-wal':
            print(f"archived {cluster.switch_wal()}")
        elif args.command == 'restore':
            uri = cluster.restore(args.backup, args.target, args.time,
                args.port)
            print(f"restored server: {uri} (stop: pg_ctl stop -D "
                f"{args.target}/data)")
        elif args.command == 'down':
            cluster.down(purge=args.purge)
        return 0
    except (HAError, pgcluster.PostgresNotFound) as e:
        print(f"hacluster: {e}", file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
