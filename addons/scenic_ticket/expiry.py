"""Tickets past their validity that were never used expire (cron).

Set-based: one UPDATE for the tickets, one for their orders, so that the
nightly run stays cheap at any volume. Orders whose tickets are all
expired become `expired`; orders where some were used and the rest expired
become `done`. The state-change hook (`on_state_change`) is called with the
ids that moved, when the models have it.
"""
import datetime as dt

from sql import Literal
from sql.operators import Exists

from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction


def _naive(value):
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


class Ticket(metaclass=PoolMeta):
    __name__ = 'scenic.ticket'

    @classmethod
    def expire_tickets(cls, now=None):
        "Cron: expire the valid tickets whose validity has ended."
        pool = Pool()
        Order = pool.get('scenic.order')
        ticket = cls.__table__()
        order = Order.__table__()
        other = cls.__table__()
        now = _naive(now or dt.datetime.now(dt.timezone.utc))
        transaction = Transaction()
        cursor = transaction.connection.cursor()
        user = transaction.user

        cursor.execute(*ticket.select(ticket.id, ticket.order,
                where=(ticket.state == 'valid')
                & (ticket.valid_until <= now)))
        rows = cursor.fetchall()
        if not rows:
            return []
        ticket_ids = [r[0] for r in rows]
        order_ids = sorted({r[1] for r in rows})
        for sub in _chunks(ticket_ids):
            cursor.execute(*ticket.update(
                    [ticket.state, ticket.write_date, ticket.write_uid],
                    ['expired', now, user],
                    where=ticket.id.in_(sub) & (ticket.state == 'valid')))
        if hasattr(cls, 'on_state_change'):
            cls.on_state_change('expired', ticket_ids)

        moved = {'expired': [], 'done': []}
        for sub in _chunks(order_ids):
            open_ = other.select(Literal(1), where=(other.order == order.id)
                & other.state.in_(['valid', 'reserved']))
            used = other.select(Literal(1), where=(other.order == order.id)
                & (other.state == 'used'))
            base = (order.id.in_(sub)
                & order.state.in_(['paid', 'partly_used'])
                & ~Exists(open_))
            for state, where in [
                    ('done', base & Exists(used)),
                    ('expired', base & ~Exists(used))]:
                cursor.execute(*order.select(order.id, where=where))
                ids = [r[0] for r in cursor.fetchall()]
                if ids:
                    cursor.execute(*order.update(
                            [order.state, order.closed_at,
                                order.write_date, order.write_uid],
                            [state, now, now, user],
                            where=order.id.in_(ids)))
                    moved[state].extend(ids)
        if hasattr(Order, 'on_state_change'):
            for state, ids in moved.items():
                if ids:
                    Order.on_state_change(state, ids)
        transaction.cache.clear()
        return ticket_ids


def _chunks(ids, size=1000):
    for i in range(0, len(ids), size):
        yield ids[i:i + size]
