"""Sales per slot and day, by channel and ticket type: what the dashboards'
*Today* page and the notebooks read instead of grouping every ticket.

Kept current by a cron every minute (`SlotSales.refresh`): the slots whose
tickets were created or changed since the last refresh (with a margin for
transactions that committed late) are recomputed from their tickets, set
based, in one transaction. The booking path is left alone: it is being
split into plan and write steps, and a minute-old sales figure is what the
duty managers need (the slot's own `booked` counter is exact at once).

Sold tickets are the paid ones valid, used or expired unused; the tickets of a
refunded order (revoked by the refund) are refunds.
"""
import datetime as dt

from sql import Literal
from sql.aggregate import Max, Sum
from sql.conditionals import Case, Coalesce

from trytond.model import Index, ModelSQL, Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction

from .area import CompanyMixin

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

