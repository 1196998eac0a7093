"""Shared fixtures of the cross-module tests (tests/).

- scripts/ is importable (pgcluster, demo).
- ``pg_uri``: a PostgreSQL server URI ('postgresql://user@host:port/'), from
  SCENIC_PG_URI (set by scripts/run_tests.py and pgcluster.py run) or else
  from a throwaway cluster started for the session.
- ``artifacts_dir``: test-artifacts/ at the repo root (screenshots...).
- ``demo_server`` (session): a fresh demo database built once per test
  session in a temporary directory with the code of `make demo`
  (scripts/demo.py: trytond-admin, then scripts/load_demo.py; never touches
  var/db) and served by trytond on a free 127.0.0.1 port: sao (build/web) at
  ``url + '/'``, the booking pages at ``url/<database>/scenic/book``.
  Every module shares it: a test must not rely on what another test did
  (or did not do) to the database, nor leave it changed in a way that
  breaks another one.

  SCENIC_BROWSER_TEST_URL runs the tests against a demo already served
  instead (e.g. to iterate on a page); SCENIC_BROWSER_TEST_DB is its SQLite
  file, SCENIC_BROWSER_TEST_LOG its log.  Its database must not hold the
  tests' bookings yet.

- ``demo_box`` (session): the demo's gate box as `make demo` runs it
  (enrolled by scripts/demo.py, `scenic-iotbox run`, simulated turnstile)
  on a free port, syncing with ``demo_server`` every half second.
- ``demo_kiosk_box`` (session): the kiosk's desk box as `make demo` runs
  it (simulated ID card reader and printer, the demo's origin allowed), on
  a free port, heartbeating every half second.
"""
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / 'scripts'
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import demo  # noqa: E402 (scripts/)
import pgcluster  # noqa: E402
from demo_box import DemoBox, until  # noqa: E402 (tests/)
from pg_history import pg_history  # noqa: E402,F401 (tests/)


@pytest.fixture(scope='session')
def pg_uri():
    uri = os.environ.get('SCENIC_PG_URI')
    if uri:
        yield uri
        return
    try:
        cluster = pgcluster.Cluster().start()
    except pgcluster.PostgresNotFound as e:
        pytest.fail(f"no PostgreSQL for the tests: {e}", pytrace=False)
    try:
        yield cluster.uri
    finally:
        cluster.stop()


@pytest.fixture(scope='session')
def artifacts_dir():
    path = ROOT / 'test-artifacts'
    path.mkdir(exist_ok=True)
    return path


DATABASE = 'demo'
SERVER_START_TIMEOUT = 90   # seconds for trytond to answer
LOG_TAIL = 8000             # characters of the server log in a failure


def log_tail(path, chars=LOG_TAIL):
    "The end of a log file, for failure messages."
    try:
        return Path(path).read_text(errors='replace')[-chars:]
    except (OSError, TypeError):
        return '(no server log)'


@dataclass(frozen=True)
class DemoServer:
    """Where the demo is served.

    url: base URL, no trailing slash (sao is at url + '/');
    database: the database name; log: trytond's log file;
    db: the SQLite file of the database, var_dir: the demo's directory
    (configuration, box) (None when not known)."""
    url: str
    database: str
    log: Path
    db: Optional[Path]
    var_dir: Optional[Path] = None

    def log_tail(self, chars=LOG_TAIL):
        return log_tail(self.log, chars)


def _answers(url, check, timeout):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200 and check(response.read())
    except (OSError, urllib.error.HTTPError):
        return False


def _wait_until_served(process, server):
    """Until trytond serves sao and the booking page (fail with the log's
    tail if it exits or does not within SERVER_START_TIMEOUT)."""
    checks = [
        (f'{server.url}/', lambda body: b'tryton' in body.lower()),
        (f'{server.url}/{server.database}/scenic/book', lambda body: True),
        ]
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    for url, check in checks:
        while not _answers(url, check, timeout=30):
            if process.poll() is not None:
                pytest.fail(f"trytond exited with {process.returncode}:\n"
                    + server.log_tail(), pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"trytond did not serve {url} within "
                    f"{SERVER_START_TIMEOUT} s:\n" + server.log_tail(),
                    pytrace=False)
            time.sleep(0.5)


