"""Test doubles for the box core: a fake ERP (PROTOCOL.md, minimal), a fake
turnstile, a fake biometric matcher, and helpers to sign codes."""

import base64
import gzip
import hashlib
import json
import secrets
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from scenic_common import pii, protocol, ticketcode
from scenic_common.ticketcode import SigningKey, TicketPayload

SHANGHAI = ZoneInfo('Asia/Shanghai')
AREA = 1
MASTER = 'fake-erp-pii-master-key-long-enough-0123456789'
VAULT = pii.PIIVault(MASTER)
# The area's gate-hash generations the ERP sends at enrolment and sync (a
# cheap scrypt, N = 2**10, to keep the tests fast; the ERP's is 2**14).
GENERATIONS = protocol.generation_answer(VAULT.gate_secret(), AREA, [(1, 10)])


def gate_hash(number, id_type='resident_id', generation=None):
    "The gate hash the ERP would send for a holder (current generation)."
    generation = generation or GENERATIONS[0]
    return protocol.gate_hash(base64.b64decode(generation['pepper']),
        id_type, number, generation['log2_n'])

KEY = SigningKey.generate(1)
NOW = datetime(2026, 5, 1, 10, 0, tzinfo=SHANGHAI)
SLOT_START = datetime(2026, 5, 1, 9, 0, tzinfo=SHANGHAI)
SLOT_END = datetime(2026, 5, 1, 17, 0, tzinfo=SHANGHAI)
ID_NUMBER = '11010519491231002X'


def sign(ticket_id, type_id=5, persons=1, entries=1, valid_from=SLOT_START,
        valid_until=SLOT_END, key=KEY, holder=None, area=AREA):
    holder_hash = VAULT.short_hash('resident_id', holder) if holder else b''
    return ticketcode.encode(TicketPayload(ticket_id=ticket_id,
        area_id=area, ticket_type_id=type_id, valid_from=valid_from,
        valid_until=valid_until, persons=persons, entries=entries,
        key_id=key.key_id, holder_hash=holder_hash), key)


def sign_now(ticket_id, **kwargs):
    """A code valid around the real clock (for the service tests)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    kwargs.setdefault('valid_from', now - timedelta(hours=1))
    kwargs.setdefault('valid_until', now + timedelta(hours=8))
    return sign(ticket_id, **kwargs)


def iso(moment):
    return moment.isoformat()


def demo_data():
    """What the fake ERP serves: the demo's main gate."""
    return {
        'keys': [{'key_id': 1, 'public_key': base64.b64encode(
            KEY.public_bytes()).decode(), 'retired': False}],
        'revoked': [],
        'ticket_types': [
            {'id': 5, 'code': 'ADULT', 'zones': [1], 'persons': 1,
                'entries': 1, 'binding': 'none', 'rule': 3},
            {'id': 6, 'code': 'GROUP10', 'zones': [1], 'persons': 10,
                'entries': 1, 'binding': 'none', 'rule': 3},
            {'id': 7, 'code': 'TWODAY', 'zones': [1], 'persons': 1,
                'entries': 0, 'binding': 'face', 'rule': 4},
            {'id': 8, 'code': 'IDREENTRY', 'zones': [1], 'persons': 1,
                'entries': 3, 'binding': 'id_card', 'rule': 3},
            {'id': 12, 'code': 'ANNUAL', 'zones': [1], 'persons': 1,
                'entries': 0, 'binding': 'none', 'rule': 3},
            {'id': 13, 'code': 'COUNT10', 'zones': [1], 'persons': 1,
                'entries': 0, 'binding': 'none', 'rule': 5},
        ],
        'rules': [
            {'id': 3, 'early_minutes': 30, 'late_minutes': 0,
                'min_interval_minutes': 0, 'anti_passback': True,
                'exit_counts': False},
            {'id': 4, 'early_minutes': 0, 'late_minutes': 0,
                'min_interval_minutes': 0, 'anti_passback': True,
                'exit_counts': True},
            {'id': 5, 'early_minutes': 0, 'late_minutes': 0,
                'min_interval_minutes': 0, 'anti_passback': False,
                'exit_counts': False},
        ],
        'zones': [{'id': 1, 'code': 'MAIN', 'instant_max': 5600,
            'inside': 1234}],
        'gates': [
            {'id': 7, 'code': 'MAIN-IN', 'zone': 1, 'direction': 'in',
                'lanes': 4, 'ticket_types': [], 'active': True},
            {'id': 8, 'code': 'MAIN-OUT', 'zone': 1, 'direction': 'out',
                'lanes': 4, 'ticket_types': [], 'active': True},
        ],
        'cards': [
            {'uid': '04A1B2C3D4', 'card': 9, 'ticket_type': 12,
                'state': 'active', 'holder_hash': 'ab' * 32,
                'holder_masked': '110…1234',
                'valid_from': iso(datetime(2026, 1, 1, tzinfo=SHANGHAI)),
                'valid_until': iso(datetime(2027, 1, 1, tzinfo=SHANGHAI)),
                'remaining': None,
                'photo_url': '/demo/scenic/gate/v1/photos/card9'},
            {'uid': '04C0FFEE01', 'card': 10, 'ticket_type': 13,
                'state': 'active', 'holder_hash': 'cd' * 32,
                'holder_masked': '110…5678',
                'valid_from': iso(datetime(2026, 1, 1, tzinfo=SHANGHAI)),
                'valid_until': iso(datetime(2027, 1, 1, tzinfo=SHANGHAI)),
                'remaining': 2, 'photo_url': None},
            {'uid': '04DEAD0001', 'card': 11, 'ticket_type': 12,
                'state': 'lost', 'holder_hash': None,
                'valid_from': None, 'valid_until': None, 'remaining': None},
        ],
        'tickets': [],
        'usage': [],
    }


