#!/usr/bin/env python3
"""Build (if needed) and serve the Scenic demo database.

    python scripts/demo.py                 # SQLite: var/db/demo.sqlite
    SCENIC_DATABASE_URI=postgresql://user@host:port/ python scripts/demo.py

Steps: write var/trytond.conf from config/ (absolute paths); create the
database if missing; initialise it with trytond-admin (admin password
'admin', Chinese loaded); load the demo data with scripts/load_demo.py; serve
sao and the RPC at http://127.0.0.1:8000/ (trytond for SQLite, granian
serving the booking engine for PostgreSQL), with trytond-cron beside it and
the main gate's IoT box (scenic-iotbox, simulated turnstile) on
http://127.0.0.1:8100/ and the
kiosk's desk box (simulated ID card reader and ticket printer, for the
kiosk and counter pages) on http://127.0.0.1:8101/.  A second
run reuses the database: trytond-admin runs again only when the modules
(addons/, load_demo.py, trytond's version) changed.

The functions are reused by tests/browser to build a demo in a temp dir.
"""
import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

# Beside this file; its module level imports the standard library only.
import load_demo

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / 'config'
LOGGING_CONF = CONFIG_DIR / 'logging.conf'
WEB_ROOT = ROOT / 'build' / 'web'
LOAD_DEMO = ROOT / 'scripts' / 'load_demo.py'
BIN = Path(sys.executable).parent  # the venv's bin: trytond, gunicorn...
DEFAULT_LISTEN = '127.0.0.1:8000'
DEFAULT_BOX_LISTEN = '127.0.0.1:8100'
DEFAULT_KIOSK_BOX_LISTEN = '127.0.0.1:8101'
DEMO_PII_KEY = 'demo-only-pii-key-change-me-0123456789abcdef'
ADMIN_PASSWORD = 'admin'
ADMIN_EMAIL = 'admin@example.com'
LANGUAGE = 'zh_CN'


class DemoError(RuntimeError):
    pass


def log(message):
    print(f"demo: {message}", flush=True)


# -- configuration ---------------------------------------------------------
def write_config(var_dir, listen=DEFAULT_LISTEN, uri=None):
    """Write the trytond configuration for var_dir from config/ and return
    its path: trytond.conf (SQLite) or trytond-postgresql.conf (uri)."""
    var_dir = Path(var_dir).resolve()
    (var_dir / 'db').mkdir(parents=True, exist_ok=True)
    name = 'trytond-postgresql.conf' if uri else 'trytond.conf'
    text = (CONFIG_DIR / name).read_text()
    for key, value in {
            'VAR_DIR': str(var_dir),
            'WEB_ROOT': str(WEB_ROOT),
            'LISTEN': listen,
            'DATABASE_URI': uri or '',
            'PII_KEY': DEMO_PII_KEY,
            'DEMO': 'True',
            'PAYMENT_PROVIDERS': 'simulated',
            }.items():
        text = text.replace(f'@{key}@', value)
    path = var_dir / name
    path.write_text(text)
    return path


def demo_users():
    "[(login, password)] of the demo (load_demo.DEMO_USERS)."
    users = [('admin', ADMIN_PASSWORD)]
    users += [(u[0], f'{u[0]}-demo') for u in load_demo.DEMO_USERS]
    return users


def box_gates():
    """[(gate code, turnstile channels)] of the demo box: the gates of
    load_demo.GATES, their lanes on consecutive channels of one
    controller (MAIN-IN 1-2, MAIN-OUT 3-4)."""
    gates, channel = [], 1
    for code, _, _, _, lanes in load_demo.GATES:
        gates.append((code, list(range(channel, channel + lanes))))
        channel += lanes
    return gates


# -- database --------------------------------------------------------------
def _pg_conninfo(uri, dbname):
    parts = urllib.parse.urlsplit(uri)
    return urllib.parse.urlunsplit(parts._replace(path='/' + dbname))


def ensure_database(var_dir, dbname, uri=None):
    "Create an empty database if missing (trytond-admin needs one)."
    if uri:
        import psycopg
        from psycopg import sql
        with psycopg.connect(_pg_conninfo(uri, 'postgres'),
                autocommit=True) as conn:
            if not conn.execute('SELECT 1 FROM pg_database WHERE datname=%s',
                    (dbname,)).fetchone():
                log(f"creating PostgreSQL database {dbname!r}")
                conn.execute(sql.SQL(
                        "CREATE DATABASE {} TEMPLATE template0 "
                        "ENCODING 'UTF8'").format(sql.Identifier(dbname)))
    else:
        path = Path(var_dir).resolve() / 'db' / f'{dbname}.sqlite'
        if not path.exists():
            log(f"creating {path}")
            sqlite3.connect(path).close()


