"""The dashboards as `make demo` serves them, for the tests: `panel serve`
(dashboards/serve.py's command) on a free loopback port, reading the demo
database the tests built, behind a password file."""
import http.cookiejar
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'dashboards'))
import serve  # noqa: E402 (dashboards/)

LOGIN, PASSWORD = 'duty', 'duty-test-pass'


@dataclass
class Dashboards:
    url: str
    log: Path
    process: subprocess.Popen

    def opener(self):
        "An HTTP client with a cookie jar (not logged in)."
        return urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def login(self, opener):
        data = urllib.parse.urlencode(
            {'username': LOGIN, 'password': PASSWORD}).encode()
        with opener.open(f'{self.url}/login', data=data, timeout=30) as r:
            return r.status, r.geturl()


def start(db_path, tmp_path, port):
    users = serve.write_users(tmp_path / 'users.json', {LOGIN: PASSWORD})
    listen = f'127.0.0.1:{port}'
    argv, env = serve.command(f'sqlite:///{db_path}', listen, users, poll=1)
    log = tmp_path / 'dashboards.log'
    with open(log, 'wb') as out:
        process = subprocess.Popen(argv, env=env, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f'http://{listen}'
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f'{url}/login', timeout=5):
                return Dashboards(url, log, process)
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.3)
    process.terminate()
    raise RuntimeError("the dashboards did not start:\n"
        + log.read_text(errors='replace')[-4000:])


def stop(dashboards):
    dashboards.process.terminate()
    try:
        dashboards.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        dashboards.process.kill()
        dashboards.process.wait()
