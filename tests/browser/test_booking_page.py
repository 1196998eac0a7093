"""End to end: the public booking page and the pickup page in a phone-sized
headless Chromium, against trytond serving the session's fresh demo database.

Uses the ``demo_server`` and ``make_browser`` fixtures of conftest.py: the
demo is built once per session (trytond-admin, then scripts/load_demo.py)
and served by trytond on a free port; Debian's Chromium is driven through
Debian's ChromeDriver (never downloaded). Screenshots go to
test-artifacts/booking_*.png and pickup*.png. Every wait is bounded; a
failure carries the page's console and the tail of the server's log.

The database is shared with the other tests of the session, which may run
in any order: each test books on its own day with its own ID numbers, and
the tests that need a paid order (ID limit, pickup) use the one booked by
the first test, or book one through the API when it has not run.
"""
import contextlib
import datetime as dt
import json
import sqlite3
import urllib.error
import urllib.request
import uuid

import pytest

from scenic_common.idnumber import make_resident_id, mask

API_KEY = 'demo-web-key'
WAIT = 20             # seconds, the bound of every wait in the browser

VISITOR_ID = make_resident_id('330106', dt.date(1988, 5, 20), 517)
VISITOR_NAME = '王小明'
CONTACT_NAME = '王小明'
CONTACT_PHONE = '13800138000'
# The visitor of the order booked through the API when the page's first
# test did not book one (yet): another ID, so that test can still book
# VISITOR_ID on the same day when it runs later.
API_VISITOR_ID = make_resident_id('330106', dt.date(1986, 2, 14), 608)
# The paid order of the first test (or of ensure_booked): reference, date,
# ID number, phone.  Shared between the tests, whatever their order.
BOOKED = {}


# --- the server and the browser ---------------------------------------------

@pytest.fixture
def server(demo_server):
    """The session's demo server: url (no trailing slash), database, log,
    db (its SQLite file, or None)."""
    return demo_server


@pytest.fixture
def browser(make_browser):
    "A Chinese phone (390 × 844, touch): navigator.language is zh-CN."
    return make_browser(lang='zh-CN', phone=True, timeout=WAIT)


# --- helpers ----------------------------------------------------------------------

def _wait(driver):
    "At most WAIT seconds; the page re-renders, so elements may go stale."
    from selenium.common.exceptions import (
        NoSuchElementException, StaleElementReferenceException)
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, WAIT, poll_frequency=0.2,
        ignored_exceptions=(NoSuchElementException,
            StaleElementReferenceException))


def _by_css(driver, css):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, css)


def _all_css(driver, css):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, css)


def _visible(driver, css):
    "Wait until an element is displayed; return it."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    return _wait(driver).until(
        EC.visibility_of_element_located((By.CSS_SELECTOR, css)),
        f"{css} not visible within {WAIT} s")


def text(driver, css):
    "The text of a displayed element (looked up again if re-rendered)."
    def visible_text(d):
        element = _by_css(d, css)
        return element.is_displayed() and element.text
    return _wait(driver).until(visible_text, f"{css} not visible")


def _console(driver):
    try:
        return driver.get_log('browser')
    except Exception:
        return []


def _severe(entries):
    return [e for e in entries if e.get('level') == 'SEVERE']


def shot(driver, artifacts_dir, name):
    path = artifacts_dir / name
    driver.save_screenshot(str(path))
    return path


@contextlib.contextmanager
def diagnostics(driver, server, artifacts_dir, name):
    """On failure: a screenshot, the page's console and the server log."""
    path = artifacts_dir / f'FAILED_{name}.png'
    path.unlink(missing_ok=True)  # of an earlier run
    try:
        yield
    except Exception as exc:
        try:
            driver.save_screenshot(str(path))
        except Exception:
            path = '(no screenshot)'
        console = '\n'.join(f"{e.get('level')}: {e.get('message')}"
            for e in _console(driver)) or '(empty)'
        pytest.fail(f"{name}: {type(exc).__name__}: {exc}\n"
            f"screenshot: {path}\n--- browser console ---\n{console}\n"
            f"--- server log (tail) ---\n{server.log_tail()}",
            pytrace=True)


def page_config(driver):
    return driver.execute_script("return JSON.parse("
        "document.getElementById('scenic-config').textContent)")


