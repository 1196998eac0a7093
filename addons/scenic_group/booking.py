"""Partner orders on the booking path.

A partner's order is a booking of scenic_ticket (same real-name, per-ID,
slot and daily rules, through `reservation.plan_booking` and `write_booking` on the partner's own
channel) with three things more, all in the booking's transaction:

- the contract: the partner must have an active contract on the visit date
  and a net price for every ticket type it orders; the order is priced at
  those net prices;
- the allotment, an extra claim: `sold + n <= quota` on the partner's
  allotment of the slot, taken before the booking's own claims, then the
  held places are handed to the booking (see partner.Allotment). Held
  places count as booked on the slot for everyone but the partner: its
  plan step leaves the slot's free places to that claim (`plan_booking`);
- idempotency by `partner_order_id` (the booking's Idempotency-Key on the
  partner's channel): the same id and body return the same order, another
  body is refused.

Lock order: allotment row, then the booking's (ID usages, slot, daily
counters). General bookings never lock an allotment, so the only new
wait is between a partner order and a general booking for the same ID on
the same day, which PostgreSQL resolves and the API retries.
"""
from collections import defaultdict
from decimal import Decimal

from sql import Null
from sql.aggregate import Sum

from scenic_common import partnercode
from scenic_ticket import reservation
from scenic_ticket.catalogue import Catalogue
from scenic_ticket.dbtools import forget, insert, lock, naive, now_utc
from scenic_ticket.errors import CODES, ApiError
from scenic_ticket.providers import PROVIDERS, PaymentProvider, register
from scenic_ticket.workflow import sql_transition

from trytond import backend
from trytond.pool import Pool
from trytond.transaction import Transaction

# Finance (scenic_finance) posts payments of this provider to the
# partner's receivable (1122 with the party).
PARTNER_PROVIDER = 'partner_credit'
CENT = Decimal('0.01')


# The partner API's own codes, beside the booking API's (errors.CODES):
# clients branch on them, so add codes, never rename them.
PARTNER_CODES = {
    'bad_signature': 401, 'stale_request': 401, 'replayed_nonce': 401,
    'no_contract': 403, 'allotment_exhausted': 409, 'credit_limit': 409,
    'deposit_insufficient': 409, 'not_refundable': 409,
    # a partner's own codes (contracts where the OTA issues codes)
    'malformed_code': 422, 'duplicate_code': 409,
    }


class PartnerError(ApiError):
    "A refusal of the partner API, in the booking API's error shape."

    def __init__(self, code, message, field=None):
        if code not in PARTNER_CODES and code not in CODES:
            raise ValueError(f"Unknown partner API error code {code!r}")
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def status(self):
        return PARTNER_CODES.get(self.code) or CODES[self.code]


class PartnerAccountProvider(PaymentProvider):
    """Payment on the partner's account: nothing is charged now, the order
    is settled on the partner's statement (credit, deposit or monthly)."""
    name = PARTNER_PROVIDER

    def accepts_channel(self, channel_code):
        "Only the channels of partners pay on account (providers.allowed)."
        from trytond.transaction import Transaction
        try:
            Partner = Pool().get('scenic.group.partner')
        except KeyError:  # a database without scenic_group
            return False
        company = Transaction().context.get('company')
        return bool(channel_code) and bool(Partner.search([
                    ('channel.code', '=', channel_code),
                    ('company', '=', company),
                    ], limit=1))

    def charge(self, order_reference, amount, currency):
        return f'ACCOUNT-{order_reference}'

    def refund(self, payment_reference, amount, currency):
        return f'{payment_reference}-REFUND'


if PARTNER_PROVIDER not in PROVIDERS:
    register(PartnerAccountProvider())


def find_order(partner, partner_order_id):
    "The id and request hash of a partner's order, or (None, None)."
    table = Pool().get('scenic.order').__table__()
    cursor = Transaction().connection.cursor()
    cursor.execute(*table.select(table.id, table.request_hash,
            where=(table.channel == partner.channel.id)
            & (table.idempotency_key == partner_order_id)))
    row = cursor.fetchone()
    return row if row else (None, None)


