"""The partner API: signed JSON calls of OTA platforms and agencies under
/<db>/scenic/partner/v1 (contract: openapi.json there, see openapi.py).

Requests are signed with HMAC-SHA256 (scenic_common.partnersign). The
signature is checked, and the nonce recorded, in a transaction of its own
that commits before the call runs: a nonce is spent even when the call is
refused or retried, so a captured request cannot be played again.
"""
import datetime as dt
import re

from scenic_common import partnersign

from scenic_ticket import web
from scenic_ticket.api import (
    PHONE_RE, _text, money, order_json, parse_amount, parse_booking,
    parse_date)
from scenic_ticket.dbtools import naive, now_utc, use_read_committed
from scenic_ticket.slot import area_today
from scenic_ticket.web import json_body, json_response

from trytond.pool import Pool
from trytond.transaction import Transaction

from . import booking, notice
from .booking import PartnerError
from .money import record_charge, record_refund
from .openapi import openapi_document

PREFIX = '/<database_name>/scenic/partner/v1'
PARTNER_ORDER_ID_RE = re.compile(r'^[A-Za-z0-9._:-]{1,64}$')


def _request_target(request):
    "The path and query string exactly as the client sent them."
    raw = request.environ.get('RAW_URI') or request.environ.get(
        'REQUEST_URI')
    if raw:
        path, _, query = raw.partition('?')
        return path, query
    return (request.script_root + request.path,
        request.environ.get('QUERY_STRING', ''))


def authenticate(pool, request, now=None):
    "Check a request's signature and spend its nonce; return the partner id."
    try:
        key_id, timestamp, nonce, signature = partnersign.parse_headers(
            request.headers)
        partnersign.check_timestamp(timestamp, now=now)
    except partnersign.SignatureError as error:
        raise PartnerError(error.code, error.message)
    path, query = _request_target(request)
    body = request.get_data()
    with Transaction().start(pool.database_name, 0) as transaction:
        use_read_committed()
        Partner = pool.get('scenic.group.partner')
        partner = Partner.from_key_id(key_id)
        if not partner or not partnersign.verify(
                partner.signing_secrets(), request.method, path, query,
                timestamp, nonce, body, signature):
            raise PartnerError('bad_signature',
                "The signature does not match (or the key is unknown).")
        table = pool.get('scenic.group.nonce').__table__()
        cursor = transaction.connection.cursor()
        from sql import Conflict
        cursor.execute(*table.insert(
                [table.partner, table.nonce, table.seen_at,
                    table.create_uid, table.create_date],
                [[partner.id, nonce, naive(now_utc()), 0,
                        naive(now_utc())]],
                on_conflict=Conflict(table, indexed_columns=[
                        table.partner, table.nonce])))
        if cursor.rowcount != 1:
            raise PartnerError('replayed_nonce',
                "This nonce was already used: sign each request with a "
                "new one.")
        result = partner.id, partner.company.id
        transaction.commit()
    return result


def check_signature(pool, request):
    "web.endpoint's signature check: the partner that signed the request."
    partner_id, company = authenticate(pool, request)
    return 'scenic.group.partner', partner_id, company


def endpoint(path, methods, readonly=False, signed=True):
    """Route a handler(request, partner, **kwargs) -> Response through
    web.endpoint: the signature is checked once, the call itself is one
    transaction (READ COMMITTED for writes) retried when it raced."""
    return web.endpoint(path, methods, PREFIX, readonly=readonly,
        auth=signed, check_signature=check_signature,
        error_class=PartnerError, log_refusals="partner API")


# --- rendering ---------------------------------------------------------------