def open_booking(driver, server):
    driver.get(f'{server.url}/{server.database}/scenic/book')
    _visible(driver, '#booking-form')
    # The slots of the first day that can still be booked load by
    # themselves.
    _wait(driver).until(lambda d: d.execute_script(
        "return !document.querySelector('.slots-loading') && Boolean("
        "document.querySelector('.slot, #sec-slot .muted'))"),
        "the slots did not load")


def add_days(iso, days):
    return (dt.date.fromisoformat(iso) + dt.timedelta(days=days)).isoformat()


def choose_day(driver, date):
    click(driver, f'button[data-date="{date}"]')
    _wait(driver).until(lambda d: _by_css(
        d, f'button[data-date="{date}"]').get_attribute('aria-pressed')
        == 'true' and _all_css(d, '.slot'), f"slots of {date} not shown")


def choose_first_slot(driver):
    "The first open slot of the whole area (not a zone's): its id."
    slot = next(s for s in _all_css(driver, '.slot-group')[0]
        .find_elements('css selector', '.slot') if s.is_enabled())
    slot_id = int(slot.get_attribute('data-slot-id'))
    click(driver, f'#slot-{slot_id}')
    _wait(driver).until(lambda d: _by_css(
        d, f'#slot-{slot_id}').get_attribute('aria-pressed') == 'true')
    _visible(driver, '#inc-ADULT')
    return slot_id


