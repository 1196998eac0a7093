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
import sao

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


def test_marketing_sees_ticket_types(demo_server, browser, artifacts_dir):
    from selenium.webdriver.support.ui import WebDriverWait

    missing = _missing_model()
    if missing:
        pytest.fail(f"cannot run the browser test, missing: {missing}",
            pytrace=False)
    url, database = f'{demo_server.url}/', demo_server.database
    wait = WebDriverWait(browser, UI_TIMEOUT)
    screenshot = artifacts_dir / 'sao_ticket_types.png'
    step = 'login'
    try:
        sao.login(browser, wait, url, database, LOGIN, PASSWORD)
        step = f'list of {MODEL}'
        browser.get(f'{url}#{database}/model/{MODEL}')
        wait.until(lambda d: sao.rows(d) >= MIN_ROWS)
        rows = sao.rows(browser)
        browser.save_screenshot(str(screenshot))
    except Exception as e:
        browser.save_screenshot(str(screenshot))
        pytest.fail(f"sao: failed at step '{step}' ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); rows seen: "
            f"{sao.safe_rows(browser)}; screenshot {screenshot}\n"
            f"--- server log (tail) ---\n{demo_server.log_tail()}",
            pytrace=False)
    assert rows >= MIN_ROWS