def get_order(partner, partner_order_id):
    order_id, _ = find_order(partner, partner_order_id)
    if not order_id:
        raise PartnerError('not_found',
            "No order with this partner_order_id.", 'partner_order_id')
    return Pool().get('scenic.order')(order_id)


def plan_prices(partner, contract, catalogue, request, date):
    """Net price and persons per item; refuses ticket types the contract
    does not price on that date."""
    planned = []
    for item in request.items:
        ttype = catalogue.types.get(item.ticket_type)
        price = contract.net_price(ttype.id, date) if ttype else None
        if price is None:
            raise PartnerError('invalid_request',
                f"Ticket type {item.ticket_type!r} is not in your contract "
                "for that date.", f'{item.field}.ticket_type')
        if ttype.real_name:
            persons = len(item.visitors) * ttype.persons
        else:
            persons = item.persons or ttype.persons
        planned.append((ttype, price, persons))
    return planned


def _live_allotment(table, partner, slot_id):
    "The partner's unreleased allotment of a slot, as a WHERE clause."
    return ((table.partner == partner.id) & (table.slot == slot_id)
        & (table.released == False))  # noqa: E712


def holds_slot(partner, slot_id):
    """Whether the partner's orders on a slot take its allotment's places
    (claim_allotment decides how many), not the slot's general pool: for
    the plan step's check, which reads only."""
    table = Pool().get('scenic.group.allotment').__table__()
    cursor = Transaction().connection.cursor()
    cursor.execute(*table.select(table.id,
            where=_live_allotment(table, partner, slot_id)))
    return cursor.fetchone() is not None


def plan_booking(partner, request, now, catalogue):
    """The booking's plan step for a partner's request: the places its
    allotment of the slot holds are free to it (reservation.plan_booking's
    `held`)."""
    return reservation.plan_booking(partner.channel, request, now=now,
        catalogue=catalogue, held=holds_slot(partner, request.slot))


def claim_allotment(partner, slot_id, persons):
    """Take `persons` from the partner's allotment of a slot and hand the
    held places to the booking; return the allotment id, or None when the
    partner has no allotment of the slot (or it was released)."""
    pool = Pool()
    table = pool.get('scenic.group.allotment').__table__()
    slot = pool.get('scenic.time_slot').__table__()
    cursor = Transaction().connection.cursor()
    where = _live_allotment(table, partner, slot_id)
    cursor.execute(*table.update(
            [table.sold], [table.sold + persons],
            where=where & (table.sold + persons <= table.quota)))
    if cursor.rowcount == 1:
        cursor.execute(*table.select(table.id, where=where))
        allotment_id, = cursor.fetchone()
        # The held places become this booking's: write_booking claims
        # them again under the same slot lock.
        cursor.execute(*slot.update(
                [slot.booked], [slot.booked - persons],
                where=slot.id == slot_id))
        return allotment_id
    cursor.execute(*table.select(table.quota - table.sold, where=where))
    row = cursor.fetchone()
    if row:
        raise PartnerError('allotment_exhausted',
            f"Your allotment of this time slot has {row[0]} places left.",
            'slot')
    return None


def claim_day_allotment(partner, date, persons):
    """Take `persons` from the partner's quota of a day; return
    (day allotment id, whether its places are held on the day's counter),
    or None when the partner has no quota that day (or it was released)."""
    table = Pool().get('scenic.group.day_allotment').__table__()
    cursor = Transaction().connection.cursor()
    where = ((table.partner == partner.id) & (table.date == date)
        & (table.released == False))  # noqa: E712
    cursor.execute(*table.update(
            [table.sold], [table.sold + persons],
            where=where & (table.sold + persons <= table.quota)))
    if cursor.rowcount == 1:
        cursor.execute(*table.select(table.id, table.holds_daily,
                where=where))
        allotment_id, holds = cursor.fetchone()
        return allotment_id, bool(holds)
    cursor.execute(*table.select(table.quota - table.sold, where=where))
    row = cursor.fetchone()
    if row:
        raise PartnerError('allotment_exhausted',
            f"Your quota of {date} has {row[0]} places left.", 'slot')
    return None


