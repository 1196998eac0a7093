"""The gate protocol (iot-box/PROTOCOL.md), ERP side: enrolment, sync, scan
upload, heartbeat and binding photos, under /<db>/scenic/gate/v1.

Boxes authenticate with `Authorization: Box <box id>:<secret>`. Errors,
transactions and retries are scenic_ticket.web's, as the booking API's.
"""
import functools
import gzip
import hmac
import logging
import re
from decimal import Decimal

from scenic_common import protocol
from scenic_ticket import web
from scenic_ticket.dbtools import now_utc
from scenic_ticket.errors import ApiError
from scenic_ticket.slot import area_timezone
from scenic_ticket.web import json_body, json_response

from trytond.pool import Pool
from trytond.protocols.wrappers import Response

from . import site, sync, upload
from .gatehash import generation_answer
from .gate import DEVICE_KINDS


logger = logging.getLogger(__name__)

PREFIX = '/<database_name>/scenic/gate/v1'
MAX_DEVICES = 64
PHOTO_TOKEN_RE = re.compile(r'^([0-9]{1,18})-([0-9a-zA-Z-]{16})$')
GZIP_MIN_SIZE = 4096
MAX_COUNT = 2 ** 31 - 1         # heartbeat counters: an INTEGER column


class BoxAuth:
    "The box a request comes from."
    __slots__ = ('id', 'company')

    def __init__(self, id, company):
        self.id = id
        self.company = company


def authenticate_box(request):
    Box = Pool().get('scenic.gate.box')
    header = request.headers.get('Authorization', '')
    scheme, _, credentials = header.partition(' ')
    box_id, _, secret = credentials.strip().partition(':')
    row = None
    if scheme.lower() == 'box' and box_id.isdigit() and secret:
        row = Box.authenticate(int(box_id), secret)
    if not row:
        raise ApiError('unauthorized',
            "Box credentials are required: "
            "'Authorization: Box <box id>:<secret>'.")
    id_, _, state, company = row
    if state == 'revoked':
        raise ApiError('revoked',
            "This box has been revoked: stop admitting on synced data.")
    if state != 'enrolled':
        raise ApiError('unauthorized', "This box is not enrolled.")
    return BoxAuth(id_, company), company


# Routes as the booking API's, authenticated by box credentials.
gate_endpoint = functools.partial(
    web.endpoint, prefix=PREFIX, authenticate=authenticate_box)


def _json(request, data, status=200):
    "JSON, gzipped when the box accepts it and it is worth it."
    body = sync.dumps(data)
    encoding = request.headers.get('Accept-Encoding', '')
    if len(body) >= GZIP_MIN_SIZE and 'gzip' in encoding:
        return Response(gzip.compress(body.encode(), compresslevel=5),
            status=status, content_type='application/json',
            headers={'Content-Encoding': 'gzip', 'Vary': 'Accept-Encoding'})
    return Response(body, status=status, content_type='application/json',
        headers={'Vary': 'Accept-Encoding'})


def _company(box):
    return Pool().get('company.company')(box.company)


# --- routes ------------------------------------------------------------------

@gate_endpoint('/enrol', ['POST'], auth=False)
def post_enrol(request, box):
    Box = Pool().get('scenic.gate.box')
    data = json_body(request)
    token = data.get('token')
    if not isinstance(token, str) or not token.strip() or len(token) > 200:
        raise ApiError('invalid_request',
            "'token' must be the enrolment token shown in the back office.",
            'token')
    hostname = data.get('hostname')
    if hostname is not None and not isinstance(hostname, str):
        raise ApiError('invalid_request', "'hostname' must be a string.",
            'hostname')
    record, secret = Box.enrol(token.strip(), hostname)
    if record is None:
        raise ApiError('unauthorized',
            "This enrolment token is not valid: it is wrong, expired or "
            "spent. Make a new one in the back office.", 'token')
    if secret is None:
        raise ApiError('revoked', "This box has been revoked.")
    return json_response({
            'box': record.id,
            'secret': secret,
            'area': record.company.id,
            'gate_generations': generation_answer(record.company.id),
            }, status=201)


@gate_endpoint('/sync', ['GET'], readonly=True)
def get_sync(request, box):
    since = request.args.get('since') or None
    company = _company(box)
    data = sync.snapshot(company, since, Pool().database_name)
    section = site.site_section(box.id, company)
    if section is not None:
        data['site'] = section
    return _json(request, data)


@gate_endpoint('/sales', ['POST'])
def post_sales(request, box):
    sales, through = site.parse_sales(json_body(request))
    return json_response(site.upload_sales(box.id, _company(box), sales,
            through))


