#!/usr/bin/env python3
"""Throwaway PostgreSQL clusters for tests and demos.

A cluster lives in a fresh temporary directory, listens on a free TCP port of
127.0.0.1 (its unix socket sits in the same directory), trusts every local
connection and is tuned for speed, not durability (fsync off).  It is stopped
and removed afterwards, also on errors and Ctrl-C.

Library use::

    from pgcluster import throwaway_cluster
    with throwaway_cluster() as uri:     # 'postgresql://postgres@127.0.0.1:PORT/'
        ...

    with Cluster() as cluster:           # more control: cluster.uri, .port,
        cluster.psql('SELECT 1')         # .datadir, .socket_dir, .bindir

Command line::

    python scripts/pgcluster.py run -- CMD ARGS...   # CMD sees SCENIC_PG_URI
                                                     # and TRYTOND_DATABASE__URI
    python scripts/pgcluster.py bindir               # where the server binaries are

PostgreSQL refuses to run as root, so when root the server programs run as the
``postgres`` system user (through runuser) and the directory is chowned to it.
"""
import argparse
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = ['Cluster', 'throwaway_cluster', 'find_bindir', 'free_port',
    'PostgresNotFound']

SUPERUSER = 'postgres'
SERVER_USER = 'postgres'  # system account that runs the server when root
# Speed over durability: these clusters are thrown away.
FAST_SETTINGS = {
    'fsync': 'off',
    'synchronous_commit': 'off',
    'full_page_writes': 'off',
    'max_connections': '200',
    }


class PostgresNotFound(RuntimeError):
    pass


def _is_root():
    return os.geteuid() == 0


def _has_server(bindir):
    return bool(bindir) and all(
        os.access(os.path.join(bindir, p), os.X_OK)
        for p in ('initdb', 'pg_ctl', 'postgres'))


def _version_key(path):
    # /usr/lib/postgresql/15/bin -> (15,)
    try:
        return tuple(int(x) for x in Path(path).parent.name.split('.'))
    except ValueError:
        return (0,)


def _candidates():
    pg_config = shutil.which('pg_config')
    if pg_config:
        try:
            yield subprocess.run([pg_config, '--bindir'], check=True,
                capture_output=True, text=True).stdout.strip()
        except (subprocess.CalledProcessError, OSError):
            pass
    yield from sorted(glob.glob('/usr/lib/postgresql/*/bin'),
        key=_version_key, reverse=True)
    initdb = shutil.which('initdb')
    if initdb:
        yield os.path.dirname(os.path.realpath(initdb))