def partner_order_json(order):
    data = order_json(order, Pool().database_name)
    data['partner_order_id'] = order.partner_order_id
    if order.leader_name:
        data['leader'] = {'name': order.leader_name}
    for ticket_json, ticket in zip(data.get('tickets', []),
            sorted(order.tickets, key=lambda t: t.id)):
        if ticket.partner_code:
            ticket_json['code'] = ticket.partner_code
            ticket_json['partner_code'] = True
        ticket_json.pop('qr_svg_url', None) if ticket.partner_code else None
    refunds = [p for p in order.payments if p.kind == 'refund']
    if refunds:
        data['refunded'] = money(sum(p.amount for p in refunds))
    return data


def _partner_order_id(value):
    if not isinstance(value, str) or not PARTNER_ORDER_ID_RE.match(value):
        raise PartnerError('invalid_request',
            "'partner_order_id' must be 1 to 64 characters of "
            "A-Z a-z 0-9 . _ : -.", 'partner_order_id')
    return value


# --- routes --------------------------------------------------------------------

@endpoint('/products', ['GET'], readonly=True)
def get_products(request, partner):
    "Ticket types of the partner's contract with its net prices."
    today = area_today(partner.company)
    contract = partner.contract_on(today) or next(
        (c for c in partner.contracts if c.state == 'active'), None)
    if not contract:
        raise PartnerError('no_contract', "You have no active contract.")
    by_type = {}
    for line in contract.prices:
        ttype = line.ticket_type
        entry = by_type.setdefault(ttype.id, {
                'ticket_type': ttype.code, 'name': ttype.name,
                'real_name': bool(ttype.real_name),
                'persons': ttype.persons, 'net_prices': []})
        entry['net_prices'].append({
                'from': line.date_from.isoformat() if line.date_from
                else None,
                'to': line.date_to.isoformat() if line.date_to else None,
                'price': money(line.price)})
    return json_response({
            'contract': contract.number,
            'currency': partner.company.currency.code,
            'products': sorted(by_type.values(),
                key=lambda p: p['ticket_type']),
            })


@endpoint('/calendar', ['GET'], readonly=True)
def get_calendar(request, partner):
    "Slots of a day with the partner's prices and stock."
    pool = Pool()
    TimeSlot = pool.get('scenic.time_slot')
    Allotment = pool.get('scenic.group.allotment')
    DayAllotment = pool.get('scenic.group.day_allotment')
    date = parse_date(request.args.get('date'))
    contract = partner.contract_on(date)
    if not contract:
        raise PartnerError('no_contract',
            "You have no active contract for that date.", 'date')
    slots = TimeSlot.search([
            ('company', '=', partner.company.id), ('date', '=', date)],
        order=[('start_time', 'ASC'), ('id', 'ASC')])
    allotments = {a.slot.id: a for a in Allotment.search([
                ('partner', '=', partner.id), ('date', '=', date)])}
    day, = DayAllotment.search([('partner', '=', partner.id),
            ('date', '=', date)]) or [None]
    prices = []
    for line in contract.prices:
        price = contract.net_price(line.ticket_type.id, date)
        if price is not None and line.ticket_type.code not in {
                p['ticket_type'] for p in prices}:
            prices.append({'ticket_type': line.ticket_type.code,
                    'price': money(price)})
    result = []
    for slot in slots:
        allotment = allotments.get(slot.id)
        general = max(slot.available or 0, 0)
        result.append({
                'slot': slot.id,
                'start': slot.aware(slot.start_time).isoformat(),
                'end': slot.aware(slot.end_time).isoformat(),
                'allotment': quota_json(allotment),
                'area_available': general,
                'stock': partner_stock(contract, allotment, day, general),
                'prices': prices,
                })
    return json_response({'date': date.isoformat(),
            'currency': partner.company.currency.code,
            'day_allotment': quota_json(day), 'slots': result})


def quota_json(allotment):
    if not allotment:
        return None
    return {
        'quota': allotment.quota,
        'remaining': allotment.remaining,
        'release_at': allotment.release_at.replace(
            tzinfo=dt.timezone.utc).isoformat(),
        'released': bool(allotment.released),
        }


