"""The box's local HTTP API, for handhelds and the staff screen.

    POST /scan    {"gate", "lane", "medium": "qr"|"id_card"|"rfid", "data",
                   "direction"?: "in"|"out", "image"?: base64,
                   "id_number"?, "id_type"?, "binding_confirmed"?: bool}
                  → 200 {"decision": "open"|"deny", "reason", "persons",
                   "message", "direction", "ticket": {summary} | null,
                   "bound_photo_url"?, "binding_check"?, "scan": nonce,
                   "turnstile"?: {"ok", "error"?}}
    GET /status   box id, enrolment, sync lag and last sync, outbox size,
                  devices, gates.
    GET /photos/<ref>   a bound photo (or a card's photo from the ERP), by
                  the unguessable reference a scan answered with.
    POST /site/sell  {"ticket_type", "slot", "payment"?}  (a site box, the
                  staff's ticket window) → 201 {"nonce", "ticket", "code",
                  "persons", "amount", "valid_from", "valid_until"}; 409
                  ``allotment_exhausted`` / ``allotment_released``, 422
                  ``no_allotment`` / ``unknown_ticket_type``, 404
                  ``not_a_site`` (site.py).
    GET /site     the site's allotments (quota, sold here, left, release)
                  and its sales outbox.

Who may call (SECURITY.md): with ``api.token`` set every request needs
``Authorization: Bearer <token>`` (handhelds); a box listening beyond
loopback must have one (config.py refuses to start otherwise).
``binding_confirmed`` is the staff's verdict after comparing the bound
photo: it is taken only from a request carrying ``api.staff_token`` (the
staff screen), 403 ``staff_only`` otherwise.  A browser request from
another origin (``Origin`` not this box nor in ``api.allowed_origins``) is
refused 403 ``forbidden_origin``; without a token the ``Host`` must be a
loopback name (no DNS rebinding onto an open box); POST bodies must be
``application/json`` (415): a web page cannot post a form to the box.

A request the box cannot read gets 422 ``{"error": {"code":
"invalid_request", "message", "field"}}`` (401 ``unauthorized`` without
the configured token, 404 ``not_found``, 413 ``too_large``); never a stack
trace, and never an open gate.  When a scan opens, the turnstile is told to
let ``persons`` people through the lane (``open_passages(channel, n)``)
after the scan is committed.
"""

import base64
import dataclasses
import binascii
import hmac
import inspect
import json
import logging
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from scenic_common import idnumber

from . import __version__
from .config import is_loopback
from .validator import MEDIA, ScanRequest

__all__ = ['BoxApp', 'ApiServer', 'RequestError', 'parse_scan']

logger = logging.getLogger(__name__)

MAX_BODY = 4 * 1024 * 1024
MAX_IMAGE = 3 * 1024 * 1024
MAX_DATA = 4096
MAX_LANES = 64
PHOTO_REF = re.compile(r'[A-Za-z0-9_-]{1,80}')
CARD_PHOTO_REF = re.compile(r'card-([0-9]{1,18})-([0-9a-f]{32})')
BINDING_PHOTO_REF = re.compile(r'[0-9a-f]{32}')    # uuid4().hex