def is_initialised(var_dir, dbname, uri=None):
    "Whether trytond-admin has already created its tables."
    if uri:
        import psycopg
        with psycopg.connect(_pg_conninfo(uri, dbname)) as conn:
            return conn.execute(
                "SELECT to_regclass('ir_module') IS NOT NULL").fetchone()[0]
    path = Path(var_dir).resolve() / 'db' / f'{dbname}.sqlite'
    with sqlite3.connect(path) as conn:
        return bool(conn.execute("SELECT 1 FROM sqlite_master "
                "WHERE type='table' AND name='ir_module'").fetchone())


def modules_hash():
    "Hash of what requires re-running trytond-admin / load_demo.py."
    digest = hashlib.sha256()
    files = [p for p in sorted((ROOT / 'addons').rglob('*'))
        if p.is_file() and '__pycache__' not in p.parts
        and not any(part.endswith('.egg-info') for part in p.parts)]
    if LOAD_DEMO.exists():
        files.append(LOAD_DEMO)
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    import trytond
    digest.update(trytond.__version__.encode())
    return digest.hexdigest()


def _db_key(uri):
    return 'sqlite' if not uri else hashlib.sha1(uri.encode()).hexdigest()[:10]


def _stamp_path(var_dir, dbname, uri):
    return Path(var_dir).resolve() / f'{dbname}.{_db_key(uri)}.modules.sha256'


def box_dir(var_dir, dbname='demo', uri=None, kiosk=False):
    """The demo box's directory (configuration, credentials, its store):
    one per database, as its credentials are; `kiosk`: the kiosk's desk
    box's."""
    prefix = 'iotbox-kiosk' if kiosk else 'iotbox'
    return Path(var_dir).resolve() / f'{prefix}.{dbname}.{_db_key(uri)}'


def environ(**values):
    """The environment of the demo's processes: the caller's without any
    trytond or database setting (the configuration file says it all: a
    stray DB_NAME or TRYTOND_CONFIG would point them elsewhere), plus
    `values`."""
    env = {k: v for k, v in os.environ.items()
        if not k.startswith(('TRYTOND_', 'DB_')) and k != 'TRYTONPASSFILE'}
    env.update(values)
    return env


def admin_env(var_dir, uri=None):
    "The environment of trytond-admin and load_demo.py for var_dir."
    env = environ(
        TRYTONPASSFILE=str(Path(var_dir).resolve() / 'admin-password'))
    if uri:
        env['TRYTOND_DATABASE__URI'] = uri
    return env


def _run(cmd, env, what, quiet=False):
    log(f"{what}: {' '.join(map(str, cmd))}")
    start = time.monotonic()
    result = subprocess.run(list(map(str, cmd)), env=env, cwd=ROOT,
        stdin=subprocess.DEVNULL, capture_output=quiet, text=True)
    if result.returncode:
        output = (result.stdout or '') + (result.stderr or '')
        raise DemoError(f"{what} failed (exit {result.returncode})"
            + (f":\n{output[-5000:]}" if output else ''))
    log(f"{what}: done in {time.monotonic() - start:.0f} s")


