"""Amending a group order before arrival: visitors added to or removed from
a real-name line, or the persons of a group-ticket line changed, within the
contract's rules (until its cut-off before the slot starts, never once
anyone of the group was admitted).

An amendment is a booking's claims and releases on the order itself:
capacity, the partner's allotments and the per-ID limits are claimed for
added persons and given back for removed ones in the order's transaction;
the line is repriced at the contract's net price and a paid order's
account charged or credited (a partner-credit payment or refund that
finance posts, and the partner's account entry). A refusal leaves nothing
written.
"""
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from scenic_ticket import reservation
from scenic_ticket.catalogue import Catalogue
from scenic_ticket.dbtools import forget, insert, naive, now_utc
from scenic_ticket.errors import BookingError
from scenic_ticket.reservation import BookingRequest, Item
from scenic_ticket.reservation import Visitor as VisitorIn
from scenic_ticket.workflow import sql_transition

from trytond.i18n import gettext
from trytond.model import ModelView, fields
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.transaction import Transaction
from trytond.wizard import Button, StateTransition, StateView, Wizard

from . import booking
from .exceptions import AmendError

CENT = Decimal('0.01')


@dataclass
class Amendment:
    "What an amendment changes on an order line (read, not yet written)."
    order: object
    line: object
    ticket_type: object  # catalogue.TypeInfo
    price: Decimal  # the contract's net price, for added tickets
    removed: list = field(default_factory=list)  # scenic.ticket
    add_visitors: list = field(default_factory=list)  # reservation.Visitor
    add_persons: int = 0

    @property
    def removed_persons(self):
        return sum(t.persons for t in self.removed)

    @property
    def added_tickets(self):
        if self.ticket_type.real_name:
            return len(self.add_visitors)
        return self.add_persons // self.ticket_type.persons

    @property
    def delta(self):
        "The change of the order's total."
        prices = {l.id: l.unit_price for l in self.order.lines}
        return (self.price * self.added_tickets
            - sum((prices[t.line.id] for t in self.removed), Decimal(0)))


def cutoff(order, contract):
    "When amendments of an order end (aware)."
    slot = order.slot
    return slot.aware(slot.start_time) - dt.timedelta(
        hours=contract.amend_hours or 0)