class RequestError(Exception):

    def __init__(self, message, field=None, status=422,
            code='invalid_request'):
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status
        self.code = code

    def body(self):
        error = {'code': self.code, 'message': self.message}
        if self.field:
            error['field'] = self.field
        return {'error': error}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def parse_scan(body):
    """Check a /scan body → ScanRequest, or raise RequestError."""
    if not isinstance(body, dict):
        raise RequestError('The body must be a JSON object.')
    gate = body.get('gate')
    if _is_int(gate):
        if gate < 1:
            raise RequestError('gate must be a gate code or id.', 'gate')
    elif isinstance(gate, str):
        gate = gate.strip()
        if not gate or len(gate) > 64:
            raise RequestError('gate must be a gate code.', 'gate')
    else:
        raise RequestError('gate is required: a gate code such as '
            '"MAIN-IN".', 'gate')
    lane = body.get('lane', 1)
    if not _is_int(lane) or not 1 <= lane <= MAX_LANES:
        raise RequestError(f'lane must be a number from 1 to {MAX_LANES}.',
            'lane')
    medium = body.get('medium')
    if medium not in MEDIA:
        raise RequestError('medium must be one of: ' + ', '.join(MEDIA)
            + '.', 'medium')
    data = body.get('data')
    if not isinstance(data, str) or not data.strip():
        raise RequestError('data must be the scanned text.', 'data')
    if len(data) > MAX_DATA:
        raise RequestError('data is too long.', 'data')
    direction = body.get('direction')
    if direction is not None and direction not in ('in', 'out'):
        raise RequestError('direction must be "in" or "out".', 'direction')
    image = body.get('image')
    if image is not None:
        if not isinstance(image, str) or len(image) > MAX_IMAGE * 4 // 3 + 4:
            raise RequestError('image must be a base64 image (at most '
                f'{MAX_IMAGE // 1024 // 1024} MB).', 'image')
        try:
            image = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError('image is not valid base64.', 'image') \
                from None
        if not image:
            image = None
    id_number = body.get('id_number')
    if id_number is not None and (not isinstance(id_number, str)
            or not id_number.strip() or len(id_number) > 64):
        raise RequestError('id_number must be an ID number.', 'id_number')
    id_type = body.get('id_type')
    if id_type is not None and id_type not in idnumber.ID_TYPES:
        raise RequestError('id_type must be one of: '
            + ', '.join(idnumber.ID_TYPES) + '.', 'id_type')
    confirmed = body.get('binding_confirmed')
    if confirmed is not None and not isinstance(confirmed, bool):
        raise RequestError('binding_confirmed must be true or false.',
            'binding_confirmed')
    return ScanRequest(gate=gate, lane=lane, medium=medium, data=data,
        direction=direction, image=image, id_number=id_number,
        id_type=id_type, binding_confirmed=confirmed)


def _content_type(data):
    if data.startswith(b'\xff\xd8\xff'):
        return 'image/jpeg'
    if data.startswith(b'\x89PNG\r\n\x1a\n'):
        return 'image/png'
    if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        return 'image/webp'
    if data.startswith((b'BM',)):
        return 'image/bmp'
    return 'application/octet-stream'


def _accepts(obj, method, name):
    "Does obj.method take a ``name`` argument (the drivers' turnstile does)?"
    function = getattr(obj, method, None)
    if function is None:
        return False
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


