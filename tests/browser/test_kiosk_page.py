"""End to end: the self-service kiosk page in headless Chromium.

A visitor buys one real-name adult ticket on the demo's kiosk (set up with
the demo kiosk key from the address's fragment) by touch: a slot, +1
adult, the ID card on the (simulated) reader, a QR on screen; the QR
decodes to the simulated wallet's pay page, which a second browser (the
visitor's phone) opens and confirms; the kiosk sees the payment and the
demo's printer renders the ticket as a PNG whose QR verifies. The same
card then picks up nothing more (already printed).
"""
import base64
import datetime as dt
import io
import os

import pytest

from scenic_common.idnumber import make_resident_id

from test_counter_page import _element, _keyring, _wait

WAIT = 30
# A card of its own per run (one ticket per ID per day: a demo served
# again with SCENIC_BROWSER_TEST_URL keeps the earlier runs' orders).
CARD = make_resident_id('330106', dt.date(1985, 6, 1), os.getpid() % 997 + 1)


QR_JS = '''
const qr = document.querySelector('#qr');
if (!qr || !qr.getAttribute('src')) return null;
const r = qr.getBoundingClientRect();
return [qr.getAttribute('src'),
    {x: r.left, y: r.top, width: r.width, height: r.height}];
'''


def _click(driver, css):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    _wait(driver).until(EC.element_to_be_clickable(
            (By.CSS_SELECTOR, css))).click()


def test_kiosk_buys_and_prints_a_ticket(demo_server, make_browser):
    from PIL import Image
    from scenic_common import ticketcode
    from scenic_iotbox.drivers.qr import ZxingDecoder
    if demo_server.var_dir is None:
        pytest.skip("needs the demo the tests build (its printer output)")
    prints = demo_server.var_dir / 'prints'
    before = set(prints.glob('ticket-*.png')) if prints.exists() else set()
    kiosk = make_browser(lang='zh-CN', timeout=WAIT)
    base = f'{demo_server.url}/{demo_server.database}'
    try:
        kiosk.get(f'{base}/scenic/kiosk#key=demo-kiosk-key')
        _click(kiosk, '#buy')
        _click(kiosk, '#slots button.slot:not(.full)[data-types~="ADULT"]')
        _click(kiosk, '#types button[id^="plus-ADULT"]')
        assert _element(kiosk, '[id^="count-ADULT"]').text == '1'
        _click(kiosk, '#next')
        _element(kiosk, '#tapcard')
        # The demo's simulated reader (no box configured on this kiosk).
        _element(kiosk, '#demo-card').send_keys(CARD)
        _click(kiosk, '#demo-place')
        # The QR's source and place read in one script: the page re-renders
        # while it polls the payment, so an element reference read twice may
        # point at a node no longer in the document.
        src, rect = _wait(kiosk).until(lambda d: d.execute_script(QR_JS))
        svg = base64.b64decode(src.split(',', 1)[1])
        # The QR on screen, as the phone's camera sees it.
        png = kiosk.get_screenshot_as_png()
        shot = Image.open(io.BytesIO(png))
        ratio = shot.width / kiosk.execute_script('return innerWidth')
        crop = shot.crop(tuple(int(v * ratio) for v in (rect['x'] - 20,
                    rect['y'] - 20, rect['x'] + rect['width'] + 20,
                    rect['y'] + rect['height'] + 20)))
        code_url, = ZxingDecoder().decode(crop.convert('RGB'))
        assert '/scenic/kiosk/simpay/' in code_url, code_url
        assert svg.startswith(b'<svg')

        phone = make_browser(lang='zh-CN', phone=True, timeout=WAIT)
        phone.get(demo_server.url + code_url)
        _click(phone, '#simpay-pay')
        _wait(phone).until(lambda d: '✓' in d.find_element(
                'css selector', '#simpay-text').text)

        done = _wait(kiosk).until(lambda d: d.find_element(
                'css selector', '#printed').text)
        assert '1/1' in done, done

        # The same card at pickup: the order is already printed.
        _click(kiosk, '#home')
        _click(kiosk, '#pickup')
        _element(kiosk, '#demo-card').send_keys(CARD)
        _click(kiosk, '#demo-place')
        _wait(kiosk).until(lambda d: d.find_element(
                'css selector', '#done').text)
        assert '1' in kiosk.find_element('css selector', 'main').text
    finally:
        from pathlib import Path
        artifacts = Path('test-artifacts')
        artifacts.mkdir(exist_ok=True)
        kiosk.save_screenshot(str(artifacts / 'kiosk.png'))

    printed = sorted(set(prints.glob('ticket-*.png')) - before)
    assert len(printed) == 1, printed
    code, = ZxingDecoder().decode(Image.open(printed[0]))
    payload = ticketcode.verify(code, _keyring(demo_server.db),
        now=dt.datetime.now(dt.timezone.utc)).payload
    assert payload.ticket_id