@gate_endpoint('/scans', ['POST'])
def post_scans(request, box):
    scans = upload.parse_scans(json_body(request))
    return json_response(upload.upload(box.id, _company(box), scans))


def _parse_heartbeat(data):
    def count(name):
        value = data.get(name)
        if value is None:
            return None
        # Request bodies parse fractions as Decimal (scenic_ticket.web);
        # bounded before int(): int(Decimal('1e999999999')) would build a
        # billion-digit integer, and the column is a 32-bit integer.
        if (isinstance(value, bool)
                or not isinstance(value, (int, Decimal))
                or (isinstance(value, Decimal) and not value.is_finite())
                or not 0 <= value <= MAX_COUNT):
            raise ApiError('invalid_request',
                f"'{name}' must be a number from 0 to {MAX_COUNT}.", name)
        return int(value)

    version = data.get('version')
    if version is not None and (
            not isinstance(version, str) or len(version) > 64):
        raise ApiError('invalid_request',
            "'version' must be a string of at most 64 characters.",
            'version')
    devices = data.get('devices') or []
    if not isinstance(devices, list) or len(devices) > MAX_DEVICES:
        raise ApiError('invalid_request',
            f"'devices' must be a list of at most {MAX_DEVICES} devices.",
            'devices')
    kinds = dict(DEVICE_KINDS)
    parsed = []
    for i, device in enumerate(devices):
        where = f'devices[{i}]'
        if not isinstance(device, dict):
            raise ApiError('invalid_request',
                "Each device must be an object.", where)
        if device.get('kind') not in kinds:
            raise ApiError('invalid_request',
                f"'kind' must be one of {', '.join(kinds)}.",
                f'{where}.kind')
        name = device.get('name')
        if not isinstance(name, str) or not name or len(name) > 100:
            raise ApiError('invalid_request',
                "'name' must be a string of 1 to 100 characters.",
                f'{where}.name')
        errors = device.get('errors', 0) or 0
        if isinstance(errors, bool) or not isinstance(errors, int) \
                or not 0 <= errors <= MAX_COUNT:
            raise ApiError('invalid_request',
                f"'errors' must be an integer from 0 to {MAX_COUNT}.",
                f'{where}.errors')
        paper = device.get('paper')
        if paper is not None and paper not in protocol.PAPER_STATES:
            raise ApiError('invalid_request', "'paper' must be one of "
                f"{', '.join(protocol.PAPER_STATES)}.", f'{where}.paper')
        last_error = device.get('last_error')
        if last_error is not None and (not isinstance(last_error, str)
                or len(last_error) > protocol.DEVICE_ERROR_LENGTH):
            raise ApiError('invalid_request', "'last_error' must be a "
                f"string of at most {protocol.DEVICE_ERROR_LENGTH} "
                "characters.", f'{where}.last_error')
        parsed.append({'kind': device['kind'], 'name': name,
                'ok': device.get('ok') is True, 'errors': errors,
                'paper': paper, 'last_error': last_error or None})
    return {
        'version': version,
        'outbox': count('outbox'),
        'sync_lag_s': count('sync_lag_s'),
        'devices': parsed,
        }


@gate_endpoint('/heartbeat', ['POST'])
def post_heartbeat(request, box):
    Box = Pool().get('scenic.gate.box')
    data = _parse_heartbeat(json_body(request))
    Box.heartbeat(box.id, data)
    return json_response({'server_time': now_utc().astimezone(
                area_timezone(_company(box))).isoformat()})


def _image_type(data):
    if data[:3] == b'\xff\xd8\xff':
        return 'image/jpeg'
    if data[:8] == b'\x89PNG\r\n\x1a\n':
        return 'image/png'
    if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        return 'image/webp'
    return 'application/octet-stream'


@gate_endpoint('/photos/<token>', ['GET'], readonly=True)
def get_photo(request, box, token):
    Card = Pool().get('scenic.card')
    match = PHOTO_TOKEN_RE.match(token)
    cards = []
    if match:
        cards = Card.search([
                ('id', '=', int(match.group(1))),
                ('company', '=', box.company),
                ], limit=1)
    # the whole 16-character token (sync.py), compared in constant time
    if (not cards or not cards[0].binding_photo_id
            or not hmac.compare_digest(cards[0].binding_photo_id[:16],
                match.group(2))):
        raise ApiError('not_found', "No such photo.")
    data = cards[0].binding_photo
    if not data:
        raise ApiError('not_found', "No such photo.")
    data = bytes(data)
    return Response(data, content_type=_image_type(data),
        headers={'Cache-Control': 'private, max-age=86400'})
