"""The demo's gate box, as `make demo` runs it: enrolled by scripts/demo.py,
started with `scenic-iotbox run`, serving MAIN-IN and MAIN-OUT with the
simulated turnstile; the demo's annual card goes in and out and the gate
staff see the headcount follow in the back office."""
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

import demo
import pgcluster
from tryton_rpc import TrytonRPC

ANNUAL_CARD = '04A1B2C3D4E5F6'  # scripts/load_demo.py DEMO_CARDS


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


def _scan(url, gate, data):
    request = urllib.request.Request(f'{url}/scan', method='POST',
        data=json.dumps({'gate': gate, 'lane': 1, 'medium': 'rfid',
                'data': data}).encode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _until(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    return condition()


def test_demo_box_admits_the_demo_card(demo_server, tmp_path):
    "The demo box lets the demo annual card in and out; the headcount follows"
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
    log = tmp_path / 'box.log'
    with open(log, 'wb') as out:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT)
    url = f'http://{listen}'
    try:
        status = _until(lambda: (s := _get(f'{url}/status'))
            and s['online'] and s['counts']['gates'] == 2 and s)
        assert status, log.read_text()
        assert status['enrolled'] and status['counts']['cards'] == 2

        rpc = TrytonRPC(demo_server.url, demo_server.database, 'gate',
            'gate-demo')
        main, = rpc.model('scenic.zone', 'search', [('code', '=', 'MAIN')],
            0, None, None)

        def inside():
            return rpc.model('scenic.zone', 'read', [main],
                ['inside'])[0]['inside']
        before = inside()

        answer = _scan(url, 'MAIN-IN', ANNUAL_CARD)
        assert (answer['decision'], answer['reason']) == ('open', 'ok')
        assert answer['turnstile'] == {'ok': True, 'channel': 1,
            'passages': 1}
        assert _until(lambda: inside() == before + 1), inside()

        answer = _scan(url, 'MAIN-OUT', ANNUAL_CARD)
        assert (answer['decision'], answer['turnstile']['channel']) == (
            'open', 3)
        assert _until(lambda: inside() == before), inside()

        box, = rpc.model('scenic.gate.box', 'search_read', [], 0, None,
            None, ['online', 'alarm'])
        assert (box['online'], box['alarm']) == (True, None)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, log.read_text()