def partner_stock(contract, allotment, day, general):
    """What a partner may still book on a slot: the smaller of what its
    allotments leave and the area's places, as booking.claim_allotments
    decides. A slot's allotment holds its places (they count as booked
    on the slot); a day quota does not hold slot places."""
    live = [a for a in (allotment, day) if a and not a.released]
    if allotment and not allotment.released:
        room = allotment.remaining
    elif live or contract.free_sale:
        room = general
    else:
        room = 0
    return min([room] + [a.remaining for a in live])


def parse_leader(data):
    leader = data.get('leader')
    if leader is None:
        return None
    if not isinstance(leader, dict):
        raise PartnerError('invalid_request',
            "'leader' must be an object with a name and a phone.", 'leader')
    phone = _text(leader, 'phone', 'leader.phone', max_length=20)
    if not PHONE_RE.match(phone):
        raise PartnerError('invalid_request',
            "'phone' must be a phone number.", 'leader.phone')
    return {'name': _text(leader, 'name', 'leader.name'),
        'phone': phone.replace(' ', '').replace('-', '')}


@endpoint('/orders', ['POST'])
def post_order(request, partner):
    data = json_body(request)
    partner_order_id = _partner_order_id(data.get('partner_order_id'))
    request_ = parse_booking(data)
    leader = parse_leader(data)
    order_id, replayed = booking.book(
        partner, request_, partner_order_id, leader=leader)
    Transaction().commit()
    order = Pool().get('scenic.order')(order_id)
    headers = {'Idempotent-Replayed': 'true'} if replayed else None
    return json_response(partner_order_json(order), status=201,
        headers=headers)


@endpoint('/orders/<partner_order_id>', ['GET'], readonly=True)
def get_order(request, partner, partner_order_id):
    order = booking.get_order(partner, partner_order_id)
    return json_response(partner_order_json(order))


@endpoint('/orders/<partner_order_id>/pay', ['POST'])
def post_pay(request, partner, partner_order_id):
    data = json_body(request)
    if 'amount' not in data:
        raise PartnerError('invalid_request', "'amount' is required.",
            'amount')
    amount = parse_amount(data['amount'])
    order = booking.get_order(partner, partner_order_id)
    first = order.state == 'reserved'
    order = booking.pay(partner, order, amount, codes=data.get('codes'))
    if first:
        record_charge(partner, order)
    Transaction().commit()
    return json_response(partner_order_json(order))


@endpoint('/orders/<partner_order_id>/cancel', ['POST'])
def post_cancel(request, partner, partner_order_id):
    order = booking.get_order(partner, partner_order_id)
    order = booking.cancel_and_record(partner, order.id)
    Transaction().commit()
    return json_response(partner_order_json(order))


@endpoint('/orders/<partner_order_id>/refund', ['POST'])
def post_refund(request, partner, partner_order_id):
    "Refund some tickets (by id) or, without 'tickets', all of them."
    data = json_body(request)
    order = booking.get_order(partner, partner_order_id)
    tickets = data.get('tickets')
    if tickets is None:
        tickets = [t.id for t in order.tickets if t.state == 'valid']
    if (not isinstance(tickets, list) or not tickets or not all(
                isinstance(t, int) and not isinstance(t, bool)
                for t in tickets) or len(set(tickets)) != len(tickets)):
        raise PartnerError('invalid_request',
            "'tickets' must be a non-empty list of distinct ticket ids.",
            'tickets')
    before = sum(p.amount for p in order.payments if p.kind == 'refund')
    order, chosen = booking.partial_refund(partner, order, tickets)
    after = sum(p.amount for p in order.payments if p.kind == 'refund')
    record_refund(partner, order, after - before)
    notice.enqueue(partner, order, 'refund_approved', {
            'tickets': sorted(t.id for t in chosen),
            'amount': money(after - before)})
    Transaction().commit()
    return json_response(partner_order_json(order))


@endpoint('/openapi.json', ['GET'], readonly=True, signed=False)
def get_openapi(request, partner):
    return json_response(openapi_document())
