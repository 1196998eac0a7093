"""Orders and tickets of timed reservations, and the counters that keep
capacity and per-ID rules true under concurrency.

Bookings go through the lean path in reservation.py; these models are what
the back office shows and acts on. Orders and tickets are declared state
machines (ORDER_TRANSITIONS, TICKET_TRANSITIONS): the lean path's set-based
UPDATEs take their allowed states from these tables (workflow.py), and
every state change calls `on_state_change(to_state, ids)`, the hook later
modules extend (finance posts on paid, refunded, used, expired):

    class Order(metaclass=PoolMeta):
        __name__ = 'scenic.order'

        @classmethod
        def on_state_change(cls, to_state, ids):
            super().on_state_change(to_state, ids)
            ...
"""
from sql import Table

from trytond import backend
from trytond.model import Index, ModelSQL, ModelView, Unique, fields
from trytond.modules.currency.fields import Monetary
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.transaction import Transaction

from . import dbtools
from .area import CompanyMixin
from .workflow import StateMachine, transition

ORDER_STATES = [
    ('reserved', "Reserved"),
    ('paid', "Paid"),
    ('partly_used', "Partly Used"),
    ('used', "Used"),
    ('done', "Done"),
    ('cancelled', "Cancelled"),
    ('refunded', "Refunded"),
    ('expired', "Expired"),
    ]
# Orders whose refund needs a supervisor's approval: a ticket was used.
USED_ORDER_STATES = frozenset({'partly_used', 'used'})
ORDER_TRANSITIONS = {
    # A hold is paid, cancelled by the visitor, or expires unpaid.
    ('reserved', 'paid'),
    ('reserved', 'cancelled'),
    ('reserved', 'expired'),
    # A paid order is refunded; once a ticket is used, only with a
    # supervisor's approval (reservation.cancel checks it).
    ('paid', 'refunded'),
    ('partly_used', 'refunded'),
    ('used', 'refunded'),
    # The gates admit its tickets.
    ('paid', 'partly_used'),
    ('paid', 'used'),
    ('partly_used', 'used'),
    # After the tickets' validity: expired when tickets were left unused,
    # done when closed (the finance cron chooses).
    ('paid', 'expired'),
    ('partly_used', 'expired'),
    ('paid', 'done'),
    ('partly_used', 'done'),
    ('used', 'done'),
    }
TICKET_STATES = [
    ('reserved', "Reserved"),
    ('valid', "Valid"),
    ('used', "Used"),
    ('cancelled', "Cancelled"),
    ('revoked', "Revoked"),
    ('expired', "Expired"),
    ]
TICKET_TRANSITIONS = {
    ('reserved', 'valid'),  # its order is paid: the code is signed
    ('reserved', 'cancelled'),  # its hold is cancelled or expires
    ('valid', 'used'),  # a gate admitted it
    ('valid', 'revoked'),  # its order is refunded
    ('used', 'revoked'),  # refunded after use, a supervisor approving
    ('valid', 'expired'),  # its validity ended unused
    }


