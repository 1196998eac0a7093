"""End to end: sao served by trytond on the session's fresh demo database,
in headless Chromium.

Uses the ``demo_server`` and ``make_browser`` fixtures of conftest.py (the
demo is built once per session with the code of `make demo`, never touching
var/db), logs in as the marketing user and checks that the ticket type list
shows the demo's ticket types.  Saves test-artifacts/sao_ticket_types.png.

Needs /usr/bin/chromium and /usr/bin/chromedriver (`make browser-deps`).
Every wait is bounded; on failure the message carries the server's log.
Only reads the database: the other modules' bookings do not change the
ticket types, so the order of the tests does not matter.
"""
import re

import pytest

import demo

LOGIN, PASSWORD = 'marketing', 'marketing-demo'
MODEL = 'scenic.ticket.type'
MIN_ROWS = 6
UI_TIMEOUT = 30
ADDONS = demo.ROOT / 'addons' / 'scenic_ticket'


def _missing_model():
    if not any(re.search(r"__name__\s*=\s*['\"]%s['\"]" % re.escape(MODEL),
                p.read_text()) for p in ADDONS.glob('*.py')):
        return f"model {MODEL} in {ADDONS}"


@pytest.fixture
def browser(make_browser):
    "A desktop-sized Chromium speaking English."
    return make_browser(lang='en-US', timeout=UI_TIMEOUT)


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

    missing = _missing_model()
    if missing:
        pytest.fail(f"cannot run the browser test, missing: {missing}",
            pytrace=False)
    url, database = f'{demo_server.url}/', demo_server.database
    wait = WebDriverWait(browser, UI_TIMEOUT)
    screenshot = artifacts_dir / 'sao_ticket_types.png'
    step = 'opening sao'
    try:
        browser.get(f'{url}#{database}')
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
        browser.get(f'{url}#{database}/model/{MODEL}')
        wait.until(lambda d: _rows(d) >= MIN_ROWS)
        rows = _rows(browser)
        browser.save_screenshot(str(screenshot))
    except Exception as e:
        browser.save_screenshot(str(screenshot))
        pytest.fail(f"sao: failed at step '{step}' ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); rows seen: "
            f"{_safe_rows(browser)}; screenshot {screenshot}\n"
            f"--- server log (tail) ---\n{demo_server.log_tail()}",
            pytrace=False)
    assert rows >= MIN_ROWS


def _safe_rows(driver):
    try:
        return _rows(driver)
    except Exception:
        return '?'
