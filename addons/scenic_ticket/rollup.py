"""Sales per slot and day, by channel and ticket type: what the dashboards'
*Today* page and the notebooks read instead of grouping every ticket.

Kept current in the transaction that changes a sale, through SQL state
hooks (`workflow.sql_hook`, which the booking engine runs too): a ticket entering `valid` (its order
paid) adds to its group, one entering `revoked` (refunded) takes itself out,
an order entering `refunded` adds its tickets to the refunded figures. Each
transition has a single source state (order.py's tables), so the hook's
(to_state, ids) says exactly what changed. The update is `count_sales` /
`count_refunds`: on PostgreSQL the database functions
`scenic_slot_sales_tickets` / `scenic_slot_sales_refunds` (sql/engine.sql,
declared on the hooks, so that the booking engine's payment calls them in
the database), one additive upsert of the tickets moved grouped by (slot,
channel, ticket type), so concurrent bookings of a slot wait on the row
instead of failing or losing an update (SQLite: a grouped read, then an
update or insert per group).

`SlotSales.refresh` recomputes slots from their tickets: the rebuild after
a bulk load (scripts/simulate_history.py) and a repair by a cron every
minute for the writers that insert tickets already sold without passing a
transition (scenic_finance's demo history, imports).

Sold tickets are the paid ones valid, used or expired unused; the tickets of a
refunded order (revoked by the refund) are refunds.
"""
import datetime as dt

from sql import Literal
from sql.aggregate import Count, Max, Sum
from sql.conditionals import Case, Coalesce

from trytond import backend
from trytond.model.fields import SQL_OPERATORS

from trytond.model import Index, ModelSQL, Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction

from . import dbtools
from .area import CompanyMixin
from .workflow import sql_hook

UTC = dt.timezone.utc
# Transactions that started before the last refresh may commit after it.
MARGIN = dt.timedelta(minutes=10)
# Paid tickets, unused ones expired after their day included: they were sold.
SOLD = ('valid', 'used', 'expired')


class SlotSales(CompanyMixin, ModelSQL):
    "Tickets sold and refunded for a slot, by channel and ticket type."
    __name__ = 'scenic.slot.sales'
    slot = fields.Many2One(
        'scenic.time_slot', "Time Slot", required=True, ondelete='CASCADE')
    date = fields.Date("Date", required=True)
    channel = fields.Many2One(
        'scenic.channel', "Channel", required=True, ondelete='CASCADE')
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", required=True,
        ondelete='CASCADE')
    tickets = fields.Integer("Tickets Sold", required=True)
    persons = fields.Integer("Persons", required=True)
    amount = fields.Numeric("Amount", digits=(16, 2), required=True)
    refunded = fields.Integer("Tickets Refunded", required=True)
    refunded_amount = fields.Numeric(
        "Amount Refunded", digits=(16, 2), required=True)
    changed = fields.Timestamp(
        "Changed", required=True,
        help="The latest change of the slot's tickets counted.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('slot_channel_type_unique',
                Unique(t, t.slot, t.channel, t.ticket_type),
                'scenic_ticket.msg_slot_sales_unique'),
            ]
        cls._sql_indexes.update({
                Index(t, (t.company, Index.Equality()),
                    (t.date, Index.Range())),
                Index(t, (t.changed, Index.Range())),
                })

    @classmethod
    def refresh(cls, slots=None, since=None):
        """Recompute the rows of `slots` (ids), else of the slots whose
        tickets changed since `since`, else since the latest refresh
        minus a margin. Returns the ids of the slots recomputed."""
        pool = Pool()
        Ticket = pool.get('scenic.ticket')
        ticket = Ticket.__table__()
        table = cls.__table__()
        cursor = Transaction().connection.cursor()
        changed = Coalesce(ticket.write_date, ticket.create_date)
        if slots is None:
            if since is None:
                cursor.execute(*table.select(Max(table.changed)))
                last, = cursor.fetchone()
                if isinstance(last, str):
                    last = dt.datetime.fromisoformat(last)
                since = last - MARGIN if last else None
            where = Literal(True)
            if since is not None:
                if since.tzinfo is not None:
                    since = since.astimezone(UTC).replace(tzinfo=None)
                where = changed >= since
            cursor.execute(*ticket.select(ticket.slot, where=where,
                    group_by=[ticket.slot]))
            slots = [s for s, in cursor]
        slots = sorted(set(slots))
        for i in range(0, len(slots), 500):
            chunk = slots[i:i + 500]
            cls._recompute(chunk)
        return slots

    @classmethod
    def refresh_cron(cls):
        "Repair: recompute the slots whose tickets changed lately."
        cls.refresh()

    @classmethod
    def _recompute(cls, slots):
        pool = Pool()
        ticket = pool.get('scenic.ticket').__table__()
        order = pool.get('scenic.order').__table__()
        line = pool.get('scenic.order.line').__table__()
        table = cls.__table__()
        cursor = Transaction().connection.cursor()
        transaction = Transaction()
        now = dt.datetime.now(UTC).replace(tzinfo=None)
        cursor.execute(*table.delete(where=table.slot.in_(slots)))
        sold = ticket.state.in_(SOLD)
        refunded = (order.state == 'refunded')
        query = ticket.join(order, condition=ticket.order == order.id
            ).join(line, condition=ticket.line == line.id
            ).select(
                ticket.company, ticket.slot, ticket.visit_date,
                order.channel, ticket.ticket_type,
                Sum(Case((sold, 1), else_=0)),
                Sum(Case((sold, ticket.persons), else_=0)),
                Sum(Case((sold, line.unit_price), else_=0)),
                Sum(Case((refunded, 1), else_=0)),
                Sum(Case((refunded, line.unit_price), else_=0)),
                Max(Coalesce(ticket.write_date, ticket.create_date)),
                Literal(transaction.user), Literal(now),
                where=ticket.slot.in_(slots)
                & (sold | refunded),
                group_by=[ticket.company, ticket.slot, ticket.visit_date,
                    order.channel, ticket.ticket_type])
        cursor.execute(*table.insert([
                    table.company, table.slot, table.date, table.channel,
                    table.ticket_type, table.tickets, table.persons,
                    table.amount, table.refunded, table.refunded_amount,
                    table.changed, table.create_uid, table.create_date],
                query))


