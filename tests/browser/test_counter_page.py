"""End to end: the ticket window's counter page in headless Chromium.

The demo cashier (shift open on window 1 by the demo loader) sells two
real-name adult tickets for cash: the desk ID reader is a keyboard wedge
(it types the number and Enter into the focused field), the change shows,
the demo's simulated printer renders the tickets as PNG files under the
demo's var/prints, and the QR decoded from each printed image with the
box's decoder verifies with the area's keys and opens a gate (the decision
the boxes make, at the slot's time).
"""
import base64
import datetime as dt
import os
import sqlite3
from decimal import Decimal

import pytest

from scenic_common import gate, ticketcode
from scenic_common.idnumber import make_resident_id

WAIT = 30
IDS = [make_resident_id('330106', dt.date(1979, 3, 8), 211),
    make_resident_id('330106', dt.date(1981, 11, 2), 322)]


def _wait(driver):
    "At most WAIT seconds; the page re-renders, so elements may go stale."
    from selenium.common.exceptions import (
        NoSuchElementException, StaleElementReferenceException)
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, WAIT, poll_frequency=0.2,
        ignored_exceptions=(NoSuchElementException,
            StaleElementReferenceException))


def _element(driver, css):
    from selenium.webdriver.common.by import By
    return _wait(driver).until(
        lambda d: d.find_element(By.CSS_SELECTOR, css))


def _keys(driver, css, *keys):
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.common.by import By
    element = _wait(driver).until(EC.element_to_be_clickable(
            (By.CSS_SELECTOR, css)))
    element.send_keys(*keys)


def _keyring(db_path):
    keyring = ticketcode.Keyring()
    with sqlite3.connect(db_path) as db:
        for key_id, public in db.execute(
                'SELECT key_id, public_key FROM scenic_signing_key'):
            keyring.add(key_id, base64.b64decode(public))
    return keyring


def test_counter_sells_two_real_name_tickets(demo_server, make_browser,
        tmp_path):
    from selenium.webdriver.common.keys import Keys
    if demo_server.var_dir is None:
        pytest.skip("needs the demo the tests build (its printer output)")
    prints = demo_server.var_dir / 'prints'
    before = set(prints.glob('ticket-*.png')) if prints.exists() else set()
    driver = make_browser(lang='zh-CN', timeout=WAIT)
    try:
        driver.get(f'{demo_server.url}/{demo_server.database}/scenic/counter')
        _keys(driver, '#login', 'cashier')
        _keys(driver, '#password', 'cashier-demo', Keys.ENTER)
        # The shift is open: the sell screen waits for keys.
        _element(driver, '#types li')
        _wait(driver).until(lambda d: '成人票' in d.find_element(
                'css selector', '#types').text)
        # Keystrokes: 1, 1, Enter, Enter, plus the two ID reads and the
        # cash tendered (one adult: 1, Enter, Enter + its read).
        for number in IDS:
            _keys(driver, '#idcard', '1')           # 1: one adult
            _keys(driver, '#idcard', number, Keys.ENTER)   # the ID read
        _keys(driver, '#idcard', Keys.ENTER)        # Enter: to payment
        total = Decimal(_element(driver, '#total').text.split('¥')[1])
        _keys(driver, '#tendered', f'{total + 50:.2f}', Keys.ENTER)
        change = _wait(driver).until(lambda d: d.find_element(
                'css selector', '#change').text)
        assert '50.00' in change, change
        driver.save_screenshot(str(tmp_path / 'counter.png'))
    finally:
        from pathlib import Path
        artifacts = Path('test-artifacts')
        artifacts.mkdir(exist_ok=True)
        driver.save_screenshot(str(artifacts / 'counter_sale.png'))

    printed = sorted(set(prints.glob('ticket-*.png')) - before)
    assert len(printed) == 2, printed
    from PIL import Image
    from scenic_iotbox.drivers.qr import ZxingDecoder
    decoder = ZxingDecoder()
    keyring = _keyring(demo_server.db)
    tickets = set()
    for path in printed:
        code, = decoder.decode(Image.open(path))
        verification = ticketcode.verify(code, keyring,
            now=dt.datetime.now(dt.timezone.utc))
        payload = verification.payload
        at = payload.valid_from + dt.timedelta(minutes=1)
        verification = ticketcode.verify(code, keyring, now=at)
        assert verification.ok, verification.message
        decision = gate.decide_ticket(verification,
            gate.TicketTypeInfo(id=payload.ticket_type_id),
            gate.GateInfo(id=1), now=at)
        assert decision.opened, decision.message
        tickets.add(payload.ticket_id)
    assert len(tickets) == 2


def test_counter_reads_the_id_card_through_the_box(demo_server,
        make_browser):
    """The desk reader on the counter PC's box (GET /idcard, token and
    origin checked, the browser's preflight answered): one adult ticket
    with 1, the card placed on the reader, Enter, Enter."""
    from selenium.webdriver.common.keys import Keys

    from scenic_iotbox.api import ApiServer, BoxApp
    from scenic_iotbox.drivers.idcard import (
        IDCardData, IDCardPoller, SimulatedIDCardReader)
    from scenic_iotbox.drivers.printer import TicketPrinter
    token = 'counter-box-token-0123456789'
    reader = SimulatedIDCardReader()
    printer = TicketPrinter.memory()
    # A desk box: no gate, so neither validator nor store is used.
    box = ApiServer(('127.0.0.1', 0), BoxApp(None, None, [],
            api_token=token, allowed_origins=[demo_server.url],
            printer=printer, idcard=IDCardPoller(reader)))
    box.start()
    number = make_resident_id('330106', dt.date(1983, 2, 14),
        os.getpid() % 997 + 1)
    driver = make_browser(lang='zh-CN', timeout=WAIT)
    try:
        driver.get(f'{demo_server.url}/{demo_server.database}/scenic/counter')
        driver.execute_script(
            "localStorage.setItem('scenic.counter.box', arguments[0]);"
            "localStorage.setItem('scenic.counter.boxtoken', arguments[1]);",
            box.url, token)
        _keys(driver, '#login', 'cashier')
        _keys(driver, '#password', 'cashier-demo', Keys.ENTER)
        _wait(driver).until(lambda d: '成人票' in d.find_element(
                'css selector', '#types').text)
        _keys(driver, '#idcard', '1')
        reader.place(IDCardData('张三', number))
        _wait(driver).until(lambda d: number[-4:] in d.find_element(
                'css selector', '#cart').text)
        reader.take()
        _keys(driver, '#idcard', Keys.ENTER)
        _keys(driver, '#tendered', Keys.ENTER)
        sold = _wait(driver).until(lambda d: d.find_element(
                'css selector', '#last').text)
        assert '1' in sold, sold
    finally:
        box.stop()
    assert reader.counters['card_reads'] >= 1