def claim_allotments(partner, contract, plan, persons):
    """The allotment claims of `persons` more on a plan's slot, in their
    lock order (the slot's allotment, then the day's quota); return
    (slot allotment id, day allotment id, day places held).

    Each allotment the partner has must take them; without any, only a
    contract with free sale books from the general pool. Places held on
    the day's counter are handed to the plan (`held_scopes`), so
    write_booking does not count them twice."""
    slot_allotment = claim_allotment(partner, plan.slot.id, persons)
    day = claim_day_allotment(partner, plan.slot.date, persons)
    if slot_allotment is None and day is None and not contract.free_sale:
        raise PartnerError('allotment_exhausted',
            "You have no allotment left for this time slot.", 'slot')
    day_allotment, held = day or (None, False)
    if held:
        plan.held_scopes['area'] = persons
    return slot_allotment, day_allotment, held


def unhold_day(plan, persons):
    """Places a day quota held on the day's counter that the booking did
    not count there (the area no longer has a daily maximum): give them
    up, after the booking's claims, in their lock order."""
    if 'area' in plan.scope_persons or not persons:
        return
    reservation.release_daily(plan.company, plan.slot.date, 'area', persons)


def book(partner, request, partner_order_id, leader=None, now=None):
    """Book a partner's order; return (order id, replayed).

    The booking's plan step (reservation.plan_booking: real-name, per-ID
    and channel rules) priced at the contract's net prices, the allotment
    claimed, then the booking's write step (its claims) on the partner's
    channel, keyed by partner_order_id.
    """
    now = now or now_utc()
    digest = request.digest()
    order_id, request_hash = find_order(partner, partner_order_id)
    if order_id:
        if request_hash != digest:
            raise PartnerError('idempotency_conflict',
                "This partner_order_id was used with another request.",
                'partner_order_id')
        return order_id, True
    catalogue = Catalogue(partner.company.id)
    slot = catalogue.slot(request.slot)
    if slot is None:
        raise PartnerError('invalid_request', "This time slot does not "
            "exist.", 'slot')
    contract = partner.contract_on(slot.date)
    if not contract:
        raise PartnerError('no_contract',
            "You have no active contract for that date.", 'slot')
    planned = plan_prices(partner, contract, catalogue, request, slot.date)
    plan = plan_booking(partner, request, now, catalogue)
    price_plan(plan, contract, planned)
    allotment_id, day_id, held = claim_allotments(
        partner, contract, plan, plan.persons)
    order_id = reservation.write_booking(plan, partner_order_id, now=now)
    if held:
        unhold_day(plan, plan.persons)
    link_order(order_id, partner, contract, allotment_id,
        plan.persons if allotment_id else 0, leader, partner_order_id,
        day_id, plan.persons if day_id else 0)
    return order_id, False


def price_plan(plan, contract, planned):
    "Price a booking plan's lines at the contract's net prices."
    prices = {ttype.id: price.quantize(CENT) for ttype, price, _ in planned}
    plan.total = Decimal(0)
    for line in plan.lines:
        price = prices[line['ticket_type']]
        line['unit_price'] = price
        line['amount'] = price * line['quantity']
        line['price_explanation'] = (
            f"Net price of contract {contract.number}")
        plan.total += line['amount']


def link_order(order_id, partner, contract, allotment_id, allotted,
        leader, partner_order_id, day_allotment_id=None, day_allotted=0):
    "Link a written order to its partner, contract and allotments."
    table = Pool().get('scenic.order').__table__()
    cursor = Transaction().connection.cursor()
    leader = leader or {}
    cursor.execute(*table.update(
            [table.group_partner, table.group_contract,
                table.partner_order_id, table.allotment,
                table.allotted_persons, table.day_allotment,
                table.day_allotted_persons, table.leader_name,
                table.leader_phone],
            [partner.id, contract.id, partner_order_id, allotment_id,
                allotted, day_allotment_id, day_allotted,
                leader.get('name'), leader.get('phone')],
            where=table.id == order_id))
    forget('scenic.order')