class BoxApp:
    """What the HTTP handler calls: no HTTP in here, easy to test."""

    def __init__(self, validator, store, gates, turnstile=None,
            sync=None, devices=None, photo_fetcher=None, name='',
            data_dir='.', api_token=None, staff_token=None,
            allowed_origins=(), site=None, printer=None, idcard=None):
        self.validator = validator
        self.site = site
        self.store = store
        self.gates = {g.code: g for g in gates}    # GateConfig by code
        self.turnstile = turnstile
        self.sync = sync
        self.devices = devices or (lambda: [])
        self.photo_fetcher = photo_fetcher
        self.name = name
        self.data_dir = os.fspath(data_dir)
        self.api_token = api_token
        self.staff_token = staff_token
        self.allowed_origins = frozenset(o.rstrip('/').lower()
            for o in allowed_origins)
        self.printer = printer          # a desk box's ticket printer
        self.idcard = idcard            # a desk box's ID card reader
        self._turnstile_lock = threading.Lock()
        self._takes_direction = _accepts(turnstile, 'open_passages',
            'direction')
        self.turnstile_errors = 0

    def role(self, header):
        """'staff', 'device' or None (refused) for an Authorization
        header: the staff token is also good for what devices do."""
        scheme, _, token = (header or '').partition(' ')
        token = token.strip().encode() if scheme.lower() == 'bearer' \
            else b''
        if token and self.staff_token and hmac.compare_digest(
                token, self.staff_token.encode()):
            return 'staff'
        if not self.api_token:
            return 'device'
        if token and hmac.compare_digest(token, self.api_token.encode()):
            return 'device'
        return None

    def authorized(self, header):
        return self.role(header) is not None

    def check_origin(self, origin, host):
        """Refuse (RequestError 403) a browser's cross-origin request, and
        on a box without a token any Host that is not loopback."""
        host = (host or '').strip().lower()
        if not self.api_token:
            if host.startswith('['):            # [::1]:8100
                name = host[:host.find(']') + 1]
            else:
                name = host.rpartition(':')[0] if ':' in host else host
            if not is_loopback(name):
                raise RequestError('This box answers only on its loopback '
                    'address without a token.', status=403,
                    code='forbidden_origin')
        if origin is None:
            return
        origin = origin.strip().rstrip('/').lower()
        if origin in self.allowed_origins or origin in (
                f'http://{host}', f'https://{host}'):
            return
        raise RequestError('Requests from this web origin are not '
            'allowed (api.allowed_origins).', status=403,
            code='forbidden_origin')

    SITE_STATUS = {'allotment_exhausted': 409, 'allotment_released': 409,
        'no_key': 503, 'not_synced': 503}

    def _site(self):
        if self.site is None or not self.site.active:
            raise RequestError('This box is not a site: the ERP has not '
                'given it the site role.', status=404, code='not_a_site')
        return self.site

    def sell(self, body, role='device'):
        """(status, JSON) for a /site/sell body: one ticket from the site
        allotment, signed here; only the staff role when a staff token is
        set (the ticket window)."""
        site = self._site()
        if self.staff_token and role != 'staff':
            raise RequestError('Selling is the ticket window\'s: send it '
                'with api.staff_token.', status=403, code='staff_only')
        if not isinstance(body, dict):
            raise RequestError('The body must be a JSON object.')
        for name in ('ticket_type', 'slot'):
            if not _is_int(body.get(name)) or body[name] < 1:
                raise RequestError(f'"{name}" must be a positive integer.',
                    name)
        payment = body.get('payment', 'cash')
        if not isinstance(payment, str) or not 0 < len(payment) <= 30:
            raise RequestError('"payment" must be a short string.',
                'payment')
        from .site import SiteError
        try:
            sale = site.sell(body['ticket_type'], body['slot'], payment)
        except SiteError as error:
            raise RequestError(error.message, error.field,
                status=self.SITE_STATUS.get(error.code, 422),
                code=error.code) from None
        if self.sync is not None:
            self.sync.kick()
        return 201, sale

    def site_status(self):
        site = self._site()
        return {'allotments': site.allotments(),
            'outbox': site.outbox_size(), **site.counts()}

    def read_idcard(self):
        """(200, {"card": {"name", "id_number"} | null}): the card on the
        desk's reader now (the counter or kiosk page polls). The number
        goes only to the page that asked (token and origin checked); it is
        never logged or kept here."""
        if self.idcard is None:
            raise RequestError('This box has no desk ID card reader '
                '([drivers.idcard] without a gate).', status=404,
                code='no_device')
        reader = getattr(self.idcard, 'reader', self.idcard)
        try:
            card = reader.read()
        except Exception:
            self.idcard.counters.add('read_errors')
            logger.exception('ID card reader %s failed', self.idcard.name)
            raise RequestError('The ID card reader failed.', status=503,
                code='device_error') from None
        if card is None:
            return 200, {'card': None}
        return 200, {'card': {'name': card.name,
            'id_number': card.id_number}}

    def print_jobs(self, body):
        """(200, {"printed": n}) for {"jobs": [job, …]} (the ERP's print
        jobs: tickets, receipts, reports), printed in order; a printer
        error stops there and answers 409 with what was printed."""
        from .drivers.printer import PrintError
        if self.printer is None:
            raise RequestError('This box has no printer ([drivers.printer]).',
                status=404, code='no_device')
        jobs = body.get('jobs') if isinstance(body, dict) else None
        if not isinstance(jobs, list) or not jobs or len(jobs) > 100 \
                or not all(isinstance(j, dict) for j in jobs):
            raise RequestError('"jobs" must be a list of 1 to 100 print '
                'jobs.', field='jobs')
        printed = 0
        for job in jobs:
            try:
                self.printer.print_job(job)
            except PrintError as error:
                return 409, {'printed': printed, 'error': {
                    'code': 'printer_error', 'message': str(error)}}
            printed += 1
        return 200, {'printed': printed}

    def scan(self, body, role='device'):
        """(status, JSON) for a /scan body (already JSON-decoded); only
        the staff role may send ``binding_confirmed``."""
        request = parse_scan(body)
        if request.binding_confirmed is not None and role != 'staff':
            raise RequestError('binding_confirmed is the staff\'s verdict: '
                'send it from the staff screen (api.staff_token).',
                'binding_confirmed', status=403, code='staff_only')
        gate_config = self._gate_config(request.gate)
        if gate_config is None:
            raise RequestError(f'This box does not serve gate '
                f'{request.gate!r}.', 'gate')
        info, lanes = self.store.gate(code=gate_config.code)
        if info is not None and lanes and request.lane > lanes:
            raise RequestError(f'Gate {gate_config.code} has {lanes} '
                'lane(s).', 'lane')
        if isinstance(request.gate, int):
            request = dataclasses.replace(request, gate=gate_config.code)
        result = self.validator.scan(request)
        answer = result.as_json()
        if result.decision.opened:
            answer['turnstile'] = self._open(gate_config, request.lane,
                result.decision.persons, result.decision.direction)
        return 200, answer

    def _gate_config(self, gate):
        if isinstance(gate, int):
            info, _ = self.store.gate(id=gate)
            return self.gates.get(info.code) if info else None
        return self.gates.get(gate)

    def _open(self, gate_config, lane, persons, direction):
        if self.turnstile is None:
            return {'ok': False, 'error': 'no turnstile configured'}
        channel = gate_config.channel(lane)
        try:
            with self._turnstile_lock:
                if self._takes_direction:
                    self.turnstile.open_passages(channel, persons,
                        direction=direction)
                else:
                    self.turnstile.open_passages(channel, persons)
        except Exception as error:
            self.turnstile_errors += 1
            logger.exception('Turnstile failed to open lane %s', channel)
            return {'ok': False, 'error': f'{type(error).__name__}: {error}'}
        return {'ok': True, 'channel': channel, 'passages': persons}

    def status(self):
        credentials = self.store.credentials()
        counts = self.store.counts()
        sync = self.sync.status() if self.sync else {}
        try:
            devices = list(self.devices())
        except Exception as error:
            devices = [{'kind': 'box', 'name': 'devices', 'ok': False,
                'errors': 1, 'error': str(error)}]
        gates = []
        for code, config in self.gates.items():
            info, lanes = self.store.gate(code=code)
            gates.append({'code': code, 'synced': info is not None,
                'id': info.id if info else None,
                'direction': info.direction if info else None,
                'zone': info.zone if info else None, 'lanes': lanes,
                'active': info.active if info else None})
        return {'box': credentials['box'] if credentials else None,
            'name': self.name, 'version': __version__,
            'enrolled': credentials is not None,
            'revoked': bool(self.store.get_meta('revoked')),
            'area': self.store.get_meta('area_id'),
            'online': sync.get('online', False),
            'last_sync': self.store.get_meta('last_sync_at'),
            'sync_lag_s': sync.get('sync_lag_s'),
            'last_error': sync.get('last_error'),
            'outbox': counts['outbox_pending'],
            'conflicts': counts['conflicts'],
            'counts': counts, 'devices': devices, 'gates': gates,
            'turnstile_errors': self.turnstile_errors,
            'clock_skew_s': sync.get('clock_skew_s'),
            'alarms': sync.get('alarms', [])}

    def photo(self, ref):
        """(bytes, content type) or None."""
        if not PHOTO_REF.fullmatch(ref or ''):
            return None
        card = CARD_PHOTO_REF.fullmatch(ref)
        if card:
            card_id = int(card.group(1))
            if not hmac.compare_digest(card.group(2),
                    self.store.photo_token(card_id)):
                return None
            return self._card_photo(card_id)
        if not BINDING_PHOTO_REF.fullmatch(ref):
            return None
        files = self.store.binding_files(ref)
        path = files and files.get('photo_path')
        if not path:
            return None
        try:
            with open(path, 'rb') as file:
                data = file.read()
        except OSError:
            return None
        return data, _content_type(data)

    def _card_photo(self, card_id):
        cache = os.path.join(self.data_dir, 'photos', f'card-{card_id}.img')
        try:
            with open(cache, 'rb') as file:
                data = file.read()
            return data, _content_type(data)
        except OSError:
            pass
        url = self.store.card_photo_url(card_id)
        if not url or self.photo_fetcher is None:
            return None
        try:
            data = self.photo_fetcher(url)
        except Exception as error:
            logger.info('Card photo %s not fetched: %s', card_id, error)
            return None
        if not data:
            return None
        os.makedirs(os.path.dirname(cache), mode=0o700, exist_ok=True)
        fd = os.open(cache, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'wb') as file:
            file.write(data)
        return data, _content_type(data)