def count_sales(ticket_ids, sign=1):
    """Add the tickets with these ids to their slots' sold figures (sign
    1: they entered `valid`) or take them out (sign -1: `revoked`), in the
    current transaction (Tryton's or the booking engine's)."""
    if backend.name == 'postgresql':
        _call('scenic_slot_sales_tickets',
            'valid' if sign > 0 else 'revoked', ticket_ids)
        return
    ticket, order, line = _tables()
    _apply(ticket, order, line, SQL_OPERATORS['in'](ticket.id, ticket_ids),
        [Count(Literal(1)) * sign, Sum(ticket.persons) * sign,
            Sum(line.unit_price) * sign, Literal(0), Literal(0)],
        shrinks=sign < 0)


def count_refunds(order_ids):
    """Add the tickets of the orders with these ids (which entered
    `refunded`) to their slots' refunded figures, in the current
    transaction."""
    if backend.name == 'postgresql':
        _call('scenic_slot_sales_refunds', 'refunded', order_ids)
        return
    ticket, order, line = _tables()
    _apply(ticket, order, line, SQL_OPERATORS['in'](ticket.order, order_ids),
        [Literal(0), Literal(0), Literal(0), Count(Literal(1)),
            Sum(line.unit_price)], shrinks=False)


@sql_hook('scenic.ticket', 'valid', 'revoked',
    function='scenic_slot_sales_tickets')
def _tickets_moved(to_state, ids):
    count_sales(ids, 1 if to_state == 'valid' else -1)


@sql_hook('scenic.order', 'refunded', function='scenic_slot_sales_refunds')
def _orders_refunded(to_state, ids):
    count_refunds(ids)


def _tables():
    return (dbtools.table('scenic.ticket'), dbtools.table('scenic.order'),
        dbtools.table('scenic.order.line'))


COUNTED = ['tickets', 'persons', 'amount', 'refunded', 'refunded_amount']


def _call(function, to_state, ids):
    """PostgreSQL: the rollup's database function (sql/engine.sql), the
    one place of its SQL: an additive upsert of the tickets grouped by
    (slot, channel, ticket type), rows locked in that order, in one
    statement; the booking engine's payment calls it in the database."""
    now = dbtools.utcnow()
    dbtools.cursor().execute(
        f'SELECT {function}(%s, %s::integer[], %s, %s)',
        (to_state, list(ids), dbtools.user(), now))


def _drop_empty(cursor, slots):
    """A group whose last ticket left (revoked without a refund) goes, as
    the recomputation has no row for it. Only a change that takes tickets
    out can empty a row: others skip the statement."""
    if slots:
        table = dbtools.table('scenic.slot.sales')
        cursor.execute(*table.delete(
                where=table.slot.in_(slots) & (table.tickets == 0)
                & (table.refunded == 0)))


def _apply(ticket, order, line, where, deltas, shrinks):
    """SQLite: add the grouped deltas of the tickets matching `where` to
    the rows (it serializes its writers: update, else insert)."""
    table = dbtools.table('scenic.slot.sales')
    cursor = dbtools.cursor()
    cursor.execute(*ticket.join(order, condition=ticket.order == order.id
            ).join(line, condition=ticket.line == line.id
            ).select(ticket.company, ticket.slot, ticket.visit_date,
                order.channel, ticket.ticket_type, *deltas,
                where=where,
                group_by=[ticket.company, ticket.slot, ticket.visit_date,
                    order.channel, ticket.ticket_type],
                order_by=[ticket.slot, order.channel, ticket.ticket_type]))
    groups = cursor.fetchall()
    now = dbtools.utcnow()
    user = dbtools.user()
    for company, slot, date, channel, ticket_type, *values in groups:
        values = [v or 0 for v in values]
        key = ((table.slot == slot) & (table.channel == channel)
            & (table.ticket_type == ticket_type))
        cursor.execute(*table.update(
                [getattr(table, c) for c in COUNTED] + [table.changed,
                    table.write_uid, table.write_date],
                [getattr(table, c) + v for c, v in zip(COUNTED, values)]
                + [now, user, now], where=key))
        if not cursor.rowcount:
            cursor.execute(*table.insert(
                    [table.company, table.slot, table.date, table.channel,
                        table.ticket_type,
                        *(getattr(table, c) for c in COUNTED),
                        table.changed, table.create_uid, table.create_date],
                    [[company, slot, date, channel, ticket_type, *values,
                            now, user, now]]))
    if shrinks:
        _drop_empty(cursor, sorted({g[1] for g in groups}))


class Ticket(metaclass=PoolMeta):
    __name__ = 'scenic.ticket'

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        # The refresh finds changed tickets, then groups a slot's tickets.
        cls._sql_indexes.update({
                Index(t, (Coalesce(t.write_date, t.create_date),
                        Index.Range())),
                Index(t, (t.slot, Index.Equality())),
                })


class Cron(metaclass=PoolMeta):
    __name__ = 'ir.cron'

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.method.selection.append(
            ('scenic.slot.sales|refresh_cron', "Refresh Sales per Slot"))