def prepare(var_dir, dbname='demo', listen=DEFAULT_LISTEN, uri=None,
        quiet=False, force=False):
    """Make sure the demo database exists, is initialised and holds the demo
    data; return the configuration file to serve it with."""
    var_dir = Path(var_dir).resolve()
    if not (WEB_ROOT / 'index.html').exists():
        raise DemoError(f"{WEB_ROOT} has no index.html: run `make setup`")
    conf = write_config(var_dir, listen=listen, uri=uri)
    (var_dir / 'admin-password').write_text(ADMIN_PASSWORD + '\n')
    env = admin_env(var_dir, uri)
    ensure_database(var_dir, dbname, uri)

    stamp = _stamp_path(var_dir, dbname, uri)
    wanted = modules_hash()
    initialised = is_initialised(var_dir, dbname, uri)
    if not initialised:
        # A new database: the box's credentials and synced data are stale.
        for kiosk in (False, True):
            shutil.rmtree(box_dir(var_dir, dbname, uri, kiosk),
                ignore_errors=True)
    if initialised and not force and stamp.exists() \
            and stamp.read_text().strip() == wanted:
        log(f"database {dbname!r} is up to date")
        return conf
    stamp.unlink(missing_ok=True)
    _run([BIN / 'trytond-admin', '-c', conf, '-d', dbname, '--all',
            '-l', LANGUAGE, '--email', ADMIN_EMAIL,
            # new dependencies in tryton.cfg get activated on update
            '--activate-dependencies'],
        env, 'initialise' if not initialised else 'update', quiet=quiet)
    if LOAD_DEMO.exists():
        _run([sys.executable, LOAD_DEMO, '-c', conf, '-d', dbname],
            env, 'load demo data', quiet=quiet)
        # a month of history for the dashboards and notebooks (~10 s)
        _run([sys.executable, ROOT / 'scripts' / 'simulate_history.py',
                '-c', conf, '-d', dbname, '--days', '30', '--visitors', '300'],
            env, 'simulate history', quiet=quiet)
    else:
        log(f"WARNING: {LOAD_DEMO.relative_to(ROOT)} is missing: "
            "the database has no demo data")
    stamp.write_text(wanted + '\n')
    return conf


def ensure_box(var_dir, conf, dbname='demo', uri=None, quiet=False,
        kiosk=False):
    """Enrol the demo box (`kiosk`: the kiosk's desk box) if it has no
    credentials yet (its old store goes: it belongs to the previous
    enrolment) and return its directory."""
    directory = box_dir(var_dir, dbname, uri, kiosk)
    credentials = directory / 'credentials.json'
    if not credentials.exists():
        shutil.rmtree(directory / 'data', ignore_errors=True)
        name = load_demo.KIOSK_BOX if kiosk else load_demo.DEMO_BOX
        _run([sys.executable, LOAD_DEMO, '-c', conf, '-d', dbname,
                '--enrol-box', credentials, '--box', name],
            admin_env(var_dir, uri), f'enrol the demo box {name!r}',
            quiet=quiet)
    return directory


# The staff screen's token on the demo box (binding_confirmed needs it):
# published, as the box listens on loopback only.
DEMO_BOX_STAFF_TOKEN = 'demo-box-staff'


def write_box_config(directory, erp_url, dbname='demo',
        listen=DEFAULT_BOX_LISTEN, sync_interval=2):
    """box.toml of the demo box: MAIN-IN on turnstile lanes 1-2, MAIN-OUT
    on 3-4 of a simulated controller on a pty (the real serial driver
    talks to it); frequent rounds so that the back office follows."""
    gates = box_gates()
    channels = sum(len(lanes) for _, lanes in gates)
    gates = ''.join(f'\n[[gates]]\ncode = "{code}"\n'
        f'turnstile_lanes = {lanes}\n' for code, lanes in gates)
    path = Path(directory) / 'box.toml'
    path.write_text(f"""# Written by scripts/demo.py: the demo's main gate box.
[erp]
url = "{erp_url}"
database = "{dbname}"
timeout = 10

[box]
name = "demo-main-gate"
data_dir = "data"
credentials = "credentials.json"
timezone = "Asia/Shanghai"
sync_interval = {sync_interval}
heartbeat_interval = 20
max_backoff = 5

[api]
listen = "{listen}"
staff_token = "{DEMO_BOX_STAFF_TOKEN}"   # demo only: the staff screen's token
{gates}
[drivers.turnstile]
driver = "sim"
lanes = {channels}
passage_delay = 1.0
""")
    return path


# The kiosk's desk box's API token, in the kiosk URL's fragment: published,
# as the box listens on loopback only and answers the demo's origin only.
DEMO_KIOSK_BOX_TOKEN = 'demo-kiosk-box-token'
# The demo kiosk's simulated ID card: placed on the desk box's reader by
# `demo.py --place-card` (a made-up number with a valid checksum).
DEMO_ID_CARD = ('张三', '330106199005171230')


def web_origins(listen):
    """The origins a browser may show the demo's pages from (the desk
    box's api.allowed_origins)."""
    host, _, port = listen.rpartition(':')
    origins = [f'http://{listen}', erp_url(listen)]
    if host in ('127.0.0.1', '0.0.0.0', '::', '[::]', ''):
        origins.append(f'http://localhost:{port}')
    return list(dict.fromkeys(origins))


