"""The end-to-end gate site: the ERP serving it and boxes (fixtures in
conftest.py; see there)."""
import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

import demo
import pgcluster
from back_office import back_office

DATABASE = 'gate_e2e'
SITE_SCRIPT = Path(__file__).with_name('build_e2e_area.py')
START_TIMEOUT = 90
# Local time at which building the site would risk the slot's day ending
# under the tests (the slot is "today" in Asia/Shanghai).
LATEST_START = (23, 55)


def _run(argv, env, what, timeout=300):
    result = subprocess.run([str(a) for a in argv], env=env, cwd=demo.ROOT,
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout)
    if result.returncode:
        pytest.fail(f"{what} failed ({result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-6000:]}", pytrace=False)
    return result


def _wait_for_local_day():
    """Wait past local midnight if the day is about to end: the site's
    tickets are for today's slot."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo
    now = datetime.now(ZoneInfo('Asia/Shanghai'))
    if (now.hour, now.minute) >= LATEST_START:
        tomorrow = (now + timedelta(days=1)).replace(
            hour=0, minute=0, second=5, microsecond=0)
        time.sleep((tomorrow - now).total_seconds())


class Erp:
    "trytond serving the site's database; stoppable, restartable."

    def __init__(self, conf, listen, log):
        self.conf = conf
        self.listen = listen
        self.url = f'http://{listen}'
        self.log = log
        self.process = None

    def start(self):
        argv, env = demo.server_command(self.conf, DATABASE,
            listen=self.listen)
        with open(self.log, 'ab') as log:
            self.process = subprocess.Popen(argv, env=env, cwd=demo.ROOT,
                stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        probe = f'{self.url}/{DATABASE}/scenic/gate/v1/sync'
        while True:
            try:
                urllib.request.urlopen(probe, timeout=10)
            except urllib.error.HTTPError as error:
                if error.code == 401:  # served, and asks for a box
                    return self
            except OSError:
                pass
            if self.process.poll() is not None or \
                    time.monotonic() > deadline:
                pytest.fail(f"trytond did not serve {probe}:\n"
                    + Path(self.log).read_text(errors='replace')[-6000:],
                    pytrace=False)
            time.sleep(0.3)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class Site:
    erp: Erp
    data: dict
    var_dir: Path

    def model(self, name, login='admin', password=demo.ADMIN_PASSWORD):
        "A model of the back office, as `login` sees it (proteus)."
        from proteus import Model
        return Model.get(name, config=back_office(self.erp.url, DATABASE,
                login, password))

    def ticket(self, kind, index=0):
        return self.data['tickets'][kind][index]


def build_site(var_dir):
    """A fresh database with the site (build_e2e_area.py) in var_dir, served: the
    Site (stop its erp when done)."""
    _wait_for_local_day()
    listen = f'127.0.0.1:{pgcluster.free_port()}'
    conf = demo.write_config(var_dir, listen=listen)
    (var_dir / 'admin-password').write_text(demo.ADMIN_PASSWORD + '\n')
    demo.ensure_database(var_dir, DATABASE)
    env = demo.admin_env(var_dir)
    _run([demo.BIN / 'trytond-admin', '-c', conf, '-d', DATABASE,
            '-u', 'scenic_gate', '--activate-dependencies',
            '--email', demo.ADMIN_EMAIL], env, 'trytond-admin')
    site_json = var_dir / 'site.json'
    _run([sys.executable, SITE_SCRIPT, '-c', conf, '-d', DATABASE,
            '--out', site_json], env, 'building the site')
    erp = Erp(conf, listen, var_dir / 'server.log').start()
    return Site(erp, json.loads(site_json.read_text()), var_dir)


STAFF_TOKEN = 'gate-site-staff-token'
BOX_TOML = """
[erp]
url = "{url}"
database = "{database}"
enrolment_token = "{token}"
timeout = 5

[box]
name = "{name}"
data_dir = "data"
timezone = "Asia/Shanghai"
sync_interval = 3600              # the tests call sync() themselves
heartbeat_interval = 0.05
max_backoff = 0.2

[api]
listen = "127.0.0.1:0"
staff_token = "{staff_token}"

[[gates]]
code = "MAIN-IN"
turnstile_lanes = [1, 2]

[[gates]]
code = "MAIN-OUT"
turnstile_lanes = [3, 4]

[[gates]]
code = "MUSEUM"
turnstile_lanes = [5]

[drivers.turnstile]
driver = "sim"
lanes = 5
passage_delay = 0.02
ack_timeout = 1.0
"""


class Box:
    "A running box: its API, its turnstile simulator, sync on demand."

    def __init__(self, service):
        self.service = service
        self.url = f'http://127.0.0.1:{service.server.server_address[1]}'

    @property
    def simulator(self):
        return self.service.devices.turnstile.simulator

    def entries(self, channel):
        return self.simulator.lanes[channel].entries

    def request(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        headers = {'Content-Type': 'application/json'}
        if body and 'binding_confirmed' in body:    # the staff screen
            headers['Authorization'] = f'Bearer {STAFF_TOKEN}'
        request = urllib.request.Request(self.url + path, data=data,
            method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def scan(self, gate, data, medium='qr', lane=1, **extra):
        "POST /scan; the answer's JSON (fails unless 200)."
        status, body = self.request('POST', '/scan', dict(extra,
                gate=gate, lane=lane, medium=medium, data=data))
        assert status == 200, body
        return json.loads(body)

    def status(self):
        status, body = self.request('GET', '/status')
        assert status == 200, body
        return json.loads(body)

    def sync(self, ok=True):
        """One round now: upload, sync, heartbeat, as the box's loop does
        (a failure makes it offline); `ok`: fail the test if it failed."""
        engine = self.service.sync
        engine.step()
        if ok:
            assert engine.failures == 0, engine.last_error
        return engine.online

    def wait_passages(self, channel, count, timeout=10):
        "Until the simulator counted `count` people through `channel`."
        deadline = time.monotonic() + timeout
        while self.entries(channel) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.entries(channel)


def start_box(site, directory, token, name):
    from scenic_iotbox.config import load
    from scenic_iotbox.service import Service
    directory.mkdir()
    path = directory / 'box.toml'
    path.write_text(BOX_TOML.format(url=site.erp.url, database=DATABASE,
            token=token, name=name, staff_token=STAFF_TOKEN))
    service = Service(load(path))
    service.start()
    box = Box(service)
    box.sync()
    return box


def photo(seed=0):
    "A small PNG, as a lane camera or handheld would send (base64)."
    from scenic_common.ticketcode import qr_png_bytes
    return base64.b64encode(qr_png_bytes(f'portrait-{seed}')).decode()
