"""The Live dashboard in Chromium: log in, read the area's headcount, let
the demo box admit a card, see the number change within 10 s; the
screenshot (Chinese labels rendered) is kept in test-artifacts/."""
import re
import time

import pytest

import dashboards_server
from pgcluster import free_port

DEEP_TEXT = """
function deep(node) {
    let text = '';
    if (node.shadowRoot) text += deep(node.shadowRoot);
    for (const child of node.childNodes) {
        text += child.nodeType === 3 ? child.textContent + ' ' : deep(child);
    }
    return text;
}
return deep(document.body);
"""
HEADCOUNT = re.compile(r'Area inside\s+(\d+)\s*/')


def headcount(driver):
    match = HEADCOUNT.search(driver.execute_script(DEEP_TEXT))
    return int(match.group(1)) if match else None


def wait(condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    return condition()


@pytest.fixture
def dashboards(demo_server, tmp_path):
    served = dashboards_server.start(demo_server.db, tmp_path, free_port())
    yield served
    dashboards_server.stop(served)


def test_live_headcount_follows_the_box(dashboards, demo_box, make_browser,
        artifacts_dir):
    from selenium.webdriver.common.by import By
    driver = make_browser(lang='zh-CN')
    driver.get(f'{dashboards.url}/live')
    assert '/login' in driver.current_url     # no data without a login
    driver.find_element(By.NAME, 'username').send_keys(
        dashboards_server.LOGIN)
    driver.find_element(By.NAME, 'password').send_keys(
        dashboards_server.PASSWORD)
    driver.find_element(By.CSS_SELECTOR, 'button, input[type=submit]').click()
    wait(lambda: '/login' not in driver.current_url, 15)
    if not driver.current_url.rstrip('/').endswith('/live'):
        driver.get(f'{dashboards.url}/live')
    ready = wait(lambda: driver.execute_script(
            'return window.Bokeh !== undefined && '
            'Bokeh.documents.length > 0') and headcount(driver) is not None,
        30)
    assert ready, driver.execute_script(DEEP_TEXT)[:2000]
    before = headcount(driver)

    answer = demo_box.tap_annual_card('MAIN-IN')
    if answer['decision'] != 'open':
        answer = demo_box.tap_annual_card('MAIN-OUT')
    assert answer['decision'] == 'open', answer
    tapped = time.monotonic()
    changed = wait(lambda: headcount(driver) != before, 10)
    took = time.monotonic() - tapped
    driver.set_window_size(1400, 1700)
    time.sleep(1.5)  # let the charts' redraw finish for the screenshot
    path = artifacts_dir / 'dashboards-live.png'
    driver.save_screenshot(str(path))
    assert changed, (before, headcount(driver))
    assert took <= 10
    text = driver.execute_script(DEEP_TEXT)
    assert '实时监控' in text and '在园' in text
    print(f"\nLive headcount {before} -> {headcount(driver)} in {took:.1f} s;"
        f" screenshot {path}")