def card_file(directory):
    "The file holding the card on the kiosk box's simulated reader."
    return Path(directory) / 'idcard.json'


def place_card(directory, name=DEMO_ID_CARD[0], number=DEMO_ID_CARD[1]):
    "Put a card on the kiosk box's simulated reader (until take_card)."
    path = card_file(directory)
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps({'name': name, 'id_number': number},
            ensure_ascii=False), encoding='utf-8')
    tmp.replace(path)       # the box never reads half a file


def take_card(directory):
    card_file(directory).unlink(missing_ok=True)


def write_kiosk_box_config(directory, erp_url, origins, dbname='demo',
        listen=DEFAULT_KIOSK_BOX_LISTEN, sync_interval=10,
        heartbeat_interval=20):
    """box.toml of the kiosk's desk box: no gate, a simulated ID card
    reader (its card: card_file) and a ticket printer writing ESC/POS to
    prints.bin and each ticket as a PNG under prints/; its API answers the
    pages of `origins` with DEMO_KIOSK_BOX_TOKEN."""
    directory = Path(directory)
    path = directory / 'box.toml'
    origins = ', '.join(json.dumps(o) for o in origins)
    path.write_text(f"""# Written by scripts/demo.py: the demo kiosk's desk box.
[erp]
url = "{erp_url}"
database = "{dbname}"
timeout = 10

[box]
name = "demo-kiosk-1"
data_dir = "data"
credentials = "credentials.json"
timezone = "Asia/Shanghai"
sync_interval = {sync_interval}
heartbeat_interval = {heartbeat_interval}
max_backoff = 5

[api]
listen = "{listen}"
token = "{DEMO_KIOSK_BOX_TOKEN}"   # demo only: in the kiosk URL's fragment
allowed_origins = [{origins}]

[drivers.idcard]
driver = "sim"
name = "kiosk-1-reader"
card_file = {json.dumps(str(card_file(directory)))}

[drivers.printer]
driver = "file"
name = "kiosk-1-printer"
path = {json.dumps(str(directory / 'prints.bin'))}
png_dir = {json.dumps(str(directory / 'prints'))}
""")
    return path


def kiosk_url(listen, dbname, box_listen):
    "The kiosk page's address with its one-time setup fragment."
    fragment = urllib.parse.urlencode({'key': 'demo-kiosk-key',
            'box': f'http://{box_listen}', 'token': DEMO_KIOSK_BOX_TOKEN},
        safe=':/')
    return f'http://{listen}/{dbname}/scenic/kiosk#{fragment}'


def box_command(box_config):
    "(argv, env) of the demo box."
    return [str(BIN / 'scenic-iotbox'), 'run', '--config',
        str(box_config)], environ()


DEFAULT_PARTNER_LISTEN = '127.0.0.1:8200'


def partner_command(listen):
    """(argv, env) of the simulated OTA partner that receives the demo's
    notices (scripts/demo_group.py gives the `demo-ota` partner its URL)."""
    return [sys.executable, '-m', 'scenic_common.simpartner', '--listen',
        listen, '--key', 'demo-ota', '--notice-secret',
        'demo-ota-notice-secret'], environ()


def erp_url(listen):
    "The URL the box calls for a server listening on `listen`."
    host, _, port = listen.rpartition(':')
    if host in ('', '0.0.0.0', '::', '[::]'):
        host = '127.0.0.1'
    return f'http://{host}:{port}'


ENGINE_APP = 'scenic_ticket.engine:make_app()'


def engine_http():
    """(name, argv builder) of the HTTP server the booking engine is served
    with: the one bench/reservation_rush.py chose (bench/_measure.py)."""
    sys.path.insert(0, str(ROOT / 'bench'))
    try:
        import _measure  # standard library only at import
    finally:
        sys.path.remove(str(ROOT / 'bench'))
    return _measure.ENGINE_HTTP, _measure.server_argv


