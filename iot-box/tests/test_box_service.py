"""The whole box: service wiring, the CLI commands, a clean SIGTERM."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from box_fakes import FakeTurnstile, sign_now as sign
from scenic_iotbox import cli
from scenic_iotbox.config import ConfigError, load
from scenic_iotbox.service import (
    DeviceError, Devices, Service, build_devices)

BOX = Path(__file__).resolve().parent.parent


def write_config(tmp_path, erp, listen='127.0.0.1:0', token=True,
        turnstile='none'):
    text = f'''
[erp]
url = "{erp.url}"
database = "demo"
{'enrolment_token = "TOKEN-1"' if token else ''}
timeout = 2

[box]
name = "test-box"
data_dir = "data"
sync_interval = 0.05
heartbeat_interval = 0.2
max_backoff = 0.2

[api]
listen = "{listen}"

[[gates]]
code = "MAIN-IN"
turnstile_lanes = [1, 2, 3, 4]

[[gates]]
code = "MAIN-OUT"

[drivers.turnstile]
driver = "{turnstile}"
'''
    path = tmp_path / 'box.toml'
    path.write_text(text)
    return path


def wait_for(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
        headers={'Content-Type': 'application/json'}, method='POST')
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_whole_path_scan_to_turnstile(tmp_path, fake_erp):
    config = load(write_config(tmp_path, fake_erp))
    turnstile = FakeTurnstile()
    service = Service(config, devices=Devices(turnstile=turnstile))
    service.start()
    try:
        url = service.server.url
        assert wait_for(lambda: get(url + '/status')['gates'][0]['synced'])
        status, body = post(url + '/scan', {'gate': 'MAIN-IN', 'lane': 3,
            'medium': 'qr', 'data': sign(100, type_id=6, persons=10)})
        assert status == 200 and body['decision'] == 'open'
        assert body['persons'] == 10
        assert turnstile.opened == [(3, 10)]
        # uploaded by the loop (kicked by the scan)
        assert wait_for(lambda: body['scan'] in fake_erp.scans)
        assert fake_erp.scans[body['scan']]['persons'] == 10
        assert wait_for(lambda: len(fake_erp.heartbeats) >= 1)
        assert fake_erp.heartbeats[0]['devices'] == [{'kind': 'turnstile',
            'name': 'fake', 'ok': True, 'errors': 0}]
        # a reader on the box goes the same way
        answer = service.on_read('MAIN-IN', 1, 'qr', sign(101))
        assert answer['decision'] == 'open'
        assert turnstile.opened[-1] == (1, 1)
        assert service.on_read('NOPE', 1, 'qr', 'x')['error']['field'] \
            == 'gate'
        status = get(url + '/status')
        assert status['box'] == 42 and status['online'] is True
    finally:
        service.stop()
    service.stop()      # idempotent


def test_build_devices(tmp_path, fake_erp):
    none = load(write_config(tmp_path, fake_erp, turnstile='none'))
    assert build_devices(none).turnstile is None
    # the simulated turnstile comes from the driver registry
    devices = build_devices(load(write_config(tmp_path, fake_erp,
        turnstile='sim')))
    assert devices.status()[0]['kind'] == 'turnstile'
    devices.close()
    with pytest.raises(ConfigError) as info:
        build_devices(load(write_config(tmp_path, fake_erp,
            turnstile='teleporter')))
    assert info.value.key == 'drivers.turnstile.driver'


def test_build_devices_with_a_registry(tmp_path, fake_erp, monkeypatch):
    from scenic_iotbox import service as service_module
    made = []

    def create(kind, name, options):
        if name == 'broken':
            raise OSError('no such port')
        made.append((kind, name, options))
        return FakeTurnstile()

    monkeypatch.setattr(service_module.drivers, 'create', create)
    path = write_config(tmp_path, fake_erp, turnstile='serial')
    path.write_text(path.read_text() + 'port = "/dev/ttyUSB0"\n')
    devices = build_devices(load(path))
    assert made == [('turnstile', 'serial', {'port': '/dev/ttyUSB0'})]
    assert isinstance(devices.turnstile, FakeTurnstile)
    with pytest.raises(DeviceError, match='no such port'):
        build_devices(load(write_config(tmp_path, fake_erp,
            turnstile='broken')))


def test_cli_enrol_sync_status(tmp_path, fake_erp, capsys):
    path = write_config(tmp_path, fake_erp, token=False,
        listen='127.0.0.1:1')
    assert cli.main(['status', '--config', str(path)]) == 0
    assert 'not enrolled' in capsys.readouterr().out
    assert cli.main(['enrol', '--config', str(path), '--token', 'BAD']) == 1
    assert 'Enrolment failed' in capsys.readouterr().err
    assert cli.main(['enrol', '--config', str(path), '--token',
        'TOKEN-1']) == 0
    out = capsys.readouterr().out
    assert 'Enrolled as box 42' in out and 'First sync done' in out
    assert cli.main(['sync', '--config', str(path)]) == 0
    assert cli.main(['status', '--config', str(path), '--json']) == 0
    status = json.loads(capsys.readouterr().out.split('\n', 1)[1])
    assert status['box'] == 42 and status['running'] is False
    assert status['last_sync']
    fake_erp.off()
    assert cli.main(['sync', '--config', str(path)]) == 1


def test_cli_config_error(tmp_path, capsys):
    path = tmp_path / 'box.toml'
    path.write_text('[erp]\nurl = "http://127.0.0.1:8000"\n')
    assert cli.main(['status', '--config', str(path)]) == 2
    assert 'erp.database' in capsys.readouterr().err


def test_run_on_a_busy_address(tmp_path, fake_erp, capsys):
    "Another program on the API's port: a one-line error, exit 1"
    import socket
    with socket.socket() as holder:
        holder.bind(('127.0.0.1', 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = write_config(tmp_path, fake_erp, listen=f'127.0.0.1:{port}')
        assert cli.main(['run', '--config', str(path)]) == 1
    err = capsys.readouterr().err
    assert f'cannot listen on 127.0.0.1:{port}' in err
    assert 'Traceback' not in err


def test_run_and_sigterm(tmp_path, fake_erp):
    path = write_config(tmp_path, fake_erp)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(BOX)] + [p for p in sys.path if p]))
    process = subprocess.Popen([sys.executable, '-m', 'scenic_iotbox',
        '--log-level', 'WARNING', 'run', '--config', str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = process.stdout.readline()
        assert 'serving gates MAIN-IN, MAIN-OUT' in line, (
            line, process.stderr.read() if process.poll() is not None
            else '')
        url = line.strip().rsplit(' ', 1)[1]
        assert wait_for(lambda: get(url + '/status')['gates'][0]['synced'])
        status, body = post(url + '/scan', {'gate': 'MAIN-IN', 'lane': 1,
            'medium': 'qr', 'data': sign(200)})
        assert body['decision'] == 'open'
        assert body['turnstile']['ok'] is False      # driver "none"
        assert wait_for(lambda: body['scan'] in fake_erp.scans)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
