"""Write sales, uses, refunds and expiries straight into the ticket
tables, many at a time: the tests' random sequences, the demo's month of
history and the benchmark use it. The rows are those the booking path and
the gates write (orders, lines, tickets, payments, scans), without seats
or signed codes, which the ledger does not read."""
import datetime as dt
import secrets
from decimal import Decimal

from trytond.pool import Pool
from trytond.transaction import Transaction

from scenic_ticket.dbtools import forget, insert as _insert
from scenic_ticket.reservation import mark_orders_used


def naive(value):
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


class History:

    def __init__(self, company, channel, slot, gate):
        self.company = company
        self.channel = channel
        self.slot = slot
        self.gate = gate
        self.pool = Pool()

    def sell(self, ticket_type, price, when, provider='simulated',
            count=1, valid_until=None, valid_from=None, party=None):
        """One paid order of `count` tickets at `price`; returns
        (order id, [ticket ids])."""
        pool = self.pool
        price = Decimal(price)
        ref = 'H' + secrets.token_hex(6).upper()
        valid_from = valid_from or when
        valid_until = valid_until or (when + dt.timedelta(days=1))
        order_id, = _insert(pool.get('scenic.order').__table__(), [{
                    'company': self.company.id, 'reference': ref,
                    'channel': self.channel.id, 'slot': self.slot.id,
                    'visit_date': self.slot.date, 'state': 'paid',
                    'total': price * count,
                    'currency': self.company.currency.id,
                    'paid_at': naive(when)}])
        line_id, = _insert(pool.get('scenic.order.line').__table__(), [{
                    'order': order_id, 'ticket_type': ticket_type.id,
                    'quantity': count, 'persons': count,
                    'unit_price': price, 'amount': price * count}])
        tickets = _insert(pool.get('scenic.ticket').__table__(), [{
                    'company': self.company.id, 'order': order_id,
                    'line': line_id, 'ticket_type': ticket_type.id,
                    'slot': self.slot.id, 'visit_date': self.slot.date,
                    'persons': 1, 'entries_allowed': ticket_type.entries,
                    'valid_from': naive(valid_from),
                    'valid_until': naive(valid_until),
                    'state': 'valid'} for _ in range(count)])
        _insert(pool.get('scenic.payment').__table__(), [{
                    'company': self.company.id, 'order': order_id,
                    'kind': 'payment', 'provider': provider,
                    'provider_reference': 'T' + secrets.token_hex(8),
                    'amount': price * count,
                    'currency': self.company.currency.id,
                    'date': naive(when), 'finance_party': party}])
        return order_id, tickets

    def enter(self, ticket_ids, when):
        "Admit tickets at the gate: one entry scan each."
        pool = self.pool
        _insert(pool.get('scenic.gate.scan').__table__(), [{
                    'company': self.company.id, 'time': naive(when),
                    'gate': self.gate.id, 'medium': 'qr', 'ticket': t,
                    'decision': 'open', 'reason': 'ok', 'persons': 1,
                    'direction': 'in', 'offline': False,
                    'box': self.gate.box.id,
                    'nonce': secrets.token_hex(12)} for t in ticket_ids])
        table = pool.get('scenic.ticket').__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.update([table.state], ['used'],
                where=table.id.in_(list(ticket_ids))
                & (table.state == 'valid')))
        cursor.execute(*table.select(table.order,
                where=table.id.in_(list(ticket_ids))))
        mark_orders_used([r[0] for r in cursor.fetchall()], now=when)
        # The states changed under the ORM: records read before must not
        # answer from the transaction's cache (a used ticket read as
        # still valid would be refunded after it was earned).
        forget('scenic.ticket', 'scenic.order')

    def refund(self, order_id, ticket_ids, when, amount=None,
            provider=None):
        """Refund tickets of an order by the original method (partial
        refunds after use included); returns the refund's amount."""
        pool = self.pool
        Order = pool.get('scenic.order')
        table = pool.get('scenic.ticket').__table__()
        order = Order(order_id)
        payment, = [p for p in order.payments if p.kind == 'payment']
        if amount is None:
            amount = sum(t.line.unit_price for t in order.tickets
                if t.id in ticket_ids)
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.update([table.state, table.revoked_at],
                ['revoked', naive(when)],
                where=table.id.in_(list(ticket_ids))))
        _insert(pool.get('scenic.payment').__table__(), [{
                    'company': self.company.id, 'order': order_id,
                    'kind': 'refund',
                    'provider': provider or payment.provider,
                    'provider_reference': 'R' + secrets.token_hex(8),
                    'amount': amount,
                    'currency': self.company.currency.id,
                    'date': naive(when),
                    'finance_party': (payment.finance_party.id
                        if payment.finance_party else None)}])
        Transaction().cache.clear()
        return amount
