"Tests of the configuration files and the demo script's helpers."
import configparser
import re
import logging
import logging.config
import os
import subprocess
import sys

import demo


def test_sqlite_config_has_absolute_paths(tmp_path):
    path = demo.write_config(tmp_path / 'var', listen='127.0.0.1:8123')
    text = path.read_text()
    assert not re.search(r'^[^#]*@[A-Z_]+@', text, re.M), "placeholder left"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    assert parser.get('database', 'uri') == 'sqlite://'
    assert parser.get('database', 'path') == str(tmp_path / 'var' / 'db')
    assert parser.get('web', 'listen') == '127.0.0.1:8123'
    assert parser.get('web', 'root') == str(demo.WEB_ROOT)
    assert parser.get('scenic', 'pii_key') == demo.DEMO_PII_KEY


def test_postgresql_config(tmp_path):
    uri = 'postgresql://scenic@db.example:5432/'
    path = demo.write_config(tmp_path, uri=uri)
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    assert parser.get('database', 'uri') == uri
    assert parser.getboolean('database', 'list') is False
    assert parser.get('scenic', 'pii_key')
    # every process clears the others' caches at once (LISTEN/NOTIFY): a
    # price edited in sao is quoted by every worker at its next request
    assert parser.getint('cache', 'clean_timeout') == 0


def test_bench_config_syncs_caches(tmp_path):
    "bench/_measure.py's servers (benches, failover test) use NOTIFY too"
    sys.path.insert(0, str(demo.ROOT / 'bench'))
    try:
        import _measure
    finally:
        sys.path.remove(str(demo.ROOT / 'bench'))
    path = _measure.write_config(tmp_path, 'postgresql://u@h:1/', 'k' * 40)
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    assert parser.getint('cache', 'clean_timeout') == 0


def _gunicorn_worker_init(**env):
    "Run config/ha/gunicorn.conf.py's post_worker_init with env."
    script = """
import runpy, sys
settings = runpy.run_path(sys.argv[1])
class Log:
    def error(self, *args):
        print(args[0] % args[1:], file=sys.stderr)
class Worker:
    log = Log()
settings['post_worker_init'](Worker())
"""
    environment = {k: v for k, v in os.environ.items()
        if not k.startswith(('TRYTOND_', 'DB_'))}
    environment.update(env)
    return subprocess.run([sys.executable, '-c', script,
            str(demo.ROOT / 'config' / 'ha' / 'gunicorn.conf.py')],
        env=environment, capture_output=True, text=True, timeout=60)


def test_ha_gunicorn_refuses_stale_caches():
    "A gunicorn worker on PostgreSQL with clean_timeout != 0 will not start"
    uri = 'postgresql://u@h:1/'
    assert _gunicorn_worker_init(TRYTOND_DATABASE__URI=uri).returncode == 0
    result = _gunicorn_worker_init(TRYTOND_DATABASE__URI=uri,
        TRYTOND_CACHE__CLEAN_TIMEOUT='300')
    assert result.returncode == 3, result.stderr
    assert 'clean_timeout = 300' in result.stderr


def test_logging_config_hides_rpc_arguments():
    "The dispatcher logs RPC arguments (ID numbers) at INFO: keep it quiet."
    logging.config.fileConfig(demo.LOGGING_CONF,
        disable_existing_loggers=False)
    try:
        assert logging.getLogger().level == logging.INFO
        dispatcher = logging.getLogger('trytond.protocols.dispatcher')
        assert not dispatcher.isEnabledFor(logging.INFO)
        assert dispatcher.isEnabledFor(logging.WARNING)
    finally:
        logging.getLogger().handlers.clear()
        logging.getLogger('trytond.protocols.dispatcher').setLevel(
            logging.NOTSET)


def test_demo_users():
    users = dict(demo.demo_users())
    assert users['admin'] == 'admin'
    for login in ['supervisor', 'cashier', 'finance', 'marketing', 'gate']:
        assert users[login] == f'{login}-demo'


def test_server_command_preloads_database(tmp_path):
    argv, env = demo.server_command(tmp_path / 'c.conf', 'demo')
    assert argv[argv.index('-d') + 1] == 'demo'
    assert env['TRYTOND_LOGGING_CONFIG'] == str(demo.LOGGING_CONF)
    argv, env = demo.server_command(tmp_path / 'c.conf', 'demo',
        uri='postgresql://u@h:1/')
    # PostgreSQL: the booking engine in front of trytond's application
    http, _ = demo.engine_http()
    assert argv[0].endswith(http)
    assert any(demo.ENGINE_APP.startswith(a) for a in argv)
    assert env['TRYTOND_DATABASE_NAMES'] == 'demo'
    assert env['TRYTOND_DATABASE__URI'] == 'postgresql://u@h:1/'


def _load_scenic_ticket(conf):
    "Load scenic_ticket as a server does, with the configuration conf."
    import subprocess
    import sys
    return subprocess.run([sys.executable, '-c', 'import sys; '
            'from trytond import config; config.update_etc(sys.argv[1]); '
            'from trytond.pool import Pool; Pool.start()', str(conf)],
        capture_output=True, text=True, timeout=120)


def test_demo_key_refused_outside_a_demo(tmp_path):
    "Issue 15 item 9: the published key works only where it says demo."
    path = demo.write_config(tmp_path / 'var')
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    assert parser.getboolean('scenic', 'demo') is True
    assert _load_scenic_ticket(path).returncode == 0
    parser.remove_option('scenic', 'demo')
    with open(path, 'w') as file:
        parser.write(file)
    result = _load_scenic_ticket(path)
    assert result.returncode != 0
    assert "demo's published key" in result.stderr
    parser.set('scenic', 'pii_key', 'a-secret-of-this-deployment-' + 'x' * 20)
    with open(path, 'w') as file:
        parser.write(file)
    assert _load_scenic_ticket(path).returncode == 0


def test_server_scrubs_its_logs(tmp_path):
    """trytond's RPC argument log (even at ERROR, with a traceback) and the
    request lines lose ID numbers and phones once the modules load."""
    import subprocess
    import sys
    path = demo.write_config(tmp_path / 'var')
    script = '''
import logging, sys
from trytond import config
config.update_etc(sys.argv[1])
from trytond.pool import Pool
Pool.start()
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
log = logging.getLogger('trytond.protocols.dispatcher')
log.info('%s.%s%s', 'model.scenic.visitor', 'create',
    ([{'id_number': '11010519491231002'}],))
log.error('call %r', ('13800138000',))
logging.getLogger('werkzeug').info(
    '"GET /demo/scenic/v1/orders?id_number=11010519491231002X HTTP/1.1" 405')
'''
    result = subprocess.run([sys.executable, '-c', script, str(path)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert 'model.scenic.visitor' in out and '405' in out
    assert '1101051949' not in out and '13800138000' not in out, out


def test_demo_reads_load_demo_by_import():
    "demo.py imports load_demo's constants; neither needs trytond to load"
    assert demo.box_gates() == [('MAIN-IN', [1, 2]), ('MAIN-OUT', [3, 4])]
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import demo; "
        "assert 'trytond' not in sys.modules, 'trytond imported'")
    subprocess.run([sys.executable, '-c', code, str(demo.LOAD_DEMO.parent)],
        check=True)