class _Handler(BaseHTTPRequestHandler):
    server_version = f'scenic-iotbox/{__version__}'
    protocol_version = 'HTTP/1.1'
    # Headers and body go out in two writes: with Nagle on, the body waits
    # for the client's delayed ACK (~40 ms) on every keep-alive request.
    disable_nagle_algorithm = True

    @property
    def app(self):
        return self.server.app

    def log_message(self, format, *args):       # no PII in the access log
        logger.debug('%s %s', self.address_string(), format % args)

    def _send(self, status, body=None, data=None, content_type=None):
        if data is None:
            data = json.dumps(body, ensure_ascii=False,
                separators=(',', ':')).encode('utf-8')
            content_type = 'application/json; charset=utf-8'
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        self.send_header('Cache-Control', 'no-store')
        self._cors_headers()
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)

    def _error(self, error):
        self._send(error.status, error.body())

    def _cors_headers(self):
        """A page of an allowed origin (the counter or kiosk page served by
        the ERP, api.allowed_origins) may read the answer."""
        origin = self.headers.get('Origin')
        if not origin:
            return
        origin = origin.strip().rstrip('/')
        if origin.lower() in self.app.allowed_origins:
            self.send_header('Access-Control-Allow-Origin', origin)
            self.send_header('Vary', 'Origin')

    def do_OPTIONS(self):
        """The browser's preflight (no token in it): allowed origins only."""
        try:
            origin = self.headers.get('Origin')
            if not origin or origin.strip().rstrip('/').lower() \
                    not in self.app.allowed_origins:
                raise RequestError('Requests from this web origin are not '
                    'allowed (api.allowed_origins).', status=403,
                    code='forbidden_origin')
            self.app.check_origin(origin, self.headers.get('Host'))
        except RequestError as error:
            self._error(error)
            return
        self.send_response(204)
        self._cors_headers()
        self.send_header('Access-Control-Allow-Methods', 'GET, POST')
        self.send_header('Access-Control-Allow-Headers',
            'Authorization, Content-Type')
        self.send_header('Access-Control-Allow-Private-Network', 'true')
        self.send_header('Access-Control-Max-Age', '600')
        self.send_header('Content-Length', '0')
        self.end_headers()

    def _guard(self, handler):
        try:
            self.role = self.app.role(self.headers.get('Authorization'))
            if self.role is None:
                raise RequestError('A valid token is required: '
                    '"Authorization: Bearer <token>".', status=401,
                    code='unauthorized')
            self.app.check_origin(self.headers.get('Origin'),
                self.headers.get('Host'))
            handler()
        except RequestError as error:
            self._error(error)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            logger.exception('Local API error on %s %s', self.command,
                urlsplit(self.path).path)
            self.close_connection = True
            try:
                self._send(503, {'error': {'code': 'unavailable',
                    'message': 'The box could not handle this request; '
                    'the gate stays closed.'}})
            except OSError:
                pass

    def _read_body(self):
        length = self.headers.get('Content-Length')
        if self.headers.get('Transfer-Encoding'):
            self.close_connection = True
            raise RequestError('Send the body with a Content-Length.',
                status=411, code='invalid_request')
        try:
            length = int(length)
        except (TypeError, ValueError):
            self.close_connection = True
            raise RequestError('Content-Length is required.',
                status=411) from None
        if length < 0:
            self.close_connection = True
            raise RequestError('Bad Content-Length.')
        if length > MAX_BODY:
            self.close_connection = True
            raise RequestError('The body is too large.', status=413,
                code='too_large')
        data = self.rfile.read(length)
        if len(data) != length:
            self.close_connection = True
            raise RequestError('The body is truncated.')
        return data

    def do_POST(self):
        def handle():
            path = urlsplit(self.path).path
            if path not in ('/scan', '/site/sell', '/print'):
                raise RequestError('Not found.', status=404,
                    code='not_found')
            kind = (self.headers.get('Content-Type') or '').split(';')[0]
            if kind.strip().lower() != 'application/json':
                self.close_connection = True
                raise RequestError('Send the body as application/json.',
                    status=415, code='unsupported_media_type')
            data = self._read_body()
            try:
                body = json.loads(data.decode('utf-8'))
            except (UnicodeDecodeError, ValueError, RecursionError):
                raise RequestError('The body is not JSON.') from None
            if path == '/site/sell':
                status, answer = self.app.sell(body, self.role)
            elif path == '/print':
                status, answer = self.app.print_jobs(body)
            else:
                status, answer = self.app.scan(body, self.role)
            self._send(status, answer)
        self._guard(handle)

    def do_GET(self):
        def handle():
            path = urlsplit(self.path).path
            if path == '/status':
                self._send(200, self.app.status())
                return
            if path == '/site':
                self._send(200, self.app.site_status())
                return
            if path == '/idcard':
                self._send(*self.app.read_idcard())
                return
            if path.startswith('/photos/'):
                found = self.app.photo(path[len('/photos/'):])
                if found is None:
                    raise RequestError('No such photo.', status=404,
                        code='not_found')
                data, content_type = found
                self._send(200, data=data, content_type=content_type)
                return
            raise RequestError('Not found.', status=404, code='not_found')
        self._guard(handle)

    def do_HEAD(self):
        self.do_GET()

    def _not_allowed(self):
        self._guard(lambda: (_ for _ in ()).throw(RequestError(
            'Method not allowed.', status=405, code='method_not_allowed')))

    do_PUT = do_DELETE = do_PATCH = _not_allowed


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, app):
        if not is_loopback(address[0]) and not app.api_token:
            raise ValueError(f'The local API on {address[0]} needs a token '
                '(api.token): only loopback may be open.')
        self.app = app
        super().__init__(address, _Handler)

    @property
    def url(self):
        host, port = self.server_address[:2]
        return f'http://{host}:{port}'

    def start(self):
        thread = threading.Thread(target=self.serve_forever,
            kwargs={'poll_interval': 0.1}, name='scenic-iotbox-api',
            daemon=True)
        thread.start()
        self._thread = thread
        return thread

    def stop(self):
        self.shutdown()
        self.server_close()