def click(driver, css):
    """Click like a user: the element in the middle of the screen first
    (the sticky bar with the total covers the bottom)."""
    def attempt(d):
        # Again if the page re-rendered (after a load) under our feet.
        element = _by_css(d, css)
        d.execute_script(
            "arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()
        return element
    return _wait(driver).until(attempt, f"could not click {css}")


def fill(driver, css, text):
    def attempt(d):
        element = _by_css(d, css)
        element.clear()
        element.send_keys(text)
        return element.get_attribute('value') == text and element
    return _wait(driver).until(attempt, f"could not fill {css}")


def fill_adult(driver, name, id_number, contact=CONTACT_NAME,
        phone=CONTACT_PHONE):
    click(driver, '#inc-ADULT')
    _visible(driver, '#v-ADULT-0-name')
    fill(driver, '#v-ADULT-0-name', name)
    fill(driver, '#v-ADULT-0-id_number', id_number)
    fill(driver, '#contact-name', contact)
    fill(driver, '#contact-phone', phone)


def scroll_to(driver, css):
    driver.execute_script("document.querySelector(arguments[0])"
        ".scrollIntoView({block: 'center'})", css)


def count_posts(driver):
    "Count the page's POST requests from now on."
    driver.execute_script("""
        window.__posts = 0;
        const original = window.fetch;
        window.fetch = (url, init) => {
            if (init && init.method === 'POST') { window.__posts++; }
            return original(url, init);
        };""")


def api(server, method, path, body=None, headers=None):
    "(status, JSON) of a call to the booking API."
    request = urllib.request.Request(
        f'{server.url}/{server.database}/scenic/v1{path}', method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={'Authorization': f'Bearer {API_KEY}',
            'Content-Type': 'application/json', **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b'null')


def slot_available(server, date, slot_id):
    status, data = api(server, 'GET', f'/availability?date={date}')
    assert status == 200, data
    return next(s['available'] for s in data['slots'] if s['id'] == slot_id)


def ensure_booked(server, today):
    """What the first test booked; books an order through the API when
    that test did not run (yet) or failed before booking."""
    if 'order' in BOOKED:
        return BOOKED
    date = add_days(today, 1)
    status, data = api(server, 'GET', f'/availability?date={date}')
    assert status == 200, data
    slot = next(s for s in data['slots'] if s['zone'] is None
        and s['available'] > 0)
    status, order = api(server, 'POST', '/orders', {
            'slot': slot['id'],
            'items': [{'ticket_type': 'ADULT', 'visitors': [{
                            'name': VISITOR_NAME, 'id_type': 'resident_id',
                            'id_number': API_VISITOR_ID}]}],
            'contact': {'name': CONTACT_NAME, 'phone': CONTACT_PHONE},
            }, {'Idempotency-Key': str(uuid.uuid4())})
    assert status == 201, order
    status, order = api(server, 'POST', f"/orders/{order['order']}/pay",
        {'provider': 'simulated', 'amount': order['total']})
    assert status == 200, order
    BOOKED.update(order=order['order'], date=date, id=API_VISITOR_ID,
        phone=CONTACT_PHONE)
    return BOOKED


def bad_checksum(good=None):
    "A resident ID number whose check character is wrong."
    good = good or make_resident_id('330106', dt.date(1995, 3, 3), 111)
    return good[:17] + ('0' if good[17] != '0' else '1')


def qr_loaded(driver, css='.ticket-card img.qr'):
    return driver.execute_script("""
        const imgs = [...document.querySelectorAll(arguments[0])];
        return imgs.length > 0 && imgs.every(
            (i) => i.complete && i.naturalWidth > 0);""", css)


# --- the tests ----------------------------------------------------------------------

def test_book_and_pay_in_chinese(server, browser, artifacts_dir):
    "Tomorrow, one adult with a real ID, contact, book, pay: one QR ticket."
    with diagnostics(browser, server, artifacts_dir, 'book_and_pay'):
        open_booking(browser, server)
        # navigator.language is zh-CN: the page speaks Chinese.
        assert browser.execute_script(
            "return document.documentElement.lang") == 'zh-CN'
        assert text(browser, '#book-heading') == '门票预约'
        today = page_config(browser)['today']
        tomorrow = add_days(today, 1)
        assert text(browser, f'button[data-date="{tomorrow}"] .day-top') \
            == '明天'
        choose_day(browser, tomorrow)
        scroll_to(browser, '#sec-date')
        shot(browser, artifacts_dir, 'booking_1_slots.png')
        slot_id = choose_first_slot(browser)
        before = slot_available(server, tomorrow, slot_id)

        fill_adult(browser, VISITOR_NAME, VISITOR_ID)
        assert text(browser, '#qty-ADULT') == '1'
        scroll_to(browser, '#v-ADULT-0')
        shot(browser, artifacts_dir, 'booking_2_visitor.png')

        assert text(browser, '#book-button') == '提交预订'
        click(browser, '#book-button')
        _visible(browser, '#order-heading')
        card = _by_css(browser, 'article.order')
        reference = card.get_attribute('data-order')
        assert text(browser, '.order .badge') == '待支付'
        countdown = text(browser, '.countdown')
        assert '内完成支付' in countdown, countdown
        total = text(browser, '.order .order-total .total-amount')
        assert total.startswith('¥'), total
        # The countdown runs.
        _wait(browser).until(lambda d: _by_css(d, '.countdown').text
            != countdown, "the hold countdown does not tick")
        shot(browser, artifacts_dir, 'booking_3_order.png')

        assert text(browser, f'#pay-{reference}').startswith(
            '支付（模拟）')
        click(browser, f'#pay-{reference}')
        _visible(browser, '.ticket-card')
        BOOKED.update(order=reference, date=tomorrow, id=VISITOR_ID,
            phone=CONTACT_PHONE)
        _wait(browser).until(lambda d: qr_loaded(d),
            "the QR image did not load")
        cards = _all_css(browser, '.ticket-card')
        assert len(cards) == 1
        assert text(browser, '.order .badge') == '已支付'
        assert text(browser, '.ticket-card .badge') == '有效'
        assert text(browser, '.ticket-card .holder') == \
            mask(VISITOR_ID)
        assert VISITOR_ID not in browser.page_source
        assert text(browser, '.ticket-card .ticket-name')
        width = browser.execute_script(
            "return document.querySelector('.ticket-card img.qr')"
            ".naturalWidth")
        assert width > 0
        scroll_to(browser, '.ticket-card')
        shot(browser, artifacts_dir, 'booking_4_tickets.png')

        status, order = api(server, 'GET', f'/orders/{reference}')
        assert status == 200 and order['state'] == 'paid', order
        assert slot_available(server, tomorrow, slot_id) == before - 1
        assert not _severe(_console(browser)), _console(browser)


def test_same_id_same_day_is_refused(server, browser, artifacts_dir):
    "The ID of the first booking again for that day: id_limit at its field."
    with diagnostics(browser, server, artifacts_dir, 'id_limit'):
        open_booking(browser, server)
        booked = ensure_booked(server, page_config(browser)['today'])
        choose_day(browser, booked['date'])
        choose_first_slot(browser)
        fill_adult(browser, '李四', booked['id'], contact='李四',
            phone='13700137000')
        count_posts(browser)
        click(browser, '#book-button')
        assert text(browser, '#err-v-ADULT-0-id_number') == \
            '该证件当天的购票数量已达上限。'
        field = _by_css(browser, '#v-ADULT-0-id_number')
        assert field.get_attribute('aria-invalid') == 'true'
        assert 'err-v-ADULT-0-id_number' in field.get_attribute(
            'aria-describedby')
        # The field with the error has the focus, on screen.
        assert browser.execute_script(
            "return document.activeElement.id") == 'v-ADULT-0-id_number'
        assert browser.execute_script("return window.__posts") == 1
        assert text(browser, '#form-error') == '请修改标出的内容。'
        assert not _all_css(browser, '#order-heading')
        scroll_to(browser, '#v-ADULT-0')
        shot(browser, artifacts_dir, 'booking_id_limit.png')


def test_wrong_checksum_is_refused(server, browser, artifacts_dir):
    "A resident ID with a wrong check character: a message, no booking."
    good = make_resident_id('330106', dt.date(1995, 3, 3), 111)
    bad = bad_checksum(good)
    with diagnostics(browser, server, artifacts_dir, 'bad_checksum'):
        open_booking(browser, server)
        date = add_days(page_config(browser)['today'], 2)
        choose_day(browser, date)
        slot_id = choose_first_slot(browser)
        before = slot_available(server, date, slot_id)
        fill_adult(browser, '赵六', bad, contact='赵六', phone='13600136000')
        count_posts(browser)
        click(browser, '#book-button')
        message = text(browser, '#err-v-ADULT-0-id_number')
        assert '校验位' in message, message
        assert _by_css(browser, '#v-ADULT-0-id_number').get_attribute(
            'aria-invalid') == 'true'
        scroll_to(browser, '#v-ADULT-0')
        shot(browser, artifacts_dir, 'booking_bad_id.png')
        # Nothing was sent, nothing was booked.
        assert browser.execute_script("return window.__posts") == 0
        assert not _all_css(browser, '#order-heading')
        assert slot_available(server, date, slot_id) == before
        # Corrected, the message goes away as soon as the field changes.
        fill(browser, '#v-ADULT-0-id_number', good)
        _wait(browser).until(lambda d: not _by_css(
            d, '#err-v-ADULT-0-id_number').is_displayed())


def test_pickup(server, browser, artifacts_dir):
    """ID + phone + order reference of the first booking find it (sent in
    a POST body, never in a URL); a wrong phone finds nothing."""
    with diagnostics(browser, server, artifacts_dir, 'pickup'):
        browser.get(f'{server.url}/{server.database}/scenic/pickup')
        _visible(browser, '#pickup-form')
        booked = ensure_booked(server, page_config(browser)['today'])
        assert text(browser, '#pickup-heading') == '取票 / 查询订单'
        fill(browser, '#pk-id', booked['id'])
        fill(browser, '#pk-phone', booked['phone'])
        fill(browser, '#pk-ref', booked['order'])
        click(browser, '#search-button')
        order = _visible(browser,
            f'article.order[data-order="{booked["order"]}"]')
        assert len(_all_css(browser, 'article.order')) == 1
        assert len(order.find_elements('css selector', '.ticket-card')) == 1
        _wait(browser).until(lambda d: qr_loaded(d),
            "the QR image did not load")
        assert text(browser, '.ticket-card .holder') == \
            mask(booked['id'])
        scroll_to(browser, '#results-heading')
        shot(browser, artifacts_dir, 'pickup.png')

        fill(browser, '#pk-phone', '13911112222')
        click(browser, '#search-button')
        assert text(browser, '#results-heading.empty') == \
            '没有找到订单。请核对证件号码、手机号和订单号。'
        assert not _all_css(browser, 'article.order')
        shot(browser, artifacts_dir, 'pickup_none.png')


def test_language_toggle(server, browser, artifacts_dir):
    "The toggle switches every UI string to English and back."
    with diagnostics(browser, server, artifacts_dir, 'language'):
        open_booking(browser, server)
        today = page_config(browser)['today']
        assert text(browser, '#book-button') == '提交预订'
        assert text(browser, '#lang-toggle') == 'English'
        assert _by_css(browser, '#lang-toggle').tag_name == 'button'
        click(browser, '#lang-toggle')
        _wait(browser).until(lambda d: _by_css(
            d, '#book-heading').text == 'Book tickets')
        assert browser.execute_script(
            "return document.documentElement.lang") == 'en'
        assert text(browser, '#book-button') == 'Book'
        assert text(browser, '#date-heading').endswith(
            'Choose a date')
        assert text(browser, f'button[data-date="{today}"] .day-top') \
            == 'Today'
        assert browser.execute_script("return [...document.querySelectorAll("
            "'.topbar nav a')].map((a) => a.textContent)") == \
            ['Book', 'My tickets']
        assert text(browser, '#lang-toggle') == '中文'
        # Client checks speak English too.
        choose_day(browser, add_days(today, 1))
        choose_first_slot(browser)
        fill_adult(browser, 'Jane Doe', bad_checksum(),
            contact='Jane Doe', phone='12')
        click(browser, '#book-button')
        assert text(browser, '#err-contact-phone') == \
            'Enter a valid mobile phone number.'
        assert 'check character' in text(
            browser, '#err-v-ADULT-0-id_number')
        scroll_to(browser, '#v-ADULT-0')
        shot(browser, artifacts_dir, 'booking_english.png')
        # The choice is kept, on this page and the pickup page.
        browser.get(f'{server.url}/{server.database}/scenic/pickup')
        assert text(browser, '#pickup-heading') == \
            'Find my tickets'
        click(browser, '#lang-toggle')
        _wait(browser).until(lambda d: _by_css(
            d, '#pickup-heading').text == '取票 / 查询订单')
        assert browser.execute_script(
            "return document.documentElement.lang") == 'zh-CN'


def test_cancel_and_refund(server, browser, artifacts_dir):
    "A paid order is refunded after a confirmation; its ticket is revoked."
    id_number = make_resident_id('110105', dt.date(1992, 7, 8), 246)
    with diagnostics(browser, server, artifacts_dir, 'refund'):
        open_booking(browser, server)
        date = add_days(page_config(browser)['today'], 3)
        choose_day(browser, date)
        slot_id = choose_first_slot(browser)
        before = slot_available(server, date, slot_id)
        fill_adult(browser, '陈静', id_number, contact='陈静',
            phone='13900139000')
        click(browser, '#book-button')
        reference = _visible(browser, 'article.order').get_attribute(
            'data-order')
        click(browser, f'#pay-{reference}')
        _visible(browser, '.ticket-card')
        assert text(browser, f'#cancel-{reference}') == '取消 / 退款'
        click(browser, f'#cancel-{reference}')
        assert '退款 ¥' in text(browser, f'#confirm-q-{reference}')
        # "Keep it" changes nothing.
        click(browser, f'#confirm-no-{reference}')
        _visible(browser, f'#cancel-{reference}')
        click(browser, f'#cancel-{reference}')
        _visible(browser, f'#confirm-yes-{reference}')
        click(browser, f'#confirm-yes-{reference}')
        assert '已原路退回' in text(browser, f'#note-{reference}')
        assert text(browser, '.order .badge') == '已退款'
        assert text(browser, '.ticket-card .badge') == '已作废'
        assert not _all_css(browser, '.ticket-card img.qr')
        assert not _all_css(browser, f'#pay-{reference}, #cancel-{reference}')
        shot(browser, artifacts_dir, 'booking_5_refunded.png')
        status, order = api(server, 'GET', f'/orders/{reference}')
        assert status == 200 and order['state'] == 'refunded', order
        assert slot_available(server, date, slot_id) == before


def test_retry_after_network_error_keeps_the_key(server, browser,
        artifacts_dir):
    """The booking reached the server but the answer was lost: pressing
    "Book" again sends the same Idempotency-Key and gets the same order."""
    id_number = make_resident_id('440305', dt.date(1979, 11, 30), 357)
    phone = '13500135000'
    with diagnostics(browser, server, artifacts_dir, 'retry'):
        open_booking(browser, server)
        date = add_days(page_config(browser)['today'], 4)
        choose_day(browser, date)
        choose_first_slot(browser)
        fill_adult(browser, '周杰', id_number, contact='周杰', phone=phone)
        # The first POST /orders is handled by the server, but the page
        # sees a network failure.
        browser.execute_script("""
            window.__keys = [];
            let dropped = false;
            const original = window.fetch;
            window.fetch = async (url, init) => {
                const posting = init && init.method === 'POST'
                    && String(url).endsWith('/orders');
                if (posting) {
                    window.__keys.push(init.headers['Idempotency-Key']);
                }
                const response = await original(url, init);
                if (posting && !dropped) {
                    dropped = true;
                    throw new TypeError('Failed to fetch');
                }
                return response;
            };""")
        click(browser, '#book-button')
        hint = text(browser, '#form-error')
        assert '不会重复下单' in hint, hint
        assert not _all_css(browser, '#order-heading')
        click(browser, '#book-button')
        reference = _visible(browser, 'article.order').get_attribute(
            'data-order')
        keys = browser.execute_script("return window.__keys")
        assert len(keys) == 2 and keys[0] == keys[1], keys
        assert len(keys[0]) == 36, keys  # a UUID
        status, data = api(server, 'POST', '/orders/lookup', {
                'id_number': id_number, 'phone': phone,
                'reference': reference})
        assert status == 200, data
        assert [o['order'] for o in data['orders']] == [reference]
        # A new submission (here: the next booking) gets a fresh key.
        click(browser, '#book-again')
        _visible(browser, '#booking-form')
        click(browser, '#inc-ADULT')
        fill(browser, '#v-ADULT-0-name', '周杰伦')
        fill(browser, '#v-ADULT-0-id_number',
            make_resident_id('440305', dt.date(1979, 1, 18), 123))
        click(browser, '#book-button')
        _wait(browser).until(lambda d: d.execute_script(
            "const o = document.querySelector('article.order');"
            "return o && o.dataset.order !== arguments[0];", reference),
            "the second booking was not shown")
        keys = browser.execute_script("return window.__keys")
        assert len(keys) == 3 and keys[2] != keys[0], keys


# --- HTTP details (no browser) -----------------------------------------------------

def _get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_static_assets(server):
    base = f'{server.url}/{server.database}/scenic'
    status, headers, body = _get(f'{base}/book')
    assert status == 200
    assert headers['Content-Type'].startswith('text/html')
    assert "script-src 'self'" in headers['Content-Security-Policy']
    page = body.decode()
    assert 'demo-web-key' in page  # the publishable key of the channel
    for name, content_type in [('app.js', 'text/javascript'),
            ('style.css', 'text/css')]:
        start = page.index(f'/{server.database}/scenic/static/{name}?v=')
        url = server.url + page[start:page.index('"', start)]
        status, headers, body = _get(url)
        assert status == 200 and body
        assert headers['Content-Type'].startswith(content_type)
        assert 'immutable' in headers['Cache-Control']
        assert headers['X-Content-Type-Options'] == 'nosniff'
        status, _, _ = _get(url, {'If-None-Match': headers['ETag']})
        assert status == 304
    status, headers, _ = _get(f'{base}/static/app.js')
    assert status == 200 and 'immutable' not in headers['Cache-Control']
    for path in ['%2e%2e/booking_page.py', '..%2fbooking_page.py',
            '..%2f..%2f..%2fpyproject.toml', '%2e%2e%2f__init__.py',
            '.hidden.js', 'missing.js', 'app.js%00.css',
            '..%5cbooking_page.py', '%2fetc%2fpasswd']:
        status, _, body = _get(f'{base}/static/{path}')
        assert status == 404, (path, status)
        assert b'import' not in body
    # The raw, unnormalised path too.
    import http.client
    connection = http.client.HTTPConnection(
        server.url.removeprefix('http://'), timeout=30)
    connection.request('GET',
        f'/{server.database}/scenic/static/../booking_page.py')
    response = connection.getresponse()
    assert response.status in {404, 405}
    assert b'import' not in response.read()
    connection.close()


def test_no_booking_channel_is_a_clear_404(server):
    "Without a channel flagged for the booking page: a 404 page that says so."
    if server.db is None:
        pytest.skip("the database of SCENIC_BROWSER_TEST_URL is not known")
    with sqlite3.connect(server.db, timeout=30) as connection:
        connection.execute(
            "UPDATE scenic_channel SET booking_page = 0 WHERE code = 'web'")
    try:
        for page in ['book', 'pickup']:
            status, headers, body = _get(
                f'{server.url}/{server.database}/scenic/{page}')
            assert status == 404
            assert headers['Content-Type'].startswith('text/html')
            text = body.decode()
            assert '没有销售渠道启用' in text
            assert 'no sales channel is enabled' in text
            assert 'demo-web-key' not in text
        status, _, body = _get(f'{server.url}/no_such_db/scenic/book')
        assert status == 404 and 'no such database' in body.decode()
    finally:
        with sqlite3.connect(server.db, timeout=30) as connection:
            connection.execute("UPDATE scenic_channel SET booking_page = 1 "
                "WHERE code = 'web'")
