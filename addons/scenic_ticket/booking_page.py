"""The public web booking page and the pickup (取票) page.

Two small HTML shells and their static assets (static/app.js and
static/style.css: plain JavaScript, no build, no CDN). The page sells
through the channel flagged `booking_page` and talks to the JSON booking
API (api.py) with that channel's key, which it embeds: the key is a
publishable key, like a payment provider's, and grants nothing more than
what the public page can do anyway.

    GET /<db>/scenic/book            the booking page
    GET /<db>/scenic/pickup          the pickup page
    GET /<db>/scenic/static/<path>   its assets
"""
import datetime as dt
import hashlib
import html
import json
import logging
import mimetypes
import os
from functools import lru_cache

from trytond.pool import Pool
from trytond.protocols.wrappers import Response
from trytond.transaction import Transaction
from trytond.wsgi import app
from werkzeug.security import safe_join

from .web import database_pool

logger = logging.getLogger(__name__)

PREFIX = '/<database_name>/scenic'
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
    'static')
BOOKING_DAYS = 14  # today .. today + 13
CONTENT_TYPES = {
    '.js': 'text/javascript; charset=utf-8',
    '.css': 'text/css; charset=utf-8',
    '.svg': 'image/svg+xml',
    '.png': 'image/png',
    '.ico': 'image/x-icon',
    '.json': 'application/json',
    '.txt': 'text/plain; charset=utf-8',
    }
LANGUAGES = {'zh': 'zh_CN', 'en': 'en'}
# Nothing but our own origin: no CDN, no inline script; the QR codes are
# served by the booking API on the same origin.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {
    'Content-Security-Policy': CSP,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-cache',
    }
TITLES = {
    'book': "门票预约 · Book tickets",
    'pickup': "取票 · Find my tickets",
    }


# --- static assets ---------------------------------------------------------

def static_path(path):
    """The absolute path of a file inside static/, or None.

    werkzeug's safe_join refuses what could leave the folder (absolute
    paths, `..`, backslashes); hidden files, NUL, other file types and
    symbolic links pointing out are refused too.
    """
    if not path or '\0' in path or any(
            p.startswith('.') for p in path.split('/')):
        return None
    if os.path.splitext(path)[1].lower() not in CONTENT_TYPES:
        return None
    root = os.path.realpath(STATIC_DIR)
    joined = safe_join(root, path)
    if joined is None:
        return None
    full = os.path.realpath(joined)
    if os.path.commonpath([root, full]) != root or not os.path.isfile(full):
        return None
    return full


@lru_cache(maxsize=64)
def _read(full, mtime_ns, size):
    "Content and its digest; keyed on the file's stat so edits show."
    with open(full, 'rb') as file:
        data = file.read()
    return data, hashlib.sha256(data).hexdigest()[:16]


def read_static(full):
    stat = os.stat(full)
    return _read(full, stat.st_mtime_ns, stat.st_size)


def asset_url(database_name, name):
    "A URL of an asset that changes with its content (long caching)."
    full = static_path(name)
    version = read_static(full)[1] if full else '0'
    return f'/{database_name}/scenic/static/{name}?v={version}'


@app.route(PREFIX + '/static/<path:path>', methods=['GET', 'HEAD'])
def get_static(request, database_name, path):
    full = static_path(path)
    if full is None:
        return Response("Not Found", status=404,
            content_type='text/plain; charset=utf-8',
            headers={'X-Content-Type-Options': 'nosniff'})
    data, digest = read_static(full)
    content_type = CONTENT_TYPES.get(
        os.path.splitext(full)[1].lower()) or mimetypes.guess_type(full)[0]
    if request.args.get('v') == digest:
        # The page links assets with their digest: they never change.
        cache = 'public, max-age=31536000, immutable'
    else:
        cache = 'public, max-age=300'
    response = Response(data, content_type=content_type, headers={
            'Cache-Control': cache,
            'X-Content-Type-Options': 'nosniff',
            })
    response.set_etag(digest)
    return response.make_conditional(request)


# --- pages -----------------------------------------------------------------

def _json_for_html(data):
    "JSON safe inside a <script type=application/json> element."
    return (json.dumps(data, ensure_ascii=False, separators=(',', ':'))
        .replace('<', '\\u003c').replace('>', '\\u003e')
        .replace('&', '\\u0026').replace('\u2028', '\\u2028')
        .replace('\u2029', '\\u2029'))


