"""The gate staff's view of the live headcount: the demo's box admits the
demo annual card at MAIN-IN, and sao's Zone Load list (Scenic → Zone Load)
shows the main park with that many people inside as the ERP counts them.
Saves test-artifacts/sao_zone_load.png.  The card goes out again at the end.
"""
import pytest

import demo
import sao
from proteus import Model

from back_office import back_office
from demo_box import until, zone_inside

LOGIN, PASSWORD = 'gate', 'gate-demo'
UI_TIMEOUT = 30


def test_gate_staff_see_the_headcount(demo_server, demo_box, make_browser,
        artifacts_dir):
    from selenium.webdriver.support.ui import WebDriverWait

    office = back_office(demo_server.url, demo_server.database, LOGIN,
        PASSWORD)
    inside = zone_inside(office)
    before = inside()
    answer = demo_box.tap_annual_card('MAIN-IN')
    assert answer['decision'] == 'open', answer
    try:
        assert until(lambda: inside() == before + 1), inside()
        admin = back_office(demo_server.url, demo_server.database,
            'admin', demo.ADMIN_PASSWORD)
        view, = Model.get('ir.ui.view', config=admin).find([
                ('module', '=', 'scenic_gate'),
                ('name', '=', 'zone_load_list')])
        # Column titles in the gate user's language (Chinese in the demo).
        fields = Model.get('scenic.zone', config=office)._fields
        label = {name: fields[name]['string']
            for name in ['code', 'inside', 'warning_level']}
        browser = make_browser(lang='en-US', timeout=UI_TIMEOUT)
        wait = WebDriverWait(browser, UI_TIMEOUT)
        url, database = f'{demo_server.url}/', demo_server.database
        screenshot = artifacts_dir / 'sao_zone_load.png'
        step = 'login'
        try:
            sao.login(browser, wait, url, database, LOGIN, PASSWORD)
            step = 'Zone Load list'
            browser.get(f"{url}#{database}/model/scenic.zone"
                f";views=[{view.id}]")
            wait.until(lambda d: sao.rows(d) >= 4)
            step = 'MAIN row'
            table = wait.until(lambda d: (t := sao.table(d))
                and 'MAIN' in t.get(label['code'], []) and t)
            browser.save_screenshot(str(screenshot))
        except Exception as e:
            browser.save_screenshot(str(screenshot))
            pytest.fail(f"sao: failed at step '{step}' "
                f"({type(e).__name__}); rows seen: "
                f"{sao.safe_rows(browser)}; screenshot {screenshot}\n"
                f"--- server log (tail) ---\n{demo_server.log_tail()}",
                pytrace=False)
        row = table[label['code']].index('MAIN')
        assert table[label['inside']][row] == str(before + 1), table
        assert table[label['warning_level']][row], table
    finally:
        assert demo_box.tap_annual_card('MAIN-OUT')['decision'] == 'open'
        assert until(lambda: inside() == before), inside()
