"""Tickets past their validity that were never used expire (cron).

Set-based: one UPDATE for the tickets, one for their orders, so that the
nightly run stays cheap at any volume. Orders whose tickets are all
expired become `expired`; orders where some were used and the rest expired
become `done`, through the declared transitions (workflow.sql_transition),
which call the `on_state_change` hook with the ids that moved.
"""
from sql import Literal
from sql.operators import Exists

from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction

from .dbtools import naive, now_utc
from .workflow import sql_transition


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
        now = naive(now or now_utc())
        cursor = Transaction().connection.cursor()
        ticket_ids = sql_transition(cls, ticket, 'expired',
            ticket.valid_until <= now)
        if not ticket_ids:
            return []
        order_ids = set()
        for sub in _chunks(ticket_ids):
            cursor.execute(*ticket.select(ticket.order,
                    where=ticket.id.in_(sub), group_by=[ticket.order]))
            order_ids.update(r[0] for r in cursor)
        for sub in _chunks(sorted(order_ids)):
            open_ = other.select(Literal(1), where=(other.order == order.id)
                & other.state.in_(['valid', 'reserved']))
            used = other.select(Literal(1), where=(other.order == order.id)
                & (other.state == 'used'))
            base = order.id.in_(sub) & ~Exists(open_)
            sql_transition(Order, order, 'done', base & Exists(used),
                [order.closed_at], [now])
            sql_transition(Order, order, 'expired', base & ~Exists(used),
                [order.closed_at], [now])
        return ticket_ids


def _chunks(ids, size=1000):
    for i in range(0, len(ids), size):
        yield ids[i:i + size]