def plan_amendment(order, line, add=(), remove=(), persons=None, now=None):
    """Check an amendment against the order's state and its contract and
    return what it changes; raise AmendError naming the rule."""
    now = now or now_utc()
    partner, contract = order.group_partner, order.group_contract
    if not partner or not contract:
        raise AmendError(gettext('scenic_group.msg_amend_not_group',
                order=order.reference))
    if order.state in ('partly_used', 'used') or any(
            t.state == 'used' for t in order.tickets):
        raise AmendError(gettext('scenic_group.msg_amend_arrived',
                order=order.reference))
    if order.state not in ('reserved', 'paid') or (
            order.state == 'reserved'
            and naive(now) >= order.hold_expires_at):
        raise AmendError(gettext('scenic_group.msg_amend_state',
                order=order.reference, state=order.state))
    end = cutoff(order, contract)
    if now >= end:
        raise AmendError(gettext('scenic_group.msg_amend_cutoff',
                order=order.reference, contract=contract.rec_name,
                hours=contract.amend_hours,
                cutoff=end.strftime('%Y-%m-%d %H:%M')))
    if not line or line.order.id != order.id:
        raise AmendError(gettext('scenic_group.msg_amend_line',
                order=order.reference))
    catalogue = Catalogue(order.company.id)
    ttype = {t.id: t for t in catalogue.snapshot.types}[
        line.ticket_type.id]
    price = contract.net_price(ttype.id, order.visit_date)
    if price is None:
        raise AmendError(gettext('scenic_group.msg_amend_price',
                ticket_type=ttype.name, contract=contract.rec_name))
    live_state = 'valid' if order.state == 'paid' else 'reserved'
    live = sorted((t for t in order.tickets
            if t.line.id == line.id and t.state == live_state),
        key=lambda t: t.id)
    change = Amendment(order=order, line=line, ticket_type=ttype,
        price=price.quantize(CENT))
    if ttype.real_name:
        if persons is not None:
            raise AmendError(gettext('scenic_group.msg_amend_real_name',
                    ticket_type=ttype.name))
        ids = {t.id for t in live}
        for ticket in remove:
            if ticket.id not in ids:
                raise AmendError(gettext('scenic_group.msg_amend_ticket',
                        ticket=ticket.id, order=order.reference))
        change.removed = sorted(remove, key=lambda t: t.id)
        change.add_visitors = list(add)
    else:
        if add or remove:
            raise AmendError(gettext('scenic_group.msg_amend_not_real_name',
                    ticket_type=ttype.name))
        if persons is None or persons < 0 or persons % ttype.persons:
            raise AmendError(gettext('scenic_group.msg_amend_persons',
                    ticket_type=ttype.name, persons=ttype.persons))
        diff = persons - sum(t.persons for t in live)
        if diff < 0:
            change.removed = live[len(live) + diff // ttype.persons:]
        else:
            change.add_persons = diff
    if not change.removed and not change.added_tickets:
        raise AmendError(gettext('scenic_group.msg_amend_nothing',
                order=order.reference))
    left = sum(t.persons for t in order.tickets if t.state == live_state)
    if left - change.removed_persons + (
            change.added_tickets * ttype.persons) <= 0:
        raise AmendError(gettext('scenic_group.msg_amend_empty',
                order=order.reference))
    return change


def amend(order, line, add=(), remove=(), persons=None, now=None,
        override=False):
    """Amend a group order's line (see plan_amendment); return the order.

    Locks as a partner's booking and confirmation do (its allotments, the
    partner when its balance is checked, the order), checks again under
    them, then releases the removed persons and claims the added ones.
    BookingError (an ID's limit, capacity, an allotment) or AmendError
    refuses it whole."""
    pool = Pool()
    Order = pool.get('scenic.order')
    Line = pool.get('scenic.order.line')
    now = now or now_utc()
    partner, contract = order.group_partner, order.group_contract
    if partner:
        booking.lock_allotment(order)
        if contract and contract.payment_term != 'monthly':
            booking.lock_partner(partner)
    order = reservation._lock_order(order.id)
    change = plan_amendment(order, Line(line.id), add=add, remove=remove,
        persons=persons, now=now)
    paid = order.state == 'paid'
    if paid and change.delta > 0:
        from .money import check_confirmation
        check_confirmation(partner, contract, order, change.delta,
            override=override)
    delta = change.delta
    _remove(change, paid, now)
    change.order = order = Order(order.id)
    added = _add(change, partner, contract, now)
    _update(change, delta, added)
    order = Order(order.id)
    if paid:
        if added:
            reservation.sign_tickets(order,
                pool.get('scenic.ticket').browse(added), now)
        _settle(partner, order, delta, now)
    forget()
    return Order(order.id)


def _remove(change, paid, now):
    "Release the removed tickets' claims and give back their allotments."
    if not change.removed:
        return
    pool = Pool()
    Ticket = pool.get('scenic.ticket')
    order = change.order
    catalogue = Catalogue(order.company.id)
    id_hashes = defaultdict(int)
    scope_persons = defaultdict(int)
    for ticket in change.removed:
        if ticket.holder_hash:
            id_hashes[ticket.holder_hash] += 1
        for scope, _, _ in catalogue.load_scopes(change.ticket_type):
            scope_persons[scope] += ticket.persons
    persons = change.removed_persons
    reservation._release(order.company.id, order.visit_date, order.slot.id,
        id_hashes, scope_persons, persons)
    table = Ticket.__table__()
    ids = [t.id for t in change.removed]
    if paid:
        sql_transition(Ticket, table, 'revoked', table.id.in_(ids),
            [table.revoked_at], [naive(now)])
    else:
        sql_transition(Ticket, table, 'cancelled', table.id.in_(ids))
    slot_back = min(order.allotted_persons or 0, persons)
    day_back = min(order.day_allotted_persons or 0, persons)
    booking.give_back_allotments(order, slot_back, day_back)
    order_table = pool.get('scenic.order').__table__()
    Transaction().connection.cursor().execute(*order_table.update(
            [order_table.allotted_persons, order_table.day_allotted_persons],
            [(order.allotted_persons or 0) - slot_back,
                (order.day_allotted_persons or 0) - day_back],
            where=order_table.id == order.id))
    forget('scenic.order', 'scenic.ticket')


def _add(change, partner, contract, now):
    """Claim and insert the added tickets as the booking path does; return
    their ids."""
    if not change.added_tickets:
        return []
    order, ttype = change.order, change.ticket_type
    item = Item(ticket_type=ttype.code, field='items[0]',
        visitors=change.add_visitors,
        persons=None if ttype.real_name else change.add_persons)
    request = BookingRequest(slot=order.slot.id, items=[item],
        contact_name=order.contact_name, contact_phone=order.contact_phone)
    catalogue = Catalogue(order.company.id)
    plan = booking.plan_booking(partner, request, now, catalogue)
    maximum = reservation.limit(partner.channel.code, 'max_persons_order')
    total = sum(t.persons for t in order.tickets
        if t.state in ('reserved', 'valid')) + plan.persons
    if total > maximum:
        raise BookingError('invalid_request', f"An order takes at most "
            f"{maximum} persons on this channel.", 'items')
    slot_id, day_id, held = booking.claim_allotments(
        partner, contract, plan, plan.persons)
    ids = reservation.insert_tickets(plan, order.id, [change.line.id])
    reservation.claim_plan(plan, start=order.id)
    if held:
        booking.unhold_day(plan, plan.persons)
    table = Pool().get('scenic.order').__table__()
    columns, values = [], []
    if slot_id:
        columns += [table.allotment, table.allotted_persons]
        values += [slot_id, (order.allotted_persons or 0) + plan.persons]
    if day_id:
        columns += [table.day_allotment, table.day_allotted_persons]
        values += [day_id,
            (order.day_allotted_persons or 0) + plan.persons]
    if columns:
        Transaction().connection.cursor().execute(*table.update(
                columns, values, where=table.id == order.id))
    forget('scenic.order', 'scenic.ticket')
    return ids


def _update(change, delta, added):
    "Reprice the line at the contract's net price and the order's total."
    pool = Pool()
    line_table = pool.get('scenic.order.line').__table__()
    order_table = pool.get('scenic.order').__table__()
    cursor = Transaction().connection.cursor()
    line, ttype = change.line, change.ticket_type
    count = len(added) - len(change.removed)
    # Money summed in Python (Decimal): SQLite's arithmetic is binary.
    # The order's lock, held, keeps these values current.
    cursor.execute(*line_table.update(
            [line_table.quantity, line_table.persons, line_table.unit_price,
                line_table.amount, line_table.price_explanation],
            [line.quantity + count, line.persons + count * ttype.persons,
                change.price, line.amount + delta,
                f"Net price of contract {change.order.group_contract.number}"],
            where=line_table.id == line.id))
    cursor.execute(*order_table.update(
            [order_table.total], [change.order.total + delta],
            where=order_table.id == change.order.id))
    forget('scenic.order', 'scenic.order.line')


def _settle(partner, order, delta, now):
    """Charge or credit a paid order's change on the partner's account: a
    partner-credit payment (or refund) that finance posts, and the
    account's entry the statement shows."""
    if not delta:
        return
    payment = Pool().get('scenic.payment').__table__()
    insert(payment, [{
                'company': order.company.id, 'order': order.id,
                'kind': 'payment' if delta > 0 else 'refund',
                'provider': booking.PARTNER_PROVIDER,
                'provider_reference': f'ACCOUNT-{order.reference}-AMEND',
                'amount': abs(delta), 'currency': order.currency.id,
                'date': naive(now),
                **booking.finance_party_values(partner),
                }])
    Pool().get('scenic.group.entry').record(partner,
        'charge' if delta > 0 else 'refund', delta, order=order,
        date=order.visit_date,
        description=f"{order.reference}: amended")
    forget('scenic.payment')


class AmendStart(ModelView):
    "Amend Group Order"
    __name__ = 'scenic.group.order.amend.start'
    order = fields.Many2One('scenic.order', "Order", readonly=True)
    line = fields.Many2One(
        'scenic.order.line', "Line", required=True,
        domain=[('order', '=', Eval('order', -1))])
    real_name = fields.Boolean("Real-Name", readonly=True)
    persons = fields.Integer(
        "Persons", states={'invisible': Eval('real_name', False)},
        help="The new number of persons of the line (whole tickets).")
    visitor_file = fields.Binary(
        "Visitors to Add", filename='visitor_file_name',
        states={'invisible': ~Eval('real_name', False)},
        help="CSV or XLSX: name, ID number and (optionally) ID type.")
    visitor_file_name = fields.Char(
        "File Name", states={'invisible': ~Eval('real_name', False)})
    remove = fields.Many2Many(
        'scenic.ticket', None, None, "Visitors to Remove",
        domain=[
            ('order', '=', Eval('order', -1)),
            ('line', '=', Eval('line', -1)),
            ('state', 'in', ['reserved', 'valid']),
            ],
        states={'invisible': ~Eval('real_name', False)})
    checked = fields.Text("Check", readonly=True)

    @fields.depends('line')
    def on_change_with_real_name(self, name=None):
        return bool(self.line and self.line.ticket_type.real_name)


def line_persons(line):
    "The persons a line's live tickets admit."
    return sum(t.persons for t in line.order.tickets
        if t.line == line and t.state in ('reserved', 'valid'))


class Amend(Wizard):
    "Amend Group Order"
    __name__ = 'scenic.group.order.amend'
    start = StateView('scenic.group.order.amend.start',
        'scenic_group.order_amend_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Check", 'check', 'tryton-search'),
            Button("Amend", 'amend', 'tryton-ok', default=True),
            ])
    check = StateTransition()
    amend = StateTransition()

    def default_start(self, fields):
        if getattr(self.start, 'order', None):
            return self.start._default_values
        order = self.record
        values = {'order': order.id}
        if len(order.lines) == 1:
            line, = order.lines
            real_name = bool(line.ticket_type.real_name)
            # The persons now, to change: set once, not on a line change,
            # so a return from Check keeps what was typed.
            values.update(line=line.id, real_name=real_name,
                persons=None if real_name else line_persons(line))
        return values

    def _request(self):
        "The amendment's arguments, the visitor file checked row by row."
        from .group_order import read_visitors
        start = self.start
        add = []
        if start.line.ticket_type.real_name and start.visitor_file:
            rows = read_visitors(start.order.slot, start.line.ticket_type,
                start.visitor_file_name, start.visitor_file)
            add = [VisitorIn(r.name, r.id_type, r.id_number,
                    f'row {r.number}') for r in rows]
        persons = (None if start.line.ticket_type.real_name
            else start.persons)
        return {'add': add, 'remove': list(start.remove or []),
            'persons': persons}

    def transition_check(self):
        change = plan_amendment(self.start.order, self.start.line,
            **self._request())
        self.start.checked = gettext('scenic_group.msg_amend_checked',
            added=change.added_tickets, removed=len(change.removed),
            delta=change.delta)
        return 'start'

    def transition_amend(self):
        try:
            amend(self.start.order, self.start.line, **self._request())
        except BookingError as error:
            raise AmendError(gettext('scenic_group.msg_amend_refused',
                    code=error.code, message=error.message))
        return 'end'