@pytest.fixture(scope='session')
def demo_server(tmp_path_factory):
    "A fresh demo database served by trytond, for the whole session."
    if os.environ.get('SCENIC_BROWSER_TEST_URL'):
        db = os.environ.get('SCENIC_BROWSER_TEST_DB')
        yield DemoServer(os.environ['SCENIC_BROWSER_TEST_URL'].rstrip('/'),
            DATABASE, Path(os.environ.get('SCENIC_BROWSER_TEST_LOG',
                    '/dev/null')), Path(db) if db else None)
        return
    missing = []
    if not (demo.WEB_ROOT / 'index.html').exists():
        missing.append(f"{demo.WEB_ROOT}/index.html (run `make setup`)")
    if not demo.LOAD_DEMO.exists():
        missing.append(f"{demo.LOAD_DEMO} (the demo data loader)")
    if missing:
        pytest.fail("cannot run the browser tests, missing:\n  "
            + "\n  ".join(missing), pytrace=False)

    var_dir = tmp_path_factory.mktemp('demo-var')
    # demo.py's processes get no trytond or database setting of ours.
    start = time.monotonic()
    try:
        demo.prepare(var_dir, DATABASE, quiet=True)
    except demo.DemoError as e:
        pytest.fail(f"building the demo database failed: {e}",
            pytrace=False)
    built = time.monotonic() - start
    # The port is chosen only now (the build takes a minute): the
    # configuration is written again with it.
    listen = f'127.0.0.1:{pgcluster.free_port()}'
    conf = demo.write_config(var_dir, listen=listen)
    # `-d demo`: the pool is loaded at start (trytond 8.0.12 fails the
    # first login on a fresh server otherwise, see demo.server_command).
    argv, env = demo.server_command(conf, DATABASE, listen=listen)
    server = DemoServer(f'http://{listen}', DATABASE,
        var_dir / 'server.log', var_dir / 'db' / f'{DATABASE}.sqlite',
        var_dir)
    with open(server.log, 'wb') as log:
        process = subprocess.Popen(argv, env=env, cwd=demo.ROOT,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_served(process, server)
        print(f"\ndemo server: {server.url}/ (demo built in {built:.0f} s; "
            f"log {server.log})")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope='session')
def demo_box(demo_server, tmp_path_factory):
    if demo_server.var_dir is None:
        pytest.skip("needs the demo the tests build (not "
            "SCENIC_BROWSER_TEST_URL)")
    var_dir = demo_server.var_dir
    directory = demo.ensure_box(var_dir, var_dir / 'trytond.conf',
        demo_server.database, quiet=True)
    listen = f'127.0.0.1:{pgcluster.free_port()}'
    config = demo.write_box_config(directory, demo_server.url,
        demo_server.database, listen, sync_interval=0.5)
    argv, env = demo.box_command(config)
    box = DemoBox(f'http://{listen}',
        tmp_path_factory.mktemp('demo-box') / 'box.log')
    with open(box.log, 'wb') as out:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT)
    try:
        status = until(lambda: (s := box.get('/status'))
            and s['online'] and s['counts']['gates'] == 2 and s)
        if not status:
            pytest.fail("the demo box did not sync:\n"
                + log_tail(box.log), pytrace=False)
        yield box
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            code = 'killed after 20 s'
    if code != 0:
        pytest.fail(f"the demo box did not stop cleanly ({code}):\n"
            + log_tail(box.log), pytrace=False)


@dataclass(frozen=True)
class DemoKioskBox:
    "The kiosk's desk box: url, its directory (card file, prints), log."
    url: str
    directory: Path
    log: Path


def kiosk_box_status(box):
    "The kiosk box's /status (its API wants the token), None if silent."
    import json
    request = urllib.request.Request(box.url + '/status', headers={
            'Authorization': f'Bearer {demo.DEMO_KIOSK_BOX_TOKEN}'})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


def _stop_box(process, log):
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        code = 'killed after 20 s'
    if code != 0:
        pytest.fail(f"the demo box did not stop cleanly ({code}):\n"
            + log_tail(log), pytrace=False)


@pytest.fixture(scope='session')
def demo_kiosk_box(demo_server, tmp_path_factory):
    if demo_server.var_dir is None:
        pytest.skip("needs the demo the tests build (not "
            "SCENIC_BROWSER_TEST_URL)")
    var_dir = demo_server.var_dir
    directory = demo.ensure_box(var_dir, var_dir / 'trytond.conf',
        demo_server.database, quiet=True, kiosk=True)
    listen = f'127.0.0.1:{pgcluster.free_port()}'
    server_listen = demo_server.url.split('://', 1)[1]
    config = demo.write_kiosk_box_config(directory, demo_server.url,
        demo.web_origins(server_listen), demo_server.database, listen,
        sync_interval=0.5, heartbeat_interval=0.5)
    argv, env = demo.box_command(config)
    box = DemoKioskBox(f'http://{listen}', directory,
        tmp_path_factory.mktemp('demo-kiosk-box') / 'box.log')
    with open(box.log, 'wb') as out:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT)
    try:
        online = until(lambda: (s := kiosk_box_status(box)) and s['online']
            and s)
        if not online:
            pytest.fail("the demo kiosk box did not sync:\n"
                + log_tail(box.log), pytrace=False)
        yield box
    finally:
        _stop_box(process, box.log)