class Order(CompanyMixin, StateMachine, ModelSQL, ModelView):
    "A timed reservation for named visitors or a group."
    __name__ = 'scenic.order'
    _rec_name = 'reference'
    reference = fields.Char("Reference", readonly=True, required=True)
    channel = fields.Many2One(
        'scenic.channel', "Channel", required=True, readonly=True,
        ondelete='RESTRICT')
    slot = fields.Many2One(
        'scenic.time_slot', "Time Slot", required=True, readonly=True,
        ondelete='RESTRICT')
    visit_date = fields.Date("Visit Date", required=True, readonly=True)
    state = fields.Selection(
        ORDER_STATES, "State", required=True, readonly=True, sort=False)
    contact_name = fields.Char("Contact Name", readonly=True)
    contact_phone = fields.Char("Contact Phone", readonly=True)
    hold_expires_at = fields.DateTime("Hold Expires At", readonly=True)
    total = Monetary(
        "Total", currency='currency', digits='currency', readonly=True)
    currency = fields.Many2One(
        'currency.currency', "Currency", required=True, readonly=True)
    idempotency_key = fields.Char("Idempotency Key", readonly=True)
    request_hash = fields.Char("Request Hash", readonly=True)
    lines = fields.One2Many(
        'scenic.order.line', 'order', "Lines", readonly=True)
    tickets = fields.One2Many(
        'scenic.ticket', 'order', "Tickets", readonly=True)
    payments = fields.One2Many(
        'scenic.payment', 'order', "Payments", readonly=True)
    paid_at = fields.DateTime("Paid At", readonly=True)
    closed_at = fields.DateTime(
        "Closed At", readonly=True,
        help="When the order was cancelled, refunded or expired.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('reference_unique', Unique(t, t.reference),
                'scenic_ticket.msg_order_reference_unique'),
            ('idempotency_unique', Unique(t, t.channel, t.idempotency_key),
                'scenic_ticket.msg_order_idempotency_unique'),
            ]
        cls._sql_indexes.update({
                Index(t, (t.state, Index.Equality()),
                    (t.hold_expires_at, Index.Range()),
                    where=t.state == 'reserved'),
                # A slot's unpaid holds (reservation.check_holds, every
                # booking): without it the read walked every held order of
                # the day, dead ones included, in the expiry index above
                # (0.8 ms a booking at 64 clients, bench/README.md, "sixth
                # pass").
                Index(t, (t.slot, Index.Equality()),
                    (t.hold_expires_at, Index.Range()),
                    where=t.state == 'reserved'),
                Index(t, (t.contact_phone, Index.Equality())),
                })
        cls._order = [('create_date', 'DESC'), ('id', 'DESC')]
        cls._transitions |= ORDER_TRANSITIONS
        cls._buttons.update({
                'cancel': {
                    'invisible': ~Eval('state').in_(sorted(
                            set(cls.sources('cancelled'))
                            | (set(cls.sources('refunded'))
                                - USED_ORDER_STATES))),
                    'depends': ['state'],
                    },
                })


    @classmethod
    def __register__(cls, module):
        super().__register__(module)
        # the booking engine's PostgreSQL functions (sql/engine.sql),
        # installed or upgraded when their version changed
        from . import sqlfunctions
        sqlfunctions.install(Transaction().connection.cursor())

    @staticmethod
    def default_state():
        return 'reserved'

    @classmethod
    @ModelView.button
    def cancel(cls, orders):
        "Cancel holds, refund paid orders as the ticket types allow."
        from . import reservation
        if backend.name != 'postgresql':
            for order in orders:
                reservation.cancel(order.id, by_back_office=True)
            return
        # Own transaction under READ COMMITTED, as the booking API's and
        # the expiry cron's: the release updates the slot's and the day's
        # counters, which every booking of the day updates too, and under
        # trytond's REPEATABLE READ a click during a rush failed with a
        # serialization error after the dispatcher's retries.
        ids = [order.id for order in orders]
        with Transaction().new_transaction() as transaction:
            dbtools.use_read_committed()
            for order_id in ids:
                reservation.cancel(order_id, by_back_office=True)
            transaction.commit()

    @classmethod
    def expire_holds(cls):
        "Cron: release the seats of holds that were not paid in time."
        from . import reservation
        # Own transaction: the release must run READ COMMITTED, which has
        # to be chosen before the cron's transaction has read anything.
        with Transaction().new_transaction() as transaction:
            dbtools.use_read_committed()
            reservation.expire_holds()
            transaction.commit()

    @classmethod
    @transition('expired')
    def expire(cls, orders):
        """Orders past their time: a hold gives its claims back (as
        reservation.expire_holds does); a paid order's unused tickets
        expire with it."""
        from . import reservation
        Ticket = Pool().get('scenic.ticket')
        now = dbtools.now_utc()
        for order in orders:
            if order.state == 'reserved':
                reservation.release_order(order, 'cancelled', now)
        Ticket.expire([t for o in orders if o.state != 'reserved'
                for t in o.tickets if t.state == 'valid'])
        cls.write(orders, {'closed_at': dbtools.naive(now)})

    @classmethod
    @transition('done')
    def close(cls, orders):
        "Paid orders that are over."
        cls.write(orders, {'closed_at': dbtools.utcnow()})