def server_command(conf, dbname='demo', uri=None, listen=DEFAULT_LISTEN):
    """(argv, env) serving conf: trytond on SQLite (one process, threads);
    on PostgreSQL, 2 processes × 4 threads of the engine's HTTP server
    (engine_http()) serving the booking engine
    (addons/scenic_ticket/engine.py: the booking API's book, pay, order and
    availability routes without a Tryton transaction) in front of trytond's
    application, on one port.

    The database's pool is loaded at start (-d / TRYTOND_DATABASE_NAMES):
    besides a fast first login, this avoids a trytond 8.0.12 bug where the
    first login on a fresh server fails with KeyError 'res.user'
    (Transaction.start registers an empty pool through Cache.sync, so
    security.login never initialises it)."""
    env = environ(TRYTOND_LOGGING_CONFIG=str(LOGGING_CONF))
    if uri:
        env.update(TRYTOND_CONFIG=str(conf), TRYTOND_DATABASE__URI=uri,
            TRYTOND_DATABASE_NAMES=dbname)
        http, server_argv = engine_http()
        argv = server_argv(http, ENGINE_APP, listen, workers=2, threads=4)
    else:
        argv = [str(BIN / 'trytond'), '-c', str(conf), '-d', dbname,
            '--logconf', str(LOGGING_CONF)]
    return argv, env


def cron_command(conf, dbname='demo', uri=None):
    """(argv, env) of trytond-cron: it runs the scheduled jobs, e.g. the
    release of unpaid booking holds."""
    env = environ(TRYTOND_LOGGING_CONFIG=str(LOGGING_CONF))
    if uri:
        env['TRYTOND_DATABASE__URI'] = uri
    argv = [str(BIN / 'trytond-cron'), '-c', str(conf), '-d', dbname,
        '--logconf', str(LOGGING_CONF)]
    return argv, env


STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


class _Stop(Exception):
    "A stop signal arrived (its number in args[0])."