def full_answer(data=None, watermark=None):
    """A full sync answer of ``data`` (default: the demo's)."""
    answer = {'watermark': watermark or f'{iso(NOW)}#0', 'full': True,
        'area': {'id': AREA, 'timezone': 'Asia/Shanghai'},
        'gate_generations': GENERATIONS}
    for table, items in (data or demo_data()).items():
        answer[table] = [dict(i) for i in items]
    return answer


class FakeErp:
    """PROTOCOL.md on 127.0.0.1, minimal, recording what it receives.

    ``off()``/``on()`` close and reopen the listening socket (an outage);
    ``lose_answers = n`` processes the next n scan uploads but drops the
    connection before answering (the box must resend; duplicates).
    """

    def __init__(self, database='demo', host='127.0.0.1'):
        self.database = database
        self.host = host
        self.prefix = f'/{database}/scenic/gate/v1'
        self.lock = threading.Lock()
        self.tokens = {'TOKEN-1': 42}
        self.boxes = {}              # id -> secret
        self.revoked_boxes = set()
        self.data = demo_data()
        self.changes = 0             # bumps on every change
        self.changed = {}            # (table, key) -> change number
        self.scans = {}              # nonce -> scan
        self.entries = {}            # ticket -> admitted entries
        self.site = None             # the sync's "site" section, if any
        self.sales = {}              # nonce -> sale (POST /sales)
        self.sales_through = None
        self._sold_by_slot = {}
        self.batches = []            # list of nonce lists, as received
        self.heartbeats = []
        self.syncs = []              # 'since' of each sync
        self.requests = []           # (method, path)
        self.lose_answers = 0
        self.received_bytes = 0      # request bodies, as received
        self.fail_status = None      # e.g. 503 for every call
        self.photos = {'card9': b'\xff\xd8\xff\xe0fakejpeg'}
        self.server = None
        self.port = 0
        self.on()

    # --- control -----------------------------------------------------------

    @property
    def url(self):
        return f'http://{self.host}:{self.port}'

    def on(self):
        erp = self

        class Handler(_Handler):
            pass
        Handler.erp = erp
        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
            kwargs={'poll_interval': 0.05}, daemon=True)
        self.thread.start()

    def off(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def close(self):
        self.off()

    def change(self, table, item, key='id'):
        """Add or replace an item (by ``key``) as the ERP would."""
        with self.lock:
            items = self.data[table]
            for i, old in enumerate(items):
                if old.get(key) == item.get(key):
                    items[i] = item
                    break
            else:
                items.append(item)
            self.changes += 1
            self.changed[(table, item.get(key))] = self.changes

    def revoke(self, ticket_id):
        self.change('revoked', {'ticket': ticket_id,
            'at': iso(NOW)}, key='ticket')

    def upload_count(self, nonce):
        return sum(batch.count(nonce) for batch in self.batches)

    # --- protocol ------------------------------------------------------------

    def sync_answer(self, since):
        with self.lock:
            full = True
            floor = 0
            if since:
                try:
                    floor = int(since.rsplit('#', 1)[1])
                    full = False
                except (IndexError, ValueError):
                    full = True
            keys = {'revoked': 'ticket', 'cards': 'uid', 'tickets': 'ticket',
                'usage': 'ticket', 'keys': 'key_id'}
            answer = {'watermark': f'{iso(NOW)}#{self.changes}',
                'full': full, 'area': {'id': AREA,
                    'timezone': 'Asia/Shanghai'},
                'gate_generations': GENERATIONS}
            for table, items in self.data.items():
                key = keys.get(table, 'id')
                if full:
                    answer[table] = [dict(i) for i in items]
                else:
                    answer[table] = [dict(i) for i in items
                        if self.changed.get((table, i.get(key)), 0) > floor]
            return answer

    def apply_sales(self, sales, through=None):
        """Sales of a site, once by nonce; beyond the allotment of their
        slot a conflict (as scenic_gate.site.upload_sales)."""
        accepted, duplicates, conflicts = [], [], []
        with self.lock:
            quotas = {a['slot']: a['quota']
                for a in (self.site or {}).get('allotments', [])}
            for sale in sales:
                nonce = sale['nonce']
                if nonce in self.sales:
                    duplicates.append(nonce)
                    continue
                sold = self._sold(sale['slot'])
                ok = sold + sale['persons'] <= quotas.get(sale['slot'], 0)
                self.sales[nonce] = dict(sale, ok=ok)
                self._sold_by_slot[sale['slot']] = \
                    self._sold(sale['slot']) + (sale['persons'] if ok else 0)
                if ok:
                    accepted.append(nonce)
                else:
                    conflicts.append({'nonce': nonce,
                        'reason': 'allotment_exhausted'})
            if through:
                self.sales_through = through
        return {'accepted': accepted, 'duplicates': duplicates,
            'conflicts': conflicts}

    def _sold(self, slot):
        return self._sold_by_slot.get(slot, 0)

    def apply_scans(self, scans):
        accepted, duplicates, conflicts = [], [], []
        with self.lock:
            for scan in scans:
                nonce = scan['nonce']
                if nonce in self.scans:
                    duplicates.append(nonce)
                    continue
                self.scans[nonce] = scan
                if scan['decision'] != 'open':
                    accepted.append(nonce)
                    continue
                if scan['direction'] == 'in':
                    zone = self.data['zones'][0]
                    zone['inside'] += scan['persons']
                    self.changes += 1
                    self.changed[('zones', zone['id'])] = self.changes
                    if scan.get('card'):
                        for card in self.data['cards']:
                            if card['card'] == scan['card'] and \
                                    card.get('remaining') is not None:
                                card['remaining'] -= 1
                                self.changed[('cards', card['uid'])] = \
                                    self.changes
                    if scan.get('ticket'):
                        used = self.entries.get(scan['ticket'], 0) + 1
                        self.entries[scan['ticket']] = used
                        if used > 1 and scan['ticket'] < 1000:
                            conflicts.append({'nonce': nonce,
                                'reason': 'already_used'})
                            continue
                accepted.append(nonce)
        return {'accepted': accepted, 'duplicates': duplicates,
            'conflicts': conflicts}


class _Handler(BaseHTTPRequestHandler):
    erp = None
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode()
        gzipped = 'gzip' in (self.headers.get('Accept-Encoding') or '')
        if gzipped and len(data) > 100:
            data = gzip.compress(data)
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        if gzipped and len(data) and data[:2] == b'\x1f\x8b':
            self.send_header('Content-Encoding', 'gzip')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status, code, message):
        self._send(status, {'error': {'code': code, 'message': message}})

    def _body(self):
        length = int(self.headers.get('Content-Length') or 0)
        data = self.rfile.read(length)
        self.erp.received_bytes += len(data)
        if self.headers.get('Content-Encoding') == 'gzip':
            data = gzip.decompress(data)
        return json.loads(data or b'{}')

    def _box(self):
        header = self.headers.get('Authorization') or ''
        scheme, _, value = header.partition(' ')
        box, _, secret = value.partition(':')
        erp = self.erp
        try:
            box = int(box)
        except ValueError:
            box = None
        if scheme != 'Box' or erp.boxes.get(box) != secret:
            self._error(401, 'unauthorized', 'Bad box credentials.')
            return None
        if box in erp.revoked_boxes:
            self._error(409, 'revoked', 'This box is revoked.')
            return None
        return box

    def _route(self, method):
        erp = self.erp
        path = urlsplit(self.path)
        erp.requests.append((method, path.path))
        if erp.fail_status:
            self._error(erp.fail_status, 'unavailable', 'Down.')
            return
        if not path.path.startswith(erp.prefix):
            self._error(404, 'not_found', 'No such path.')
            return
        route = path.path[len(erp.prefix):]
        if method == 'POST' and route == '/enrol':
            body = self._body()
            box = erp.tokens.pop(body.get('token'), None)
            if box is None:
                self._error(401, 'unauthorized', 'Bad or spent token.')
                return
            secret = secrets.token_urlsafe(32)
            erp.boxes[box] = secret
            self._send(201, {'box': box, 'secret': secret, 'area': AREA,
                'gate_generations': GENERATIONS})
            return
        box = self._box()
        if box is None:
            return
        if method == 'GET' and route == '/sync':
            since = parse_qs(path.query).get('since', [None])[0]
            erp.syncs.append(since)
            answer = erp.sync_answer(since)
            if erp.site is not None:
                answer['site'] = erp.site
            self._send(200, answer)
        elif method == 'POST' and route == '/sales':
            if erp.site is None:
                self._error(403, 'not_a_site', 'This box is not a site.')
                return
            body = self._body()
            assert len(body['sales']) <= 1000
            self._send(200, erp.apply_sales(body['sales'],
                body.get('through')))
        elif method == 'POST' and route == '/scans':
            scans = self._body()['scans']
            assert len(scans) <= 1000
            for i, scan in enumerate(scans):
                try:
                    datetime.fromisoformat(scan['at'])
                except (KeyError, TypeError, ValueError):
                    self._send(422, {'error': {'code': 'invalid_request',
                        'message': "'at' must be an ISO 8601 time.",
                        'field': f'scans[{i}].at'}})
                    return
            erp.batches.append([s['nonce'] for s in scans])
            answer = erp.apply_scans(scans)
            if erp.lose_answers:
                erp.lose_answers -= 1
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            self._send(200, answer)
        elif method == 'POST' and route == '/heartbeat':
            body = self._body()
            for i, device in enumerate(body.get('devices') or []):
                # scenic_gate's DEVICE_KINDS
                if device.get('kind') not in ('turnstile', 'qr_reader',
                        'id_reader', 'rfid_reader', 'camera', 'kiosk',
                        'printer'):
                    self._send(422, {'error': {'code': 'invalid_request',
                        'message': 'bad kind',
                        'field': f'devices[{i}].kind'}})
                    return
            erp.heartbeats.append(body)
            self._send(200, {'server_time': iso(NOW)})
        elif method == 'GET' and route.startswith('/photos/'):
            data = erp.photos.get(route[len('/photos/'):])
            if data is None:
                self._error(404, 'not_found', 'No photo.')
                return
            self.send_response(200)
            self.send_header('Content-Type', 'image/jpeg')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._error(404, 'not_found', 'No such path.')

    def do_GET(self):
        self._route('GET')

    def do_POST(self):
        self._route('POST')


class FakeTurnstile:

    def __init__(self, fail=False):
        self.opened = []
        self.directions = []
        self.fail = fail
        self.lock = threading.Lock()

    def open_passages(self, channel, n, direction='in'):
        if self.fail:
            raise IOError('turnstile jammed')
        with self.lock:
            self.opened.append((channel, n))
            self.directions.append(direction)

    def status(self):
        return {'kind': 'turnstile', 'name': 'fake', 'ok': not self.fail,
            'errors': 0}


class FakeMatcher:
    """enrol(image) → template; match(template, image) → (ok, distance).
    Faces are equal when the images' first byte is equal."""

    def __init__(self):
        self.enrolled = []
        self.matched = []

    def enrol(self, image):
        self.enrolled.append(image)
        return b'T' + hashlib.sha256(image[:1]).digest()

    def match(self, template, image):
        self.matched.append(image)
        ok = template == b'T' + hashlib.sha256(image[:1]).digest()
        return ok, 0.3 if ok else 0.8


class Clock:
    """A settable clock."""

    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, **kwargs):
        self.now += timedelta(**kwargs)
        return self.now


def utc(moment):
    return moment.astimezone(timezone.utc)
