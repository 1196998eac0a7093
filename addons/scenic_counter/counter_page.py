"""The counter and kiosk pages: HTML shells and their assets, served by
trytond.

    GET /<db>/scenic/counter                 the window's screen
    GET /<db>/scenic/kiosk                   the self-service kiosk's screen
    GET /<db>/scenic/counter/static/<name>   counter.js, counter.css,
                                             kiosk.js, kiosk.css

The page logs in with Tryton's own JSON-RPC login and then talks to the
counter API (counter_api.py). Keyboard first: see static/counter.js.
"""
import hashlib
import html
import os

from trytond.protocols.wrappers import Response
from trytond.wsgi import app

from scenic_ticket.booking_page import PAGE_HEADERS

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
    'static')
ASSETS = {
    'counter.js': 'text/javascript; charset=utf-8',
    'counter.css': 'text/css; charset=utf-8',
    'kiosk.js': 'text/javascript; charset=utf-8',
    'kiosk.css': 'text/css; charset=utf-8',
    }
# The page posts print jobs to the IoT box of the counter PC.
CSP = PAGE_HEADERS['Content-Security-Policy'].replace(
    "connect-src 'self'", "connect-src 'self' http://127.0.0.1:* "
    "http://localhost:*")


def _asset(name):
    with open(os.path.join(STATIC_DIR, name), 'rb') as file:
        data = file.read()
    return data, hashlib.sha256(data).hexdigest()[:16]


@app.route('/<database_name>/scenic/counter/static/<name>',
    methods=['GET', 'HEAD'])
def get_counter_static(request, database_name, name):
    if name not in ASSETS:     # a fixed list: nothing else is reachable
        return Response("Not Found", status=404,
            content_type='text/plain; charset=utf-8')
    data, digest = _asset(name)
    response = Response(data, content_type=ASSETS[name], headers={
            'Cache-Control': 'public, max-age=300',
            'X-Content-Type-Options': 'nosniff'})
    response.set_etag(digest)
    return response.make_conditional(request)


@app.route('/<database_name>/scenic/counter', methods=['GET'])
def get_counter(request, database_name):
    db = html.escape(database_name, quote=True)
    versions = {n: _asset(n)[1] for n in ASSETS}
    page = f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>售票窗口 · Ticket window</title>
<link rel="stylesheet" href="/{db}/scenic/counter/static/counter.css?v={versions['counter.css']}">
</head><body data-db="{db}">
<main id="app" aria-live="polite"><p>…</p></main>
<script src="/{db}/scenic/counter/static/counter.js?v={versions['counter.js']}"></script>
</body></html>"""
    headers = dict(PAGE_HEADERS)
    headers['Content-Security-Policy'] = CSP
    return Response(page, content_type='text/html; charset=utf-8',
        headers=headers)


@app.route('/<database_name>/scenic/kiosk', methods=['GET'])
def get_kiosk(request, database_name):
    """The kiosk's touch screen. It reads its channel key (and, with
    several kiosks on one channel, its sale point id) and its IoT box's
    address from the kiosk PC's local storage, set once by the installer
    on the page's setup screen."""
    db = html.escape(database_name, quote=True)
    versions = {n: _asset(n)[1] for n in ASSETS}
    page = f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, user-scalable=no">
<title>自助售票 · Self-service tickets</title>
<link rel="stylesheet" href="/{db}/scenic/counter/static/kiosk.css?v={versions['kiosk.css']}">
</head><body data-db="{db}">
<main id="app" aria-live="polite"><p>…</p></main>
<script src="/{db}/scenic/counter/static/kiosk.js?v={versions['kiosk.js']}"></script>
</body></html>"""
    headers = dict(PAGE_HEADERS)
    headers['Content-Security-Policy'] = CSP
    return Response(page, content_type='text/html; charset=utf-8',
        headers=headers)