def lock_partner(partner):
    "Serialize the money checks of one partner's orders."
    table = Pool().get('scenic.group.partner').__table__()
    Transaction().connection.cursor().execute(*lock(
            table.select(table.id, where=table.id == partner.id)))


def pay(partner, order, amount, codes=None, now=None, override=False):
    """Confirm a partner's order on its account: the money rules of the
    contract are checked under the partner's lock, then the booking is
    paid and its codes signed (or the partner's own codes taken)."""
    from .money import check_confirmation
    now = now or now_utc()
    contract = order.group_contract
    if codes is not None:
        # refused before anything is written
        check_partner_codes(order, contract, codes)
    if contract and contract.payment_term != 'monthly':
        # Only balance checks need one partner's confirmations in a row.
        lock_partner(partner)
    first = order.state == 'reserved'
    if first:
        check_confirmation(partner, contract, order, amount,
            override=override)
    order = reservation.pay(order.id, PARTNER_PROVIDER, amount, now=now)
    set_finance_party(partner, order)
    if codes is not None:
        set_partner_codes(order, codes, first)
    return order


def finance_party_values(partner):
    """The column a partner-credit payment row carries so that the ledger
    (scenic_finance, when activated) posts it to the partner's 1122."""
    if 'finance_party' not in Pool().get('scenic.payment')._fields:
        return {}
    return {'finance_party': partner.party.id}


def set_finance_party(partner, order):
    """Name the partner as the party of its order's account payments and
    refunds (rows the booking inserted without it)."""
    values = finance_party_values(partner)
    if not values:
        return
    table = Pool().get('scenic.payment').__table__()
    Transaction().connection.cursor().execute(*table.update(
            [table.finance_party], [values['finance_party']],
            where=(table.order == order.id)
            & (table.provider == PARTNER_PROVIDER)
            & (table.finance_party == Null)))
    forget('scenic.payment')


def check_partner_codes(order, contract, codes):
    """Refuse codes the contract does not allow: not one per ticket,
    breaking its format rule, repeated in the request or already used by
    another ticket of the area."""
    if not contract or not contract.ota_codes:
        raise PartnerError('invalid_request',
            "Your contract does not let you issue codes.", 'codes')
    count = len(order.tickets)
    if not isinstance(codes, list) or len(codes) != count:
        raise PartnerError('invalid_request',
            f"'codes' must be a list of {count} strings, one per ticket in "
            "ticket order.", 'codes')
    rule = contract.code_format
    for index, code in enumerate(codes):
        error = partnercode.format_error(code, rule)
        if error:
            raise PartnerError('malformed_code',
                f"codes[{index}] {error}.", f'codes[{index}]')
    seen = set()
    for index, code in enumerate(codes):
        if code in seen:
            raise PartnerError('duplicate_code',
                f"codes[{index}] repeats an earlier code of this request.",
                f'codes[{index}]')
        seen.add(code)
    table = Pool().get('scenic.ticket').__table__()
    cursor = Transaction().connection.cursor()
    taken = set()
    for chunk in range(0, count, 500):
        cursor.execute(*table.select(table.partner_code,
                where=(table.company == order.company.id)
                & table.partner_code.in_(codes[chunk:chunk + 500])
                & (table.order != order.id)))
        taken.update(code for code, in cursor)
    for index, code in enumerate(codes):
        if code in taken:
            raise PartnerError('duplicate_code',
                f"codes[{index}] is already the code of another ticket.",
                f'codes[{index}]')