class OrderLine(ModelSQL, ModelView):
    "Order Line"
    __name__ = 'scenic.order.line'
    order = fields.Many2One(
        'scenic.order', "Order", required=True, ondelete='CASCADE')
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", required=True,
        ondelete='RESTRICT')
    quantity = fields.Integer("Tickets", required=True)
    persons = fields.Integer("Persons", required=True)
    unit_price = Monetary(
        "Unit Price", currency='currency', digits='currency', required=True)
    amount = Monetary(
        "Amount", currency='currency', digits='currency', required=True)
    price_explanation = fields.Text("Price Explanation")
    currency = fields.Function(
        fields.Many2One('currency.currency', "Currency"),
        'on_change_with_currency')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__access__.add('order')

    @fields.depends('order', '_parent_order.currency')
    def on_change_with_currency(self, name=None):
        return self.order.currency if self.order else None


class Ticket(CompanyMixin, StateMachine, ModelSQL, ModelView):
    "A ticket: one visitor, or one group of persons, on one signed code."
    __name__ = 'scenic.ticket'
    order = fields.Many2One(
        'scenic.order', "Order", required=True, readonly=True,
        ondelete='CASCADE')
    line = fields.Many2One(
        'scenic.order.line', "Line", readonly=True, ondelete='CASCADE')
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", required=True, readonly=True,
        ondelete='RESTRICT')
    slot = fields.Many2One(
        'scenic.time_slot', "Time Slot", readonly=True, ondelete='RESTRICT')
    visit_date = fields.Date("Visit Date", required=True, readonly=True)
    visitor = fields.Many2One(
        'scenic.visitor', "Visitor", readonly=True, ondelete='RESTRICT')
    holder_hash = fields.Char("Holder Hash", readonly=True)
    holder_masked = fields.Char("Holder", readonly=True)
    persons = fields.Integer("Persons", required=True, readonly=True)
    entries_allowed = fields.Integer(
        "Entries Allowed", required=True, readonly=True,
        help="0 means unlimited within validity.")
    valid_from = fields.DateTime("Valid From", readonly=True)
    valid_until = fields.DateTime("Valid Until", readonly=True)
    state = fields.Selection(
        TICKET_STATES, "State", required=True, readonly=True, sort=False)
    key_id = fields.Integer("Signing Key", readonly=True)
    code = fields.Text("Code", readonly=True)
    revoked_at = fields.DateTime("Revoked At", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.update({
                Index(t, (t.holder_hash, Index.Equality()),
                    (t.visit_date, Index.Range())),
                Index(t, (t.state, Index.Equality()),
                    (t.revoked_at, Index.Range())),
                # The analysts' reports read a period of visit dates
                # (scenic_analytics.reports.no_shows).
                Index(t, (t.company, Index.Equality()),
                    (t.visit_date, Index.Range())),
                })
        cls._order = [('id', 'DESC')]
        cls._transitions |= TICKET_TRANSITIONS

    @staticmethod
    def default_state():
        return 'reserved'

    @classmethod
    @transition('expired')
    def expire(cls, tickets):
        "Valid tickets whose validity ended unused."

    def get_rec_name(self, name):
        return f"#{self.id} {self.ticket_type.rec_name} {self.visit_date}"


class DailyLoadStripe(CompanyMixin, ModelSQL):
    """One stripe of a day's counter: a share of the area's or a zone's
    daily maximum (reservation.stripe_shares), claimed alone so that
    concurrent bookings of a day lock different rows."""
    __name__ = 'scenic.daily_load.stripe'
    date = fields.Date("Date", required=True)
    zone = fields.Many2One('scenic.zone', "Zone", ondelete='CASCADE')
    scope = fields.Char("Scope", required=True)
    stripe = fields.Integer("Stripe", required=True)
    booked = fields.Integer("Booked", required=True)
    maximum = fields.Integer("Maximum", required=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('stripe_unique', Unique(t, t.company, t.date, t.scope, t.stripe),
                'scenic_ticket.msg_daily_load_unique'),
            ]

    @staticmethod
    def default_stripe():
        return 0

    @classmethod
    def __register__(cls, module):
        # Before the stripes, scenic_daily_load was the one counter row per
        # scope and day: it becomes stripe 0, its count spread below.
        TableHandler = backend.TableHandler
        cursor = Transaction().connection.cursor()
        old = 'scenic_daily_load'
        migrate = (_is_plain_table(old)
            and not TableHandler.table_exist(cls._table))
        if migrate:
            TableHandler.table_rename(old, cls._table)
            if backend.name == 'postgresql':
                cursor.execute(f'ALTER TABLE "{cls._table}" DROP CONSTRAINT '
                    f'IF EXISTS "{old}_scope_unique"')
            else:
                cursor.execute(f'DROP INDEX IF EXISTS "{old}_scope_unique"')
        super().__register__(module)
        if migrate:
            from .reservation import spread_daily
            table = cls.__table__()
            cursor.execute(*table.select(table.company, table.date,
                    table.scope, table.zone, table.booked, table.maximum,
                    where=table.stripe == 0))
            for row in cursor.fetchall():
                spread_daily(*row)


def _is_plain_table(name):
    "Whether `name` is a table (not a view, not missing)."
    cursor = Transaction().connection.cursor()
    if backend.name == 'postgresql':
        cursor.execute("SELECT relkind FROM pg_class "
            "WHERE relname = %s AND pg_table_is_visible(oid)", (name,))
        row = cursor.fetchone()
        return bool(row) and row[0] in ('r', 'p')
    cursor.execute("SELECT type FROM sqlite_master WHERE name = ?", (name,))
    row = cursor.fetchone()
    return bool(row) and row[0] == 'table'


# The stripes summed, one row per area or zone and day: what every reader
# (the back office, the bench's and tests' checks in raw SQL) sees.
DAILY_LOAD_VIEW = (
    'SELECT MIN(id) AS id, company, "date", scope, MIN(zone) AS zone, '
    'SUM(booked) AS booked, SUM(maximum) AS maximum, '
    'MIN(create_uid) AS create_uid, MIN(create_date) AS create_date, '
    'MAX(write_uid) AS write_uid, MAX(write_date) AS write_date '
    'FROM scenic_daily_load_stripe GROUP BY company, "date", scope')


class DailyLoad(CompanyMixin, ModelSQL, ModelView):
    "Persons booked on a day against the area's or a zone's daily maximum."
    __name__ = 'scenic.daily_load'
    date = fields.Date("Date", required=True, readonly=True)
    zone = fields.Many2One(
        'scenic.zone', "Zone", readonly=True, ondelete='CASCADE',
        help="Empty for the whole area.")
    scope = fields.Char(
        "Scope", required=True, readonly=True,
        help="'area' or the zone's id: one counter row each.")
    booked = fields.Integer("Booked", required=True, readonly=True)
    maximum = fields.Integer("Maximum", required=True, readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._order = [('date', 'DESC'), ('scope', 'ASC'), ('id', 'ASC')]

    @classmethod
    def table_query(cls):
        t = Table(cls._table)
        return t.select(t.id, t.create_uid, t.create_date, t.write_uid,
            t.write_date, t.company, t.date, t.zone, t.scope, t.booked,
            t.maximum)

    @classmethod
    def __register__(cls, module):
        super().__register__(module)
        # a database view of the same name (not Tryton's table query alone),
        # so that raw SQL reads the sums too
        cursor = Transaction().connection.cursor()
        cursor.execute(f'DROP VIEW IF EXISTS "{cls._table}"')
        cursor.execute(f'CREATE VIEW "{cls._table}" AS {DAILY_LOAD_VIEW}')


class IDDayUsage(CompanyMixin, ModelSQL):
    "Tickets held by one ID on one day: what per-ID limits count."
    __name__ = 'scenic.id_day_usage'
    date = fields.Date("Date", required=True)
    id_hash = fields.Char("ID Hash", required=True)
    count = fields.Integer("Count", required=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('usage_unique', Unique(t, t.company, t.date, t.id_hash),
                'scenic_ticket.msg_id_day_usage_unique'),
            ]
