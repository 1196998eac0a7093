"""End to end: a fresh demo database, trytond serving sao, headless Chromium.

Builds the demo in a temporary directory with the same code as `make demo`
(scripts/demo.py; never touches var/db), logs in as the marketing user and
checks that the ticket type list shows the demo's ticket types.  Saves
test-artifacts/sao_ticket_types.png.

Needs /usr/bin/chromium and /usr/bin/chromedriver (`make browser-deps`).
Every wait is bounded; on failure the message carries the server's log.
"""
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import demo
import pgcluster

CHROMIUM = Path('/usr/bin/chromium')
CHROMEDRIVER = Path('/usr/bin/chromedriver')
DATABASE = 'demo'
LOGIN, PASSWORD = 'marketing', 'marketing-demo'
MODEL = 'scenic.ticket.type'
MIN_ROWS = 6
SERVER_START_TIMEOUT = 90
UI_TIMEOUT = 30
ADDONS = demo.ROOT / 'addons' / 'scenic_ticket'


def _missing_prerequisites():
    missing = []
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing.append(f"{CHROMIUM} and {CHROMEDRIVER} (Debian packages "
            "chromium, chromium-driver: run `make browser-deps`)")
    if not (demo.WEB_ROOT / 'index.html').exists():
        missing.append(f"{demo.WEB_ROOT}/index.html (run `make setup`)")
    if not demo.LOAD_DEMO.exists():
        missing.append(f"{demo.LOAD_DEMO} (the demo data loader)")
    if not any(re.search(r"__name__\s*=\s*['\"]%s['\"]" % re.escape(MODEL),
                p.read_text()) for p in ADDONS.glob('*.py')):
        missing.append(f"model {MODEL} in {ADDONS}")
    return missing


def _log_tail(path, chars=6000):
    try:
        return Path(path).read_text(errors='replace')[-chars:]
    except OSError:
        return '(no server log)'


@pytest.fixture(scope='module')
def demo_server(tmp_path_factory):
    "Base URL of trytond serving a fresh demo database; its log path."
    missing = _missing_prerequisites()
    if missing:
        pytest.fail("cannot run the browser test, missing:\n  "
            + "\n  ".join(missing), pytrace=False)
    var_dir = tmp_path_factory.mktemp('demo-var')
    port = pgcluster.free_port()
    listen = f'127.0.0.1:{port}'
    try:
        conf = demo.prepare(var_dir, DATABASE, listen, quiet=True)
    except demo.DemoError as e:
        pytest.fail(f"building the demo database failed: {e}", pytrace=False)
    argv, env = demo.server_command(conf, DATABASE, listen=listen)
    log_path = var_dir / 'server.log'
    with open(log_path, 'wb') as log:
        server = subprocess.Popen(argv, env=env, cwd=demo.ROOT,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://{listen}/'
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if server.poll() is not None:
                pytest.fail(f"trytond exited with {server.returncode}:\n"
                    + _log_tail(log_path), pytrace=False)
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if b'tryton' in response.read().lower():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"trytond did not serve {url} within "
                    f"{SERVER_START_TIMEOUT} s:\n" + _log_tail(log_path),
                    pytrace=False)
            time.sleep(0.5)
        yield url, log_path
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ['--headless=new', '--no-sandbox', '--disable-gpu',
            '--disable-dev-shm-usage', '--disable-background-networking',
            '--disable-component-update', '--disable-sync',
            '--no-first-run', '--window-size=1400,900',
            '--lang=en-US', f'--user-data-dir={tmp_path / "chromium"}']:
        options.add_argument(argument)
    # An explicit driver path: selenium-manager never downloads anything.
    service = Service(executable_path=str(CHROMEDRIVER),
        log_output=str(tmp_path / 'chromedriver.log'))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(UI_TIMEOUT)
    driver.set_script_timeout(UI_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def _rows(driver):
    "Data rows of the list in the active tab."
    return driver.execute_script("""
        const pane = document.querySelector('#tabs .tab-pane.active')
            || document.querySelector('.tab-pane.active');
        if (!pane) { return -1; }
        return pane.querySelectorAll(
            '.treeview tbody > tr:not(.more-row)').length;
        """)


def test_marketing_sees_ticket_types(demo_server, browser, artifacts_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    url, log_path = demo_server
    wait = WebDriverWait(browser, UI_TIMEOUT)
    screenshot = artifacts_dir / 'sao_ticket_types.png'
    step = 'opening sao'
    try:
        browser.get(f'{url}#{DATABASE}')
        step = 'login dialog'
        login = wait.until(EC.visibility_of_element_located((By.ID, 'login')))
        login.send_keys(LOGIN, Keys.ENTER)
        step = 'password dialog'
        password = wait.until(EC.visibility_of_element_located(
                (By.CSS_SELECTOR, 'input[type=password]')))
        password.send_keys(PASSWORD, Keys.ENTER)
        step = 'menu after login'
        wait.until(EC.invisibility_of_element_located(
                (By.CSS_SELECTOR, 'input[type=password]')))
        wait.until(lambda d: d.execute_script(
                "return document.querySelectorAll("
                "'#menu .treeview tbody > tr').length") > 0)
        step = f'list of {MODEL}'
        browser.get(f'{url}#{DATABASE}/model/{MODEL}')
        wait.until(lambda d: _rows(d) >= MIN_ROWS)
        rows = _rows(browser)
        browser.save_screenshot(str(screenshot))
    except Exception as e:
        browser.save_screenshot(str(screenshot))
        pytest.fail(f"sao: failed at step '{step}' ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); rows seen: "
            f"{_safe_rows(browser)}; screenshot {screenshot}\n"
            f"--- server log (tail) ---\n{_log_tail(log_path)}",
            pytrace=False)
    assert rows >= MIN_ROWS


def _safe_rows(driver):
    try:
        return _rows(driver)
    except Exception:
        return '?'
