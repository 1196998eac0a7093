"""Fixtures of the browser tests: browsers (``demo_server`` is in
tests/conftest.py).

- ``make_browser(lang='en-US', phone=False)``: a new headless Debian
  Chromium driven by Debian's ChromeDriver (never selenium-manager), with
  its own profile; ``phone`` emulates a 390 × 844 touch screen.  Every
  browser made is closed after the test.
"""
from pathlib import Path

import pytest

CHROMIUM = Path('/usr/bin/chromium')
CHROMEDRIVER = Path('/usr/bin/chromedriver')
PHONE_SIZE = (390, 844)
DESKTOP_SIZE = (1400, 900)
BROWSER_TIMEOUT = 30        # page load / script timeout, seconds


@pytest.fixture
def make_browser(tmp_path):
    """make_browser(lang='en-US', phone=False, timeout=BROWSER_TIMEOUT):
    a new headless Chromium WebDriver.

    lang: the UI language and the first of Accept-Language
    (navigator.language); phone: a 390 × 844 touch screen (mobile
    viewport), else a 1400 × 900 window.  The page's console is kept
    (driver.get_log('browser'))."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed (Debian "
            "packages chromium, chromium-driver: `make browser-deps`)",
            pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    drivers = []

    def make(lang='en-US', phone=False, timeout=BROWSER_TIMEOUT):
        profile = tmp_path / f'chromium-{len(drivers)}'
        size = PHONE_SIZE if phone else DESKTOP_SIZE
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in ['--headless=new', '--no-sandbox', '--disable-gpu',
                '--disable-dev-shm-usage', '--disable-background-networking',
                '--disable-component-update', '--disable-sync',
                '--no-first-run', f'--window-size={size[0]},{size[1]}',
                f'--lang={lang}', f'--user-data-dir={profile}']:
            options.add_argument(argument)
        primary = lang.split('-')[0]
        options.add_experimental_option('prefs', {'intl.accept_languages':
                lang if primary == lang else f'{lang},{primary}'})
        options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
        # An explicit driver: selenium-manager never downloads anything.
        service = Service(executable_path=str(CHROMEDRIVER),
            log_output=str(profile.with_name(profile.name + '-driver.log')))
        driver = webdriver.Chrome(service=service, options=options)
        drivers.append(driver)
        if phone:
            # Chromium keeps windows at least 500 px wide: emulate the
            # phone's viewport itself (CSS px, touch, overlay scrollbars).
            driver.execute_cdp_cmd('Emulation.setDeviceMetricsOverride', {
                    'width': size[0], 'height': size[1],
                    'deviceScaleFactor': 1, 'mobile': True})
            driver.execute_cdp_cmd('Emulation.setTouchEmulationEnabled',
                {'enabled': True, 'maxTouchPoints': 5})
        driver.set_page_load_timeout(timeout)
        driver.set_script_timeout(timeout)
        return driver

    try:
        yield make
    finally:
        for driver in drivers:
            try:
                driver.quit()
            except Exception:
                pass