def set_partner_codes(order, codes, first=True):
    """Replace the signed codes of a just paid order (`first`) by the
    partner's own (checked by check_partner_codes); a retried payment must
    bring the codes it brought the first time."""
    tickets = sorted(order.tickets, key=lambda t: t.id)
    if [t.partner_code for t in tickets] == codes:
        return
    if not first:
        raise PartnerError('idempotency_conflict',
            "This order was paid with other codes.", 'codes')
    table = Pool().get('scenic.ticket').__table__()
    cursor = Transaction().connection.cursor()
    try:
        for ticket, code in zip(tickets, codes):
            cursor.execute(*table.update(
                    [table.code, table.key_id, table.partner_code],
                    [None, None, code], where=table.id == ticket.id))
    except backend.DatabaseIntegrityError:
        # another order took one of them since the check
        raise PartnerError('duplicate_code',
            "A code is already the code of another ticket.", 'codes')
    forget('scenic.ticket', 'scenic.order')


def lock_allotment(order):
    "Lock the order's allotments in their claiming order."
    pool = Pool()
    cursor = Transaction().connection.cursor()
    for field, model in [('allotment', 'scenic.group.allotment'),
            ('day_allotment', 'scenic.group.day_allotment')]:
        allotment = getattr(order, field)
        if allotment:
            table = pool.get(model).__table__()
            cursor.execute(*lock(table.select(table.id,
                        where=table.id == allotment.id)))


def give_back_allotment(order, persons):
    """Return `persons` of a cancelled or refunded order to its allotment
    while the allotment is not released: they are held for the partner
    again instead of going to the general pool."""
    if not order.allotment or not persons:
        return
    pool = Pool()
    table = pool.get('scenic.group.allotment').__table__()
    slot = pool.get('scenic.time_slot').__table__()
    cursor = Transaction().connection.cursor()
    cursor.execute(*table.update(
            [table.sold], [table.sold - persons],
            where=(table.id == order.allotment.id)
            & (table.released == False)))  # noqa: E712
    if cursor.rowcount == 1:
        cursor.execute(*slot.update(
                [slot.booked], [slot.booked + persons],
                where=slot.id == order.slot.id))
    forget('scenic.group.allotment', 'scenic.time_slot')


def give_back_day_allotment(order, persons):
    """Return `persons` of a cancelled or refunded order to its day quota
    while the quota is not released, held again on the day's counter."""
    if not order.day_allotment or not persons:
        return
    pool = Pool()
    table = pool.get('scenic.group.day_allotment').__table__()
    cursor = Transaction().connection.cursor()
    cursor.execute(*table.update(
            [table.sold], [table.sold - persons],
            where=(table.id == order.day_allotment.id)
            & (table.released == False)))  # noqa: E712
    maximum = Catalogue(order.company.id).snapshot.daily_max
    if (cursor.rowcount == 1 and order.day_allotment.holds_daily
            and maximum):
        # Held again on the day's counter: it was counted there before.
        reservation.claim_daily(order.company.id, order.visit_date, 'area',
            None, persons, maximum, force=True, start=order.id)
    forget('scenic.group.day_allotment')


def give_back_allotments(order, persons, day_persons):
    give_back_allotment(order, persons)
    give_back_day_allotment(order, day_persons)


def cancel(partner, order, by_back_office=False, now=None):
    "Cancel a hold or refund a paid order; the allotments get their places."
    lock_allotment(order)
    allotted = order.allotted_persons or 0
    day_allotted = order.day_allotted_persons or 0
    order = reservation.cancel(
        order.id, now=now, by_back_office=by_back_office)
    set_finance_party(partner, order)
    give_back_allotments(order, allotted, day_allotted)
    return order


def refunded_on_account(order_id):
    "What the partner's account got back for an order so far."
    table = Pool().get('scenic.payment').__table__()
    cursor = Transaction().connection.cursor()
    cursor.execute(*table.select(Sum(table.amount),
            where=(table.order == order_id) & (table.kind == 'refund')
            & (table.provider == PARTNER_PROVIDER)))
    return Decimal(str(cursor.fetchone()[0] or 0))