def find_bindir(install=True):
    """Return the directory holding initdb, pg_ctl and postgres.

    When none is found and ``install`` is true, install Debian's
    ``postgresql`` package with apt-get (root only)."""
    for bindir in _candidates():
        if _has_server(bindir):
            return bindir
    if not install:
        raise PostgresNotFound(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found "
            "via pg_config, /usr/lib/postgresql/*/bin or PATH")
    if not (_is_root() and shutil.which('apt-get')):
        raise PostgresNotFound(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found, "
            "and they cannot be installed automatically (needs root and "
            "apt-get). Install the 'postgresql' package (Debian/Ubuntu) or "
            "put its bin directory on PATH.")
    print("pgcluster: PostgreSQL server not found, installing the Debian "
        "package 'postgresql'...", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    try:
        subprocess.run(['apt-get', 'update', '-qq'], check=True, env=env)
        subprocess.run(['apt-get', 'install', '-y', '-qq',
                '--no-install-recommends', 'postgresql'],
            check=True, env=env)
    except subprocess.CalledProcessError as e:
        raise PostgresNotFound(
            f"installing the 'postgresql' package failed ({e})") from e
    return find_bindir(install=False)


def free_port(host='127.0.0.1'):
    "A TCP port that was free a moment ago."
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ensure_server_user():
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    print(f"pgcluster: creating the system user {SERVER_USER!r} to run "
        "PostgreSQL (it refuses to run as root)", file=sys.stderr, flush=True)
    subprocess.run(['useradd', '--system', '--no-create-home',
            '--shell', '/usr/sbin/nologin', SERVER_USER], check=True)
    return pwd.getpwnam(SERVER_USER)


class Cluster:
    """A PostgreSQL cluster in a temporary directory.

    Use as a context manager, or call start() and stop() (stop removes the
    directory unless keep=True)."""

    def __init__(self, port=None, settings=None, host='127.0.0.1',
            base_dir=None, keep=False):
        self.host = host
        self.requested_port = port
        self.port = None
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.base_dir = base_dir or os.environ.get('SCENIC_PG_TMPDIR')
        self.keep = keep
        self.bindir = None
        self.tmpdir = None
        self.running = False

    # -- paths ------------------------------------------------------------
    @property
    def datadir(self):
        return os.path.join(self.tmpdir, 'data')

    @property
    def socket_dir(self):
        return self.tmpdir

    @property
    def logfile(self):
        return os.path.join(self.tmpdir, 'server.log')

    @property
    def uri(self):
        return f'postgresql://{SUPERUSER}@{self.host}:{self.port}/'

    # -- running commands -------------------------------------------------
    def _as_owner(self, cmd):
        "Prefix cmd so that it runs as the server user when we are root."
        if _is_root():
            return ['runuser', '-u', SERVER_USER, '--', *cmd]
        return list(cmd)

    def run(self, program, *args, check=True, **kwargs):
        "Run a PostgreSQL program from bindir as the cluster's owner."
        cmd = self._as_owner([os.path.join(self.bindir, program), *args])
        kwargs.setdefault('stdin', subprocess.DEVNULL)
        return subprocess.run(cmd, check=check, **kwargs)

    def psql(self, sql, dbname='postgres'):
        "Run SQL with psql over the unix socket; return its output."
        return self.run('psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1',
            '-h', self.socket_dir, '-p', str(self.port), '-U', SUPERUSER,
            '-d', dbname, '-c', sql, capture_output=True, text=True).stdout

    def server_log(self):
        try:
            return Path(self.logfile).read_text(errors='replace')
        except OSError:
            return ''

    # -- life cycle -------------------------------------------------------
    def start(self):
        self.bindir = find_bindir()
        base = self.base_dir
        if base:
            os.makedirs(base, exist_ok=True)
        self.tmpdir = tempfile.mkdtemp(prefix='scenic-pg-', dir=base)
        try:
            if _is_root():
                user = _ensure_server_user()
                os.chown(self.tmpdir, user.pw_uid, user.pw_gid)
            self.run('initdb', '-D', self.datadir, '-U', SUPERUSER,
                '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync',
                '--no-instructions', stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True)
            # The port may be taken between free_port() and the server
            # binding it: retry a few times on a new port.
            for attempt in range(3):
                self.port = self.requested_port or free_port(self.host)
                if self._pg_ctl_start():
                    self.running = True
                    return self
                if self.requested_port:
                    break
            raise RuntimeError(
                "pgcluster: PostgreSQL did not start; server log:\n"
                + self.server_log())
        except BaseException:
            self._cleanup()
            raise

    def _pg_ctl_start(self):
        options = [f'-c listen_addresses={self.host}', f'-p {self.port}',
            f"-c unix_socket_directories='{self.socket_dir}'"]
        options += [f'-c {k}={v}' for k, v in self.settings.items()]
        result = self.run('pg_ctl', 'start', '-D', self.datadir,
            '-l', self.logfile, '-w', '-t', '60', '-o', ' '.join(options),
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        return result.returncode == 0

    def stop(self):
        try:
            if self.tmpdir and os.path.exists(
                    os.path.join(self.datadir, 'postmaster.pid')):
                # immediate: nothing here is worth a checkpoint
                self.run('pg_ctl', 'stop', '-D', self.datadir,
                    '-m', 'immediate', '-w', '-t', '30', check=False,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            self.running = False
            self._cleanup()

    def _cleanup(self):
        if self.tmpdir and not self.keep:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@contextmanager
def throwaway_cluster(**kwargs):
    "Start a throwaway cluster; yield its URI; stop and remove it after."
    with Cluster(**kwargs) as cluster:
        yield cluster.uri


def _run(cmd, grace=10):
    """Run cmd with the cluster's URI in its environment; return its exit
    code.  SIGINT, SIGTERM and SIGHUP are passed on to cmd (killed if still
    alive after ``grace`` seconds), and the cluster is removed in any case."""
    proc = None
    stopping = []

    def forward(signum, frame):
        if proc is None:  # cluster still starting: unwind, clean up
            raise KeyboardInterrupt
        stopping.append(time.monotonic())
        proc.send_signal(signum)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)

    with Cluster() as cluster:
        env = dict(os.environ, SCENIC_PG_URI=cluster.uri,
            TRYTOND_DATABASE__URI=cluster.uri)
        print(f"pgcluster: {cluster.uri} ({cluster.bindir})",
            file=sys.stderr, flush=True)
        proc = subprocess.Popen(cmd, env=env)
        while True:
            try:
                returncode = proc.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                if stopping and time.monotonic() - stopping[0] > grace:
                    proc.kill()
        # a child killed by signal N reports -N; shells say 128 + N
        return returncode if returncode >= 0 else 128 - returncode


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Throwaway PostgreSQL cluster")
    sub = parser.add_subparsers(dest='command', required=True)
    run = sub.add_parser('run',
        help="run a command with SCENIC_PG_URI set, then remove the cluster")
    run.add_argument('cmd', nargs=argparse.REMAINDER,
        help="command (after --)")
    sub.add_parser('bindir', help="print the server binaries' directory")
    args = parser.parse_args(argv)
    try:
        if args.command == 'bindir':
            print(find_bindir(install=False))
            return 0
        cmd = args.cmd[1:] if args.cmd[:1] == ['--'] else args.cmd
        if not cmd:
            parser.error("run needs a command: pgcluster.py run -- CMD ...")
        return _run(cmd)
    except (PostgresNotFound, RuntimeError) as e:
        print(f"pgcluster: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"pgcluster: {e}\n{e.stderr or ''}", file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