def _translations(Model, records, field='name'):
    "{code: {'zh': …, 'en': …}} of a translatable field."
    names = {}
    for short, language in LANGUAGES.items():
        with Transaction().set_context(language=language):
            for record in Model.browse([r.id for r in records]):
                names.setdefault(record.code, {})[short] = getattr(
                    record, field)
    return names


def page_config(database_name, mode):
    """What the page needs, read as root; None if no channel sells on the
    booking page."""
    from .slot import area_timezone
    pool = Pool()
    Channel = pool.get('scenic.channel')
    Zone = pool.get('scenic.zone')
    TicketType = pool.get('scenic.ticket.type')
    channels = Channel.search([('booking_page', '=', True)],
        order=[('id', 'ASC')], limit=1)
    if not channels:
        return None
    channel, = channels
    key = channel.get_api_key()
    if not key:
        logger.warning("channel %s is flagged for the booking page but "
            "has no stored API key", channel.code)
        return None
    company = channel.company
    today = dt.datetime.now(area_timezone(company)).date()
    domain = [('company', '=', company.id)]
    area = company.party.name if company.party else ''
    return {
        'mode': mode,
        'database': database_name,
        'api': f'/{database_name}/scenic/v1',
        'key': key,
        'area': area,
        'today': today.isoformat(),
        'days': BOOKING_DAYS,
        'urls': {
            'book': f'/{database_name}/scenic/book',
            'pickup': f'/{database_name}/scenic/pickup',
            },
        'names': {
            'ticket_types': _translations(
                TicketType, TicketType.search(domain)),
            'zones': _translations(Zone, Zone.search(domain)),
            },
        }


def render_page(database_name, config):
    mode = config['mode']
    esc = html.escape
    title = TITLES[mode]
    if config.get('area'):
        title = f"{config['area']} · {title}"
    css = asset_url(database_name, 'style.css')
    js = asset_url(database_name, 'app.js')
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<meta name="theme-color" content="#0b5d45">
<title>{esc(title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{esc(css)}">
<script type="application/json" id="scenic-config">{_json_for_html(config)}</script>
<script src="{esc(js)}" defer></script>
</head>
<body class="mode-{esc(mode)}">
<a class="skip" href="#main">跳到主要内容 / Skip to content</a>
<header class="topbar" id="topbar">
  <p class="brand">{esc(config.get('area') or 'Scenic')}</p>
</header>
<main id="main" tabindex="-1">
  <noscript><p class="notice">请启用 JavaScript 以预约门票。
  Please enable JavaScript to book tickets.</p></noscript>
  <p class="loading" id="boot">加载中… Loading…</p>
</main>
</body>
</html>
"""


def not_found_page(message_zh, message_en):
    body = f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>404 · 无法预约 · Booking unavailable</title>
<style>body{{font:16px/1.5 system-ui,"PingFang SC","Microsoft YaHei",
"Noto Sans CJK SC",sans-serif;max-width:36rem;margin:3rem auto;
padding:0 1rem;color:#1b1f1d}}h1{{font-size:1.4rem}}</style>
</head>
<body>
<main>
<h1>无法在线预约 · Online booking is unavailable</h1>
<p>{html.escape(message_zh)}</p>
<p lang="en">{html.escape(message_en)}</p>
</main>
</body>
</html>
"""
    headers = dict(PAGE_HEADERS)
    # The inline style of this small page only.
    headers['Content-Security-Policy'] = (
        "default-src 'none'; style-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return Response(body, status=404, headers=headers,
        content_type='text/html; charset=utf-8')


def _page(database_name, mode):
    try:
        pool = database_pool(database_name)
        if pool is None:
            return not_found_page("没有这个数据库。",
                "There is no such database.")
        with Transaction().start(pool.database_name, 0, readonly=True):
            config = page_config(database_name, mode)
    except Exception:
        logger.exception("booking page of %s failed", database_name)
        return Response(
            "The booking page is unavailable; please try again later.",
            status=500, content_type='text/plain; charset=utf-8')
    if config is None:
        return not_found_page(
            "本景区尚未开通网上预约：没有销售渠道启用“网上预约页面”。",
            "This scenic area does not sell online: no sales channel is "
            "enabled for the web booking page.")
    return Response(render_page(database_name, config), headers=PAGE_HEADERS,
        content_type='text/html; charset=utf-8')


@app.route(PREFIX + '/book', methods=['GET', 'HEAD'])
def get_booking_page(request, database_name):
    return _page(database_name, 'book')


@app.route(PREFIX + '/pickup', methods=['GET', 'HEAD'])
def get_pickup_page(request, database_name):
    return _page(database_name, 'pickup')