def supervise(commands, grace=10):
    """Run the demo's processes together; when one ends, or on SIGHUP
    (the terminal closed), SIGINT (Ctrl-C) or SIGTERM (a supervisor), stop
    the others. Returns the first one's exit code (0 when stopped by a
    signal).

    Each runs in its own process group, stopped as a whole: trytond-cron's
    workers would otherwise outlive a SIGTERM sent to the demo alone; and
    because they are in their own sessions the terminal's SIGHUP never
    reaches them: the demo must pass it on. Once stopping, further signals
    are ignored (a supervisor's second SIGTERM, or Ctrl-C pressed twice,
    used to cut the clean-up short and leave servers holding the ports)."""
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise _Stop(signum)
    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    procs = []

    def signal_group(process, signum):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass

    code = 0
    try:
        for argv, env in commands:
            procs.append(subprocess.Popen(argv, env=env, cwd=ROOT,
                    start_new_session=True))
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        ended = next(p for p in procs if p.returncode is not None)
        code = ended.returncode
        log(f"{Path(ended.args[0]).name} exited with {code}: stopping the "
            "others (another address: SCENIC_DEMO_LISTEN, "
            "SCENIC_DEMO_BOX_LISTEN, SCENIC_DEMO_KIOSK_BOX_LISTEN)")
    except _Stop as received:             # asked to stop: a clean stop
        log(f"{signal.Signals(received.args[0]).name}: stopping")
    finally:
        stopping = True
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        for p in procs:
            signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(p, signal.SIGKILL)
                p.wait()
            # the group's other members (cron's workers) go too
            signal_group(p, signal.SIGKILL)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--var-dir', default=str(ROOT / 'var'),
        help="where the configuration and the SQLite files go "
        "(default: %(default)s)")
    parser.add_argument('-d', '--database', default='demo')
    parser.add_argument('--listen',
        default=os.environ.get('SCENIC_DEMO_LISTEN', DEFAULT_LISTEN),
        help="host:port to serve on (env SCENIC_DEMO_LISTEN)")
    parser.add_argument('--box-listen',
        default=os.environ.get('SCENIC_DEMO_BOX_LISTEN', DEFAULT_BOX_LISTEN),
        help="host:port of the gate box's local API "
        "(env SCENIC_DEMO_BOX_LISTEN)")
    parser.add_argument('--kiosk-box-listen',
        default=os.environ.get('SCENIC_DEMO_KIOSK_BOX_LISTEN',
            DEFAULT_KIOSK_BOX_LISTEN),
        help="host:port of the kiosk's desk box's local API "
        "(env SCENIC_DEMO_KIOSK_BOX_LISTEN)")
    parser.add_argument('--place-card', nargs='?', metavar='ID_NUMBER',
        const=DEMO_ID_CARD[1],
        help="put an ID card on the running demo kiosk box's simulated "
        "reader (default: a made-up valid number) and exit")
    parser.add_argument('--card-name', default=DEMO_ID_CARD[0],
        help="the name on the card of --place-card")
    parser.add_argument('--take-card', action='store_true',
        help="take the card off the kiosk box's reader and exit")
    parser.add_argument('--no-serve', action='store_true',
        help="only build the database")
    parser.add_argument('--force', action='store_true',
        help="run trytond-admin and load_demo.py even if up to date")
    args = parser.parse_args(argv)
    uri = os.environ.get('SCENIC_DATABASE_URI') or None
    if uri and not uri.startswith(('postgresql://', 'postgres://')):
        parser.error(f"SCENIC_DATABASE_URI must be postgresql://..., "
            f"not {uri!r}")
    if args.place_card or args.take_card:
        directory = box_dir(args.var_dir, args.database, uri, kiosk=True)
        if not directory.exists():
            parser.error(f"{directory} does not exist: start the demo first")
        if args.take_card:
            take_card(directory)
            log("card taken off the kiosk box's reader")
        else:
            place_card(directory, args.card_name, args.place_card)
            log("card placed on the kiosk box's reader (--take-card to "
                "take it off)")
        return 0
    try:
        conf = prepare(args.var_dir, args.database, args.listen, uri,
            force=args.force)
        directory = ensure_box(args.var_dir, conf, args.database, uri)
        kiosk_directory = ensure_box(args.var_dir, conf, args.database, uri,
            kiosk=True)
    except DemoError as e:
        print(f"demo: ERROR: {e}", file=sys.stderr)
        return 1
    if args.no_serve:
        return 0
    box_config = write_box_config(directory, erp_url(args.listen),
        args.database, args.box_listen)
    kiosk_config = write_kiosk_box_config(kiosk_directory,
        erp_url(args.listen), web_origins(args.listen), args.database,
        args.kiosk_box_listen)
    argv, env = server_command(conf, args.database, uri, args.listen)
    partner_listen = os.environ.get('SCENIC_DEMO_PARTNER_LISTEN',
        DEFAULT_PARTNER_LISTEN)
    sys.path.insert(0, str(ROOT / 'dashboards'))
    import serve as dashboards
    dash_argv, dash_env, dash_listen = dashboards.demo_command(
        args.var_dir, args.database, uri)
    print(f"""
Scenic demo ({'PostgreSQL' if uri else 'SQLite'}, database {args.database!r})
  open  http://{args.listen}/   (database: {args.database})
  logins (user / password):""")
    for login, password in demo_users():
        print(f"    {login:<12} {password}")
    print(f"""  booking page  http://{args.listen}/{args.database}/scenic/book
  counter       http://{args.listen}/{args.database}/scenic/counter  (cashier)
  kiosk         {kiosk_url(args.listen, args.database, args.kiosk_box_listen)}
                (its desk box: simulated ID card reader and printer; place
                a card: python scripts/demo.py --place-card, take it:
                --take-card; tickets: {kiosk_directory / 'prints'})
  booking API   http://{args.listen}/{args.database}/scenic/v1/openapi.json
                (channel key: demo-web-key)
  gate box      http://{args.box_listen}/status  (MAIN-IN, MAIN-OUT;
                simulated turnstile; scan: POST /scan, see README.md)
  partner API   http://{args.listen}/{args.database}/scenic/partner/v1/openapi.json
                (key id demo-ota, secret demo-ota-secret; signing: README.md)
  sim. partner  http://{partner_listen}/notices  (notices it received)
  dashboards    http://{dash_listen}/live  (login supervisor /
                supervisor-demo; SCENIC_DEMO_DASHBOARDS_LISTEN moves them)
  stop with Ctrl-C
""", flush=True)
    commands = [(argv, env), cron_command(conf, args.database, uri),
        box_command(box_config), box_command(kiosk_config),
        (dash_argv, dash_env)]
    if _port_free(partner_listen):
        commands.append(partner_command(partner_listen))
    else:
        # Optional: the demo runs without it (notices then wait, retried).
        log(f"simulated partner not started: {partner_listen} is in use "
            "(another address: SCENIC_DEMO_PARTNER_LISTEN)")
    return supervise(commands)


def _port_free(listen):
    import socket
    host, _, port = listen.rpartition(':')
    with socket.socket() as sock:
        try:
            sock.bind((host, int(port)))
        except OSError:
            return False
    return True


if __name__ == '__main__':
    sys.exit(main())