def cancel_and_record(partner, order_id, by_back_office=False, now=None):
    """Cancel a partner's hold or refund its paid order, and credit its
    account with what the refund gave back: the one path of the partner
    API and the back office. Locks the allotment, then the order, as
    bookings do; the refund is read under the order's lock so a repeated
    cancel credits nothing twice."""
    order = Pool().get('scenic.order')(order_id)
    lock_allotment(order)
    order = reservation._lock_order(order_id)
    before = refunded_on_account(order_id)
    order = cancel(partner, order, by_back_office=by_back_office, now=now)
    amount = refunded_on_account(order_id) - before
    if amount:
        from .money import record_refund
        record_refund(partner, order, amount)
    return order


def partial_refund(partner, order, ticket_ids, now=None):
    """Refund some tickets of a paid order (one per visitor) as their
    ticket types allow; the rest of the order stays valid."""
    pool = Pool()
    Order = pool.get('scenic.order')
    now = now or now_utc()
    lock_allotment(order)
    order = reservation._lock_order(order.id)
    if order.state not in ('paid', 'partly_used'):
        raise PartnerError('not_refundable',
            f"This order is {order.state}: it cannot be refunded.")
    tickets = {t.id: t for t in order.tickets}
    chosen = []
    for ticket_id in ticket_ids:
        ticket = tickets.get(ticket_id)
        if ticket is None:
            raise PartnerError('invalid_request',
                f"Ticket {ticket_id} is not in this order.", 'tickets')
        if ticket.state != 'valid':
            raise PartnerError('not_refundable',
                f"Ticket {ticket_id} is {ticket.state}: it cannot be "
                "refunded.", 'tickets')
        if not reservation.refundable(ticket.ticket_type, order.slot, now):
            raise PartnerError('not_refundable',
                f"The refund period of ticket {ticket_id} is over.",
                'tickets')
        chosen.append(ticket)
    if not chosen:
        raise PartnerError('invalid_request',
            "Name the tickets to refund.", 'tickets')
    if len(chosen) == len([t for t in tickets.values()
                if t.state in ('valid', 'used')]) and all(
            t.state == 'valid' for t in tickets.values()):
        return cancel(partner, order, now=now), chosen

    catalogue = Catalogue(order.company.id)
    types = {t.id: t for t in catalogue.snapshot.types}
    id_hashes = defaultdict(int)
    scope_persons = defaultdict(int)
    persons = 0
    amount = Decimal(0)
    line_price = {l.id: l.unit_price for l in order.lines}
    for ticket in chosen:
        if ticket.holder_hash:
            id_hashes[ticket.holder_hash] += 1
        for scope, _, _ in catalogue.load_scopes(
                types[ticket.ticket_type.id]):
            scope_persons[scope] += ticket.persons
        persons += ticket.persons
        amount += line_price[ticket.line.id]
    reservation._release(order.company.id, order.visit_date, order.slot.id,
        id_hashes, scope_persons, persons, start=order.id)
    ticket_table = pool.get('scenic.ticket').__table__()
    payment_table = pool.get('scenic.payment').__table__()
    order_table = pool.get('scenic.order').__table__()
    cursor = Transaction().connection.cursor()
    sql_transition(pool.get('scenic.ticket'), ticket_table, 'revoked',
        ticket_table.id.in_([t.id for t in chosen]),
        [ticket_table.revoked_at], [naive(now)])
    insert(payment_table, [{
                'company': order.company.id, 'order': order.id,
                'kind': 'refund', 'provider': PARTNER_PROVIDER,
                'provider_reference': f'ACCOUNT-{order.reference}-REFUND',
                'amount': amount, 'currency': order.currency.id,
                'date': naive(now),
                **finance_party_values(partner),
                }])
    allotted = min(order.allotted_persons or 0, persons)
    day_allotted = min(order.day_allotted_persons or 0, persons)
    cursor.execute(*order_table.update(
            [order_table.allotted_persons, order_table.day_allotted_persons],
            [(order.allotted_persons or 0) - allotted,
                (order.day_allotted_persons or 0) - day_allotted],
            where=order_table.id == order.id))
    forget('scenic.order', 'scenic.ticket')
    give_back_allotments(order, allotted, day_allotted)
    return Order(order.id), chosen

