"""Daily posting: one balanced move per area, day and kind (receipts,
refunds, recognition), built set-based from the ticket, payment and scan
rows, each linked back (`origin`) to its batch.

Every yuan taken into 2203 预收账款 leaves it exactly once. Tickets
earned whole (at first entry or at expiry: nearly all of them) are
posted without a row each: deferred at payment by groups (channel, ticket
type, unit price: count × split_vat(price)), earned by the first posting
whose snapshot sees them paid and entered or expired (`Earning`, the one
place that says it), summed into one `scenic.finance.recognition` row
per kind, ticket type and channel. Tickets earned in parts (per entry for
multi-entry tickets, day by day for annual and season cards) get a row in
`scenic.finance.ticket` at payment, with their net and VAT and what of
them is earned; a refunded ticket gets one too, with what it gave back.

A day is posted once (`scenic.finance.day` is unique per area and date),
only after it has ended in the area's timezone, and all its batches and
moves are written in one transaction.
"""
import datetime as dt
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

from sql import Cast, Column, Expression, Literal, Null, Union
from sql.functions import CurrentTimestamp, Function
from sql.aggregate import Count, Max, Min, Sum
from sql.conditionals import Case, Coalesce
from sql.operators import Exists

from trytond import backend
from trytond.i18n import gettext
from trytond.model import Index, ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Eval
from trytond.transaction import Transaction, TransactionError
from trytond.wizard import StateTransition, Wizard

from scenic_ticket.area import CompanyMixin
from scenic_ticket.slot import area_timezone, area_today  # noqa: F401

from .exceptions import PostingError

CENT = Decimal('0.01')
HALF_CENT = Decimal('0.005')
DAY_CARDS = {'annual_card', 'season_card'}
KINDS = [
    ('receipts', "Receipts"),
    ('refunds', "Refunds"),
    ('recognition', "Revenue Recognition"),
    ('cash', "Cash Differences"),
    ]
RECOGNITION_KINDS = [
    ('use', "Use"),
    ('entry', "Entry"),
    ('day', "Day of Validity"),
    ('expiry', "Expiry"),
    # negative: a refund approved after use reverses what was earned
    ('refund', "Refund After Use"),
    ]
CHUNK = 1000


def split_vat(gross, rate):
    "(net, vat) of a VAT-inclusive price, rounded to the cent."
    gross = Decimal(gross)
    vat = (gross * rate / (1 + rate)).quantize(CENT, ROUND_HALF_UP)
    return gross - vat, vat


area_tz = area_timezone


def day_bounds(company, date):
    "[start, end) of a local day as naive UTC, how Tryton stores times."
    tz = area_tz(company)
    start = dt.datetime.combine(date, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(date + dt.timedelta(1), dt.time(), tzinfo=tz)
    return tuple(v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        for v in (start, end))


def _chunks(values, size=CHUNK):
    values = list(values)
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _money(value):
    "SQL sums as Decimal cents (SQLite returns floats)."
    if isinstance(value, float):
        value = repr(value)
    return Decimal(value or 0).quantize(CENT)


class TicketDeferral(CompanyMixin, ModelSQL, ModelView):
    """What finance keeps of a ticket earned in parts (cards) or refunded:
    its net and VAT, what of it is earned so far, and the batches that
    took it in and out. Tickets earned whole have no row until refunded
    (posting.Earning); rows written for them by earlier versions go on
    being posted through the row. A narrow table of its own so that
    posting a day never rewrites the (wide, much indexed) ticket rows."""
    __name__ = 'scenic.finance.ticket'
    ticket = fields.Many2One(
        'scenic.ticket', "Ticket", required=True, readonly=True,
        ondelete='RESTRICT')
    state = fields.Selection([
            ('deferred', "Deferred"),
            ('closed', "Earned"),
            ('refunded', "Refunded"),
            ], "Finance State", required=True, readonly=True)
    net = fields.Numeric(
        "Net Amount", digits=(16, 2), required=True, readonly=True)
    vat = fields.Numeric("VAT", digits=(16, 2), required=True, readonly=True)
    earned = fields.Numeric(
        "Earned", digits=(16, 2), required=True, readonly=True)
    receipt = fields.Many2One(
        'scenic.finance.batch', "Receipt Batch",
        readonly=True, ondelete='RESTRICT',
        help="Empty on the row of a ticket earned whole, written when it "
        "is refunded (its receipt is found by Posting Batch's tickets).")
    refund = fields.Many2One(
        'scenic.finance.batch', "Refund Batch", readonly=True,
        ondelete='RESTRICT')
    recognition = fields.Many2One(
        'scenic.finance.batch', "Recognition Batch", readonly=True,
        ondelete='RESTRICT',
        help="On rows of earlier versions only: the batch that earned the "
        "ticket whole (its revenue is in that batch's row of its kind, "
        "ticket type and channel).")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('ticket_unique', Unique(t, t.ticket),
                'scenic_finance.msg_ticket_deferral_unique'),
            ]
        # receipt, refund and recognition are indexed by trytond for the
        # batch's One2Many fields: a second index of theirs would only
        # cost every row written one more write.
        cls._sql_indexes.update({
                Index(t, (t.company, Index.Equality()),
                    where=t.state == 'deferred'),
                })
        cls._order = [('id', 'DESC')]

    def get_rec_name(self, name):
        return self.ticket.rec_name

    @classmethod
    def search_rec_name(cls, name, clause):
        return [('ticket.rec_name',) + tuple(clause[1:])]

    @classmethod
    def __register__(cls, module):
        super().__register__(module)
        cls._migrate_from_ticket_columns()

    @classmethod
    def _migrate_from_ticket_columns(cls):
        """Versions before this table kept the same figures on the ticket
        rows (finance_state, finance_net, ...): move them here, once, and
        drop those columns."""
        pool = Pool()
        Ticket = pool.get('scenic.ticket')
        ticket_h = Ticket.__table_handler__()
        if not ticket_h.column_exist('finance_state'):
            return
        table, known = cls.__table__(), cls.__table__()
        ticket = Ticket.__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.insert(
                [table.company, table.ticket, table.state, table.net,
                    table.vat, table.earned, table.receipt, table.refund,
                    table.create_uid, table.create_date],
                ticket.select(
                    ticket.company, ticket.id, ticket.finance_state,
                    _numeric(ticket.finance_net), _numeric(ticket.finance_vat),
                    _numeric(ticket.finance_earned), ticket.finance_receipt,
                    ticket.finance_refund, Literal(0), CurrentTimestamp(),
                    where=(ticket.finance_state != Null)
                    & ~Exists(known.select(Literal(1),
                            where=known.ticket == ticket.id)))))
        if backend.name == 'sqlite':
            # SQLite refuses to drop a column an index uses; trytond drops
            # the stale indexes only after every module is registered.
            cursor.execute("SELECT name FROM sqlite_master "
                "WHERE type = 'index' AND tbl_name = ? "
                "AND sql LIKE '%finance%'", (Ticket._table,))
            for name, in cursor.fetchall():
                cursor.execute('DROP INDEX "%s"' % name)
        for column in ['finance_state', 'finance_net', 'finance_vat',
                'finance_earned', 'finance_receipt', 'finance_refund']:
            ticket_h.drop_column(column)


class Payment(metaclass=PoolMeta):
    __name__ = 'scenic.payment'
    finance_batch = fields.Many2One(
        'scenic.finance.batch', "Claimed by Batch", readonly=True,
        ondelete='RESTRICT',
        help="On payments posted by earlier versions only: the batch that "
        "claimed them. Postings now find their payments by what they saw "
        "(Posting Batch).")
    posting_batch = fields.Function(fields.Many2One(
            'scenic.finance.batch', "Posting Batch"),
        'get_posting_batch', searcher='search_posting_batch')
    finance_party = fields.Many2One(
        'party.party', "Party", readonly=True, ondelete='RESTRICT',
        context={'company': Eval('company', -1)}, depends={'company'},
        help="Whom the money is owed by when the method posts to a "
        "receivable (partner credit: the partner's 1122).")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.update({
                # the day's payments (every new one: finance_batch is
                # only kept on payments claimed by earlier versions)
                Index(t, (t.company, Index.Equality()),
                    (t.date, Index.Range()),
                    where=t.finance_batch == Null),
                Index(t, (t.provider_reference, Index.Equality())),
                # payments claimed by batches of earlier versions
                Index(t, (t.finance_batch, Index.Equality()),
                    where=t.finance_batch != Null),
                })

    @classmethod
    def __register__(cls, module):
        super().__register__(module)
        if backend.name == 'postgresql':
            _add_creation_xid(cls._table, 'finance_batch IS NULL')

    @classmethod
    def get_posting_batch(cls, payments, name):
        "The batch that posted each payment (None while not posted)."
        pool = Pool()
        Day = pool.get('scenic.finance.day')
        payment = cls.__table__()
        cursor = Transaction().connection.cursor()
        result = {p.id: p.finance_batch.id if p.finance_batch else None
            for p in payments}
        kinds = {'payment': 'receipts', 'refund': 'refunds'}
        waiting = [p for p in payments if not p.finance_batch]
        by_company = defaultdict(list)
        for p in waiting:
            by_company[p.company].append(p)
        for company, company_payments in by_company.items():
            first = min(_local(_dt(p.date), area_tz(company))
                for p in company_payments)
            # Snapshots of later days see more: the first day from the
            # payment's own that saw it posted it.
            ids = {p.id for p in company_payments}
            for day in Day.search([('company', '=', company.id),
                        ('date', '>=', first)], order=[('date', 'ASC')]):
                if not ids:
                    break
                coverage = Coverage(day)
                cursor.execute(*payment.select(payment.id, payment.kind,
                        where=payment.id.in_(list(ids))
                        & coverage.seen(payment)))
                for id_, kind in cursor.fetchall():
                    batches = {b.kind: b.id for b in day.batches}
                    result[id_] = batches.get(kinds[kind])
                    ids.discard(id_)
        return result

    @classmethod
    def finance_posted_where(cls, payment, company_id):
        """The payments (table `payment`) of the area that a posting has
        carried so far, as SQL: those the last posting saw (Coverage)."""
        Day = Pool().get('scenic.finance.day')
        days = Day.search([('company', '=', company_id)],
            order=[('date', 'DESC')], limit=1)
        where = payment.finance_batch != Null
        if days:
            where |= Coverage(days[0], None).seen(payment)
        return (payment.company == company_id) & where

    @classmethod
    def search_posting_batch(cls, name, clause):
        "Payments of batches: ('posting_batch', '=' / 'in', ids)."
        pool = Pool()
        Batch = pool.get('scenic.finance.batch')
        Company = pool.get('company.company')
        _, operator, value = clause[:3]
        if operator not in {'=', 'in'}:
            raise NotImplementedError(
                "posting_batch is searched with '=' or 'in' batch ids")
        payment = cls.__table__()
        cursor = Transaction().connection.cursor()
        found = []
        if value is None:
            # not posted yet
            for company in Company.search([]):
                cursor.execute(*payment.select(payment.id,
                        where=(payment.company == company.id)
                        & ~cls.finance_posted_where(payment, company.id)))
                found += [r[0] for r in cursor.fetchall()]
            return [('id', 'in', found)]
        ids = value if operator == 'in' else [value]
        for batch in Batch.browse([i for i in ids if i is not None]):
            cursor.execute(*payment.select(payment.id,
                    where=batch.payments_where(payment)))
            found += [r[0] for r in cursor.fetchall()]
        return [('id', 'in', found)]


class _ReadBySnapshot:
    """A table whose rows postings find by a range of one column (an
    index on the area and that column) and compare with their snapshot
    (`finance_xid`, PostgreSQL: `_add_creation_xid`): gate scans and
    tickets. Payments have indexes of their own."""
    __slots__ = ()
    # the column of the (company, column) range index and its WHERE
    _finance_range = None
    _finance_xid_index = True

    @classmethod
    def _finance_range_where(cls, table):
        return None

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        options = {}
        where = cls._finance_range_where(t)
        if where is not None:
            options['where'] = where
        cls._sql_indexes.add(Index(t, (t.company, Index.Equality()),
                (Column(t, cls._finance_range), Index.Range()), **options))

    @classmethod
    def __register__(cls, module):
        super().__register__(module)
        if backend.name == 'postgresql':
            _add_creation_xid(cls._table, index=cls._finance_xid_index)


class Scan(_ReadBySnapshot, metaclass=PoolMeta):
    __name__ = 'scenic.gate.scan'
    # the entries a posting has not seen yet: dated after the previous
    # posting's day (or, on SQLite, above its watermark)
    _finance_range = 'time'

    @classmethod
    def _finance_range_where(cls, table):
        return (table.decision == 'open') & (table.direction == 'in')


class Ticket(_ReadBySnapshot, metaclass=PoolMeta):
    __name__ = 'scenic.ticket'
    # the tickets whose validity ends on a posted day (Earning)
    _finance_range = 'valid_until'
    # Earning reads finance_xid only beside a ticket found otherwise (by
    # order, scan or validity): no index, no write more per ticket booked.
    _finance_xid_index = False


def _add_creation_xid(table, unposted=None, index=True):
    """PostgreSQL: every row of a table postings read by snapshot
    (payments, gate scans, tickets) records the transaction that created it
    (`finance_xid`, a column DEFAULT, so that every insert path fills it
    without naming it); postings compare it with their snapshot.
    Rows there when the column is added (those `unposted` selects) get
    the migration's transaction, which every later posting sees."""
    cursor = Transaction().connection.cursor()
    cursor.execute("SELECT 1 FROM information_schema.columns "
        "WHERE table_name = %s AND column_name = 'finance_xid'", (table,))
    if not cursor.fetchone():
        cursor.execute(f'ALTER TABLE "{table}" ADD COLUMN finance_xid xid8')
        cursor.execute(f'UPDATE "{table}" SET finance_xid = '
            'pg_current_xact_id()'
            + (f' WHERE {unposted}' if unposted else ''))
        cursor.execute(f'ALTER TABLE "{table}" ALTER COLUMN finance_xid '
            'SET DEFAULT pg_current_xact_id()')
    if not index:
        return
    # Not named idx_… / …_index: trytond drops those it does not define.
    cursor.execute(f'CREATE INDEX IF NOT EXISTS "{table}_company_xid" '
        f'ON "{table}" (company, finance_xid)')


class _Any(Function):
    "= ANY(array): a list of ids bound as one PostgreSQL array."
    __slots__ = ()
    _function = 'ANY'


def _in(column, values):
    "column IN a sub-select, or = ANY of a list of ids (PostgreSQL)."
    if isinstance(values, list):
        return column == _Any(values)
    return column.in_(values)


class _VisibleInSnapshot(Function):
    __slots__ = ()
    _function = 'PG_VISIBLE_IN_SNAPSHOT'


class Watermark:
    """What a posting transaction sees of scenic.payment, read once at the
    start of a posting and stored on its day. On PostgreSQL (Tryton's
    transactions are REPEATABLE READ: one snapshot for all the posting's
    reads) the snapshot, the posting's own transaction and the highest
    payment id it saw (its own transaction's rows count up to that id);
    on SQLite (one writer at a time, ids increasing) the highest id."""

    @staticmethod
    def take(cursor):
        """Values for the day's payment_watermark, _snapshot and _xid and
        its scan_ and ticket_watermark (the snapshot is the same for all
        three tables)."""
        pool = Pool()
        payment = pool.get('scenic.payment').__table__()
        scan = pool.get('scenic.gate.scan').__table__()
        ticket = pool.get('scenic.ticket').__table__()
        cursor.execute(*payment.select(Max(payment.id)))
        values = {'payment_watermark': cursor.fetchone()[0] or 0,
            'payment_snapshot': None, 'payment_xid': None}
        cursor.execute(*scan.select(Max(scan.id)))
        values['scan_watermark'] = cursor.fetchone()[0] or 0
        cursor.execute(*ticket.select(Max(ticket.id)))
        values['ticket_watermark'] = cursor.fetchone()[0] or 0
        if backend.name == 'postgresql':
            cursor.execute('SELECT pg_current_snapshot()::text, '
                'pg_current_xact_id()::text, '
                "current_setting('transaction_isolation')")
            values['payment_snapshot'], values['payment_xid'], isolation = (
                cursor.fetchone())
            if isolation not in {'repeatable read', 'serializable'}:
                # Under READ COMMITTED each statement has its own
                # snapshot: the one stored would not be what was read.
                raise PostingError(gettext(
                        'scenic_finance.msg_posting_isolation',
                        isolation=isolation))
        return values


def seen_by(table, day, watermark):
    """The rows of `table` (payments, gate scans, tickets: with
    `finance_xid` on PostgreSQL) that the posting of `day` saw, as SQL; None when the day
    stored no watermark of that table (posted by an earlier version)."""
    if day is None or getattr(day, watermark) is None:
        return None
    if backend.name == 'postgresql' and day.payment_snapshot:
        xid = Column(table, 'finance_xid')
        return (_VisibleInSnapshot(xid,
                Cast(Literal(day.payment_snapshot), 'pg_snapshot'))
            | ((xid == Cast(Literal(day.payment_xid), 'xid8'))
                & (table.id <= getattr(day, watermark))))
    return table.id <= getattr(day, watermark)


def arrived_since(table, day, watermark):
    """Implied by "not seen by the posting of `day`", for the indexes: the
    rows created since its snapshot's xmin or by its own transaction
    (PostgreSQL), or above its watermark."""
    if backend.name == 'postgresql' and day.payment_snapshot:
        xid = Column(table, 'finance_xid')
        xmin = day.payment_snapshot.split(':')[0]
        return ((xid >= Cast(Literal(xmin), 'xid8'))
            | (xid == Cast(Literal(day.payment_xid), 'xid8')))
    return table.id > getattr(day, watermark)


class Coverage:
    """Which payments the posting of a day covers: those its snapshot
    (Watermark) saw and dated before the day's end, less those the
    previous posting saw dated before its own end. Snapshots taken later
    see a superset, so each payment is covered once: by its day's posting
    when committed before it, else by the first posting after (late).
    The one place that says which payments a batch carries."""

    def __init__(self, day, previous=False):
        Day = Pool().get('scenic.finance.day')
        self.day = day
        self.company = day.company
        self.start, self.end = day_bounds(day.company, day.date)
        if previous is False:
            days = Day.search([('company', '=', day.company.id),
                    ('date', '<', day.date)], order=[('date', 'DESC')],
                limit=1)
            previous = days[0] if days else None
        self.previous = previous
        self.legacy = day.payment_watermark is None

    @staticmethod
    def _seen(payment, day):
        "The payments a day's posting saw (None: a legacy day)."
        return seen_by(payment, day, 'payment_watermark')

    def seen(self, payment):
        "Covered by this posting or an earlier one (dated before its end)."
        seen = self._seen(payment, self.day)
        if seen is None:
            return Literal(False)
        return (payment.date < self.end) & seen

    def _base(self, payment, kind):
        return ((payment.company == self.company.id)
            & (payment.kind == kind) & (payment.finance_batch == Null))

    def regular(self, payment, kind):
        "The day's own payments the posting covers."
        seen = self._seen(payment, self.day)
        if seen is None:
            return Literal(False)
        return (self._base(payment, kind) & (payment.date >= self.start)
            & (payment.date < self.end) & seen)

    def late(self, payment, kind):
        """Payments of earlier days the posting covers: recorded after
        their day was posted, or committed after its snapshot. Found from
        what the previous posting did not see (an index range), never by
        reading history."""
        seen = self._seen(payment, self.day)
        if seen is None:
            return Literal(False)
        where = self._base(payment, kind) & (payment.date < self.start) & seen
        previous = self.previous
        before = self._seen(payment, previous)
        if before is None:
            # The first posting, or the first after claimed batches: what
            # is left unclaimed before the day.
            return where
        previous_end = day_bounds(self.company, previous.date)[1]
        # Implied by "not seen by the previous posting", for the indexes:
        # arrived since its snapshot, or dated after its day.
        recent = arrived_since(payment, previous, 'payment_watermark')
        return (where & (recent | (payment.date >= previous_end))
            & ~((payment.date < previous_end) & before))

    def select(self, kind, column='id'):
        """A column of the payments of kind the day covers: two selects,
        each on its own index (one OR would leave the planner a scan)."""
        Payment = Pool().get('scenic.payment')
        regular, late = Payment.__table__(), Payment.__table__()
        return Union(
            regular.select(getattr(regular, column),
                where=self.regular(regular, kind)),
            late.select(getattr(late, column),
                where=self.late(late, kind)),
            all_=True)

    def wheres(self, payment, kind, batch=None):
        """The payments (table `payment`) of kind the day's batch carries,
        as clauses to query apart and add up (regular, late): each uses
        its index, where one query of both joined to other tables let
        PostgreSQL hash whole tables."""
        if self.legacy:
            # posted before: its payments name their batch
            if batch is None:
                return []
            return [payment.finance_batch == batch.id]
        return [self.regular(payment, kind), self.late(payment, kind)]

    def where(self, payment, kind, batch=None):
        "Every payment (table `payment`) of kind the day's batch carries."
        if self.legacy:
            wheres = self.wheres(payment, kind, batch)
            return wheres[0] if wheres else Literal(False)
        return payment.id.in_(self.select(kind))


REVOKED = ['revoked', 'cancelled']


class Earning:
    """Which tickets earned whole (one entry, or unlimited entries within
    validity; not day or count cards) a posting defers, earns and gives
    back, by predicate over what its snapshot saw: such a ticket gets no
    `scenic.finance.ticket` row unless it is refunded. The one place
    that says it.

    The posting of day X has deferred a ticket (`deferred_by`) when its
    snapshot saw the ticket and its order paid (a ticket added to a paid
    order is deferred by the first posting that sees it), and has earned
    it (`earned_by`) when it had deferred it and, before X's end, saw an
    open entry scan of it (not for unlimited tickets) or its validity
    ended (unless it was revoked before that end). Later snapshots see
    more, so once true it stays true: a ticket is deferred, and earned,
    by the first posting where it holds and by no other. A refunded
    ticket gets a row (state refunded, what it had earned), which takes
    it out of the predicates for good; so does a change of the rule's VAT
    rate (`freeze`: the tickets deferred get a row at the rate they were
    deferred at). Rows written by earlier versions for such tickets go
    on being posted through them (`rowed`)."""

    def __init__(self, day, previous=False):
        pool = Pool()
        Day = pool.get('scenic.finance.day')
        ttype = pool.get('scenic.ticket.type').__table__()
        self.day = day
        self.company = day.company
        self.end = day_bounds(day.company, day.date)[1]
        if previous is False:
            days = Day.search([('company', '=', day.company.id),
                    ('date', '<', day.date)], order=[('date', 'DESC')],
                limit=1)
            previous = days[0] if days else None
        self.previous = previous
        cursor = Transaction().connection.cursor()
        cursor.execute(*ttype.select(ttype.id,
                where=ttype.category.in_(list(DAY_CARDS))))
        self.card_types = [r[0] for r in cursor.fetchall()]

    def whole(self, ticket):
        "Tickets earned whole: one entry or unlimited entries, not cards."
        where = ((ticket.entries_allowed == Null)
            | (ticket.entries_allowed <= 1))
        if self.card_types:
            where &= ~ticket.ticket_type.in_(self.card_types)
        return where

    @staticmethod
    def rowed(ticket, kind='any'):
        """Tickets with a deferral row: 'any'; 'deferred': rows other than
        those of whole tickets deferred by predicate (a refund's row, a
        row frozen at a change of rate: they name no receipt batch);
        'earned': rows other than a refund of a ticket earned before it."""
        deferral = Pool().get('scenic.finance.ticket').__table__()
        where = deferral.ticket == ticket.id
        if kind == 'deferred':
            where &= deferral.receipt != Null
        elif kind == 'earned':
            where &= ((deferral.receipt != Null) | (deferral.earned == 0)
                | (deferral.refund == Null))
        # A count (one row at most: unique), not EXISTS: PostgreSQL made
        # NOT EXISTS an anti-join and, the candidates under-estimated,
        # compared each of them with every row of the table (the second
        # day at 1M tickets: 78 million comparisons, 4.6 s).
        return Coalesce(deferral.select(Count(Literal(1)), where=where),
            0) > 0

    @staticmethod
    def seen(day, ticket):
        """The ticket existed for the posting of day: its snapshot saw it
        (every ticket, for a day posted before tickets had a watermark)."""
        seen = seen_by(ticket, day, 'ticket_watermark')
        return Literal(True) if seen is None else seen

    @staticmethod
    def _payment_counts(day, payment):
        """A payment (table `payment`) that makes its order paid for the
        posting of day (Coverage)."""
        return ((payment.kind == 'payment')
            & ((payment.finance_batch != Null)
                | Coverage(day, None).seen(payment)))

    @classmethod
    def paid(cls, day, ticket):
        "The order's payment seen by the posting of day (Coverage)."
        if day is None:
            return Literal(False)
        payment = Pool().get('scenic.payment').__table__()
        return Exists(payment.select(Literal(1),
                where=(payment.order == ticket.order)
                & cls._payment_counts(day, payment)))

    @staticmethod
    def _scan_counts(day, scan):
        """A scan (table `scan`) that is an entry for the posting of day:
        open, in, before the day's end and seen by its snapshot."""
        end = day_bounds(day.company, day.date)[1]
        where = ((scan.decision == 'open') & (scan.direction == 'in')
            & (scan.time < end))
        seen = seen_by(scan, day, 'scan_watermark')
        if seen is not None:
            # else posted by an earlier version: its tickets have rows
            where &= seen
        return where

    @classmethod
    def entered(cls, day, ticket):
        "An open entry scan before the day's end that its posting saw."
        scan = Pool().get('scenic.gate.scan').__table__()
        return Exists(scan.select(Literal(1),
                where=(scan.ticket == ticket.id)
                & cls._scan_counts(day, scan)))

    def _flags(self, table, of_ticket, counts):
        """A sub-select of a ticket's rows of `table` (payments of its
        order, its scans: `of_ticket`) read once for both postings: 1
        when one counts for this posting (`counts(day, table)`), + 2
        when one counted for the previous one. Never an EXISTS: those
        PostgreSQL may hash over the whole table's history, every day."""
        flags = Max(Case((counts(self.day, table), 1), else_=0))
        if self.previous is not None:
            flags += Max(Case((counts(self.previous, table), 2), else_=0))
        return Coalesce(table.select(flags, where=of_ticket), 0)

    def _order_paid(self, ticket):
        "_flags of the order's payments (paid)."
        payment = Pool().get('scenic.payment').__table__()
        return self._flags(payment, payment.order == ticket.order,
            self._payment_counts)

    def _ticket_entered(self, ticket):
        "_flags of the ticket's scans (entered)."
        scan = Pool().get('scenic.gate.scan').__table__()
        return self._flags(scan, scan.ticket == ticket.id, self._scan_counts)

    @staticmethod
    def _now(flags):
        return flags.in_([1, 3])

    @staticmethod
    def _before(flags):
        return flags >= 2

    @staticmethod
    def expired(day, ticket):
        """Validity ended by the day's end, the ticket not revoked before
        it ended (a refund approved later reverses what was earned)."""
        end = day_bounds(day.company, day.date)[1]
        revoked_before = (ticket.state.in_(REVOKED)
            & ((ticket.revoked_at == Null)
                | (ticket.revoked_at < ticket.valid_until)))
        return ((ticket.valid_until != Null) & (ticket.valid_until <= end)
            & ~revoked_before)

    @classmethod
    def deferred_by(cls, day, ticket, paid=None):
        """Deferred by the posting of day (None: no posting) or an earlier
        one: it saw the ticket and its order paid (`paid`: SQL saying
        so, else read here)."""
        if day is None:
            return Literal(False)
        if paid is None:
            paid = cls.paid(day, ticket)
        return cls.seen(day, ticket) & paid

    @classmethod
    def earned_by(cls, day, ticket, paid=None, entered=None):
        """Earned by the posting of day (None: no posting) or an earlier
        one (`paid`, `entered`: SQL saying so, else read here)."""
        if day is None:
            return Literal(False)
        if entered is None:
            entered = cls.entered(day, ticket)
        counts_entries = ((ticket.entries_allowed == Null)
            | (ticket.entries_allowed != 0))
        # expiry first: no scan is read for a ticket that expired
        return cls.deferred_by(day, ticket, paid) & (
            cls.expired(day, ticket) | (counts_entries & entered))

    def deferred_now(self, ticket, orders):
        """Whole tickets the posting defers, of `orders` (those of the
        payments it covers): it sees them, and the previous posting did
        not both see them and see their order paid (tickets added to an
        order paid before are deferred with the payment of the
        difference)."""
        where = (_in(ticket.order, orders) & self.whole(ticket)
            & ~self.rowed(ticket, 'deferred')
            & self.seen(self.day, ticket))
        if self.previous is not None:
            where &= ~self.deferred_by(self.previous, ticket,
                self._before(self._order_paid(ticket)))
        return where

    def earned_now(self, ticket, rowed='any'):
        """Whole tickets the posting earns: earned by its snapshot and not
        by the previous one's, the order's payments and the ticket's scans
        each read once for both (`_flags`)."""
        paid = self._order_paid(ticket)
        entered = self._ticket_entered(ticket)
        where = (self.whole(ticket) & ~self.rowed(ticket, rowed)
            & self.earned_by(self.day, ticket, self._now(paid),
                self._now(entered)))
        if self.previous is not None:
            where &= ~self.earned_by(self.previous, ticket,
                self._before(paid), self._before(entered))
        return where

    def candidates(self, orders):
        """A select of the tickets whose earned_by may turn true with this
        posting (a superset, each part on an index): entries it sees
        first (late uploads of offline boxes included), validity ending
        on its day, tickets of `orders` (the payments it covers)."""
        pool = Pool()
        scan = pool.get('scenic.gate.scan').__table__()
        ticket, paid = (pool.get('scenic.ticket').__table__()
            for _ in range(2))
        entries = ((scan.company == self.company.id)
            & (scan.decision == 'open') & (scan.direction == 'in')
            & (scan.time < self.end) & (scan.ticket != Null))
        ending = ((ticket.company == self.company.id)
            & (ticket.valid_until <= self.end))
        previous = self.previous
        if previous is not None:
            previous_end = day_bounds(self.company, previous.date)[1]
            recent = scan.time >= previous_end
            if previous.scan_watermark is not None:
                recent |= arrived_since(scan, previous, 'scan_watermark')
            entries &= recent
            ending &= ticket.valid_until > previous_end
        return Union(
            scan.select(scan.ticket, where=entries),
            ticket.select(ticket.id, where=ending),
            paid.select(paid.id, where=_in(paid.order, orders)))

    def _ids(self, query):
        """A sub-select (SQLite) or, on PostgreSQL, its ids read once and
        bound as an array (see Poster._orders)."""
        if backend.name != 'postgresql':
            return query
        cursor = Transaction().connection.cursor()
        cursor.execute(*query)
        return sorted({r[0] for r in cursor})

    def groups(self, orders):
        """The whole tickets the posting defers and earns, by groups, in
        one read of the candidates (`candidates`: each one's ticket, line
        and order read once for both): (deferred, earned), deferred
        [(channel, ticket type, unit price, count)] of `deferred_now`
        (their net and VAT are count × split_vat(price), the same cents
        as ticket by ticket), earned [(ticket type, channel, kind, unit
        price, count)] of `earned_now`, kind 'expiry' or 'use'."""
        pool = Pool()
        ticket = pool.get('scenic.ticket').__table__()
        line = pool.get('scenic.order.line').__table__()
        order = pool.get('scenic.order').__table__()
        candidates = self._ids(self.candidates(orders))
        rows = ticket.join(line,
            condition=ticket.line == line.id).join(order,
            condition=ticket.order == order.id).select(
            ticket.ticket_type.as_('ticket_type'),
            order.channel.as_('channel'),
            line.unit_price.as_('price'),
            Case((self.deferred_now(ticket, orders), 1),
                else_=0).as_('deferred'),
            Case((self.earned_now(ticket),
                    Case((self.expired(self.day, ticket), 'expiry'),
                        else_='use')),
                else_=Null).as_('kind'),
            where=_in(ticket.id, candidates) & self.whole(ticket))
        # grouped over a sub-select: PostgreSQL does not match a
        # parametrized kind of the GROUP BY with the SELECT's; no WHERE
        # on the flags (it would evaluate them twice): the group of the
        # candidates neither deferred nor earned is dropped here
        columns = [rows.channel, rows.ticket_type, rows.price,
            rows.deferred, rows.kind]
        cursor = Transaction().connection.cursor()
        cursor.execute(*rows.select(*columns, Count(Literal(1)),
                group_by=columns))
        deferred, earned = defaultdict(int), defaultdict(int)
        for channel, type_, price, is_deferred, kind, count in cursor:
            if is_deferred:
                deferred[(channel, type_, price)] += count
            if kind:
                earned[(type_, channel, kind, price)] += count
        return ([k + (c,) for k, c in deferred.items()],
            [k + (c,) for k, c in earned.items()])

    def record_refunds(self, batch, orders, rate, user, now):
        """Whole tickets of `orders` (the refunds covered) revoked, paid
        and without a row get one: 'closed' with their net earned when
        earned by this posting (its recognition ran first), else
        'deferred'; the refunds then take them as any row."""
        ticket = Pool().get('scenic.ticket').__table__()
        refunded = (_in(ticket.order, orders) & ticket.state.in_(REVOKED)
            & self.whole(ticket) & ~self.rowed(ticket)
            & self.deferred_by(self.day, ticket))
        earned = self.earned_by(self.day, ticket)
        self._write_rows(ticket, refunded, rate, user, now,
            lambda net: (Case((earned, 'closed'), else_='deferred'),
                Case((earned, _numeric(net)), else_=_numeric(Decimal(0)))))

    def freeze(self, rate, user, now):
        """Give a row to every whole ticket the posting of the day (the
        area's last) left deferred (it deferred them and did not earn
        them; refunded ones have a row already), at `rate`, the VAT rate
        they were deferred at: called before the rule changes its rate,
        so that they are earned and refunded through their row at the
        figures they were deferred with, not at the new rate's net. Later
        postings see them paid already: none defers them again."""
        ticket = Pool().get('scenic.ticket').__table__()
        frozen = ((ticket.company == self.company.id) & self.whole(ticket)
            & ~self.rowed(ticket) & self.deferred_by(self.day, ticket)
            & ~self.earned_by(self.day, ticket))
        self._write_rows(ticket, frozen, rate, user, now,
            lambda net: (Literal('deferred'), _numeric(Decimal(0))))

    @classmethod
    def freeze_area(cls, company, rate):
        "freeze as of the area's last posted day (none: nothing deferred)."
        Day = Pool().get('scenic.finance.day')
        days = Day.search([('company', '=', int(company))],
            order=[('date', 'DESC')], limit=1)
        if days:
            cls(days[0]).freeze(rate, Transaction().user,
                dt.datetime.utcnow())

    @staticmethod
    def _write_rows(ticket, where, rate, user, now, state_earned):
        """Rows (no receipt batch) for the tickets (table `ticket`) where
        holds, net and VAT at rate from their line's price: one
        INSERT … SELECT per price. state_earned(net) gives the state and
        earned columns."""
        pool = Pool()
        line = pool.get('scenic.order.line').__table__()
        deferral = pool.get('scenic.finance.ticket').__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*ticket.join(line,
                condition=ticket.line == line.id).select(line.unit_price,
                where=where, group_by=[line.unit_price]))
        for price, in cursor.fetchall():
            net, vat = split_vat(_money(price), rate)
            state, earned = state_earned(net)
            cursor.execute(*deferral.insert(
                    [deferral.company, deferral.ticket, deferral.state,
                        deferral.net, deferral.vat, deferral.earned,
                        deferral.create_uid, deferral.create_date],
                    ticket.join(line,
                        condition=ticket.line == line.id).select(
                        ticket.company, ticket.id, state,
                        _numeric(net), _numeric(vat), earned,
                        Literal(user), Literal(now),
                        where=where & (line.unit_price == price))))

    # --- drill-down ------------------------------------------------------

    def deferred_tickets(self):
        "The whole tickets the posting deferred (batch drill-down)."
        return self._drill_down('payment_watermark', self.deferred_now)

    def earned_tickets(self):
        "The whole tickets the posting earned (batch drill-down)."
        return self._drill_down('scan_watermark',
            lambda ticket, orders: ticket.id.in_(self.candidates(orders))
            & self.earned_now(ticket, 'earned'))

    def _drill_down(self, watermark, where):
        """The ids of the tickets where(ticket, orders of the payments the
        posting covers) holds; none for a day posted by an earlier version
        (no `watermark`: its tickets have rows)."""
        if getattr(self.day, watermark) is None:
            return []
        ticket = Pool().get('scenic.ticket').__table__()
        orders = Coverage(self.day, self.previous).select('payment', 'order')
        cursor = Transaction().connection.cursor()
        cursor.execute(*ticket.select(ticket.id, where=where(ticket, orders)))
        return [r[0] for r in cursor.fetchall()]


class Move(metaclass=PoolMeta):
    __name__ = 'account.move'

    @classmethod
    def _get_origin(cls):
        return super()._get_origin() + ['scenic.finance.batch']


class Batch(CompanyMixin, ModelSQL, ModelView):
    "Posting Batch"
    __name__ = 'scenic.finance.batch'
    day = fields.Many2One(
        'scenic.finance.day', "Day", required=True, readonly=True,
        ondelete='RESTRICT')
    date = fields.Date("Date", required=True, readonly=True)
    kind = fields.Selection(KINDS, "Kind", required=True, readonly=True)
    move = fields.Many2One(
        'account.move', "Move", readonly=True, ondelete='RESTRICT')
    amount = fields.Numeric("Amount", digits=(16, 2), readonly=True)
    late = fields.Integer(
        "Late Items", readonly=True,
        help="Payments or refunds of earlier days recorded after those "
        "days were posted.")
    payments = fields.Function(fields.Many2Many(
            'scenic.payment', None, None, "Payments"),
        'get_payments', searcher='search_payments')
    tickets = fields.Function(fields.Many2Many(
            'scenic.ticket', None, None, "Tickets Deferred"),
        'get_tickets', searcher='search_tickets')
    deferrals = fields.One2Many(
        'scenic.finance.ticket', 'receipt', "Tickets Deferred in Parts",
        readonly=True,
        help="The rows of the tickets earned in parts (cards) the batch "
        "deferred, with what of them is earned.")
    refunded_tickets = fields.One2Many(
        'scenic.finance.ticket', 'refund', "Tickets Refunded",
        readonly=True)
    earned_tickets = fields.Function(fields.Many2Many(
            'scenic.ticket', None, None, "Tickets Earned"),
        'get_tickets', searcher='search_tickets')
    recognitions = fields.One2Many(
        'scenic.finance.recognition', 'batch', "Recognitions",
        readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('kind_unique', Unique(t, t.company, t.date, t.kind),
                'scenic_finance.msg_batch_unique'),
            ]
        cls._order = [('date', 'DESC'), ('kind', 'ASC'), ('id', 'DESC')]

    def get_rec_name(self, name):
        kind = dict(KINDS)[self.kind]
        return f"{self.date} {kind}"

    def payments_where(self, payment):
        "The payments (table `payment`) the batch carries, as SQL."
        kind = {'receipts': 'payment', 'refunds': 'refund'}.get(self.kind)
        if not kind:
            return Literal(False)
        return Coverage(self.day).where(payment, kind, self)

    def payments_wheres(self, payment):
        """The same as clauses to query apart and add up (Coverage.wheres:
        the day's own payments, the late ones)."""
        kind = {'receipts': 'payment', 'refunds': 'refund'}.get(self.kind)
        if not kind:
            return []
        return Coverage(self.day).wheres(payment, kind, self)

    def get_payments(self, name):
        payment = Pool().get('scenic.payment').__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*payment.select(payment.id,
                where=self.payments_where(payment),
                order_by=[payment.date.desc, payment.id.desc]))
        return [r[0] for r in cursor.fetchall()]

    @classmethod
    def search_payments(cls, name, clause):
        "Batches carrying payments: ('payments', '=' / 'in', ids)."
        Payment = Pool().get('scenic.payment')
        _, operator, value = clause[:3]
        if operator not in {'=', 'in'}:
            raise NotImplementedError(
                "payments is searched with '=' or 'in' payment ids")
        if value is None:
            # batches without payments
            payment = Payment.__table__()
            cursor = Transaction().connection.cursor()
            carrying = []
            for batch in cls.search([('kind', 'in', ['receipts', 'refunds'])]):
                cursor.execute(*payment.select(Literal(1),
                        where=batch.payments_where(payment), limit=1))
                if cursor.fetchone():
                    carrying.append(batch.id)
            return [('id', 'not in', carrying)]
        ids = value if operator == 'in' else [value]
        batches = Payment.get_posting_batch(Payment.browse(ids), None)
        return [('id', 'in', [b for b in batches.values() if b])]

    def get_tickets(self, name):
        """The tickets the batch deferred (tickets) or earned
        (earned_tickets): their rows', and those earned whole found by
        predicate (Earning)."""
        pool = Pool()
        deferral = pool.get('scenic.finance.ticket').__table__()
        recognition = pool.get('scenic.finance.recognition').__table__()
        cursor = Transaction().connection.cursor()
        ids = set()
        if name == 'tickets' and self.kind == 'receipts':
            cursor.execute(*deferral.select(deferral.ticket,
                    where=deferral.receipt == self.id))
            ids.update(r[0] for r in cursor.fetchall())
            ids.update(Earning(self.day).deferred_tickets())
        elif name == 'earned_tickets' and self.kind == 'recognition':
            cursor.execute(*deferral.select(deferral.ticket,
                    where=deferral.recognition == self.id))
            ids.update(r[0] for r in cursor.fetchall())
            cursor.execute(*recognition.select(recognition.ticket,
                    where=(recognition.batch == self.id)
                    & (recognition.ticket != Null)))
            ids.update(r[0] for r in cursor.fetchall())
            ids.update(Earning(self.day).earned_tickets())
        return sorted(ids)

    @classmethod
    def search_tickets(cls, name, clause):
        """Batches that deferred (tickets) or earned (earned_tickets)
        tickets: (name, '=' / 'in', ticket ids)."""
        _, operator, value = clause[:3]
        if operator not in {'=', 'in'}:
            raise NotImplementedError(
                f"{name} is searched with '=' or 'in' ticket ids")
        kind = 'receipts' if name == 'tickets' else 'recognition'
        if value is None:
            # batches without such tickets
            return [('id', 'not in', [b.id
                        for b in cls.search([('kind', '=', kind)])
                        if b.get_tickets(name)])]
        ids = set(value if operator == 'in' else [value])
        found = []
        # Tickets are deferred by the posting of their payment's day or a
        # later one, and earned no earlier.
        first = cls._first_payment_date(ids)
        if first is not None:
            for batch in cls.search([('kind', '=', kind),
                        ('date', '>=', first)], order=[('date', 'ASC')]):
                if ids & set(batch.get_tickets(name)):
                    found.append(batch.id)
        return [('id', 'in', found)]

    @staticmethod
    def _first_payment_date(ticket_ids):
        "The local date of the first payment of the tickets' orders."
        pool = Pool()
        payment = pool.get('scenic.payment').__table__()
        ticket = pool.get('scenic.ticket').__table__()
        Company = pool.get('company.company')
        cursor = Transaction().connection.cursor()
        cursor.execute(*payment.join(ticket,
                condition=payment.order == ticket.order).select(
                payment.company, Min(payment.date),
                where=ticket.id.in_(list(ticket_ids)),
                group_by=[payment.company]))
        dates = [_local_date(Company(c), d) for c, d in cursor.fetchall()]
        return min(dates) if dates else None

    @classmethod
    def post_extra(cls, poster):
        """Post what other modules add to a day (the box office's cash
        differences), after the tickets' batches; `poster` is the day's
        Poster (its `batch(kind)` and `make_move`)."""


class Recognition(CompanyMixin, ModelSQL, ModelView):
    """Revenue earned on one day. Tickets earned whole (at first entry or
    expiry: nearly all of them) are summed in one row per kind, ticket
    type and channel (drill down through Batch.earned_tickets); tickets
    earned in parts (entries, days of validity), tickets with rows of
    earlier versions and refunds after use have one row each, with the
    ticket."""
    __name__ = 'scenic.finance.recognition'
    batch = fields.Many2One(
        'scenic.finance.batch', "Batch", required=True, readonly=True,
        ondelete='CASCADE')
    ticket = fields.Many2One(
        'scenic.ticket', "Ticket", readonly=True, ondelete='RESTRICT',
        help="Empty on the rows of tickets earned whole.")
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", required=True, readonly=True,
        ondelete='RESTRICT')
    channel = fields.Many2One(
        'scenic.channel', "Channel", required=True, readonly=True,
        ondelete='RESTRICT')
    quantity = fields.Integer("Tickets", required=True, readonly=True)
    date = fields.Date("Date", required=True, readonly=True)
    kind = fields.Selection(
        RECOGNITION_KINDS, "Kind", required=True, readonly=True)
    amount = fields.Numeric(
        "Amount", digits=(16, 2), required=True, readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t, (t.ticket, Index.Equality()),
                where=t.ticket != Null))
        cls._order = [('date', 'DESC'), ('id', 'DESC')]

    @classmethod
    def __register__(cls, module):
        migrate = (backend.TableHandler.table_exist(cls._table)
            and not cls.__table_handler__(module).column_exist(
                'ticket_type'))
        super().__register__(module)
        if migrate:
            cls._migrate_per_ticket_rows()

    @classmethod
    def _migrate_per_ticket_rows(cls):
        """Versions before the grouped rows had one row per ticket: give
        them their ticket's type and channel, one ticket each."""
        pool = Pool()
        table = cls.__table__()
        ticket = pool.get('scenic.ticket').__table__()
        order = pool.get('scenic.order').__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.update(
                [table.ticket_type, table.channel, table.quantity],
                [ticket.select(ticket.ticket_type,
                        where=ticket.id == table.ticket),
                    ticket.join(order,
                        condition=ticket.order == order.id).select(
                        order.channel, where=ticket.id == table.ticket),
                    1],
                where=table.ticket_type == Null))
        table_h = cls.__table_handler__()
        for column in ['ticket_type', 'channel', 'quantity']:
            table_h.not_null_action(column, 'add')


# --- the engine ------------------------------------------------------------

class _Lines:
    "Move lines summed by (account, party, description), with tax lines."

    def __init__(self):
        self.sums = defaultdict(lambda: [Decimal(0), Decimal(0)])
        self.tax = {}

    def add(self, account, amount, party=None, description=None,
            tax=None):
        "Debit a positive amount, credit a negative one."
        if not amount:
            return
        key = (account.id, party, description)
        self.sums[key][0] += amount
        if tax:
            self.tax.setdefault(key, [tax[0], tax[1], Decimal(0)])
            self.tax[key][2] += tax[2]

    def values(self):
        result = []
        for key, (amount, _) in sorted(self.sums.items(),
                key=lambda i: (i[0][0], i[0][1] or 0, i[0][2] or '')):
            if not amount:
                continue
            account, party, description = key
            line = {
                'account': account, 'party': party,
                'description': description,
                'debit': amount if amount > 0 else Decimal(0),
                'credit': -amount if amount < 0 else Decimal(0),
                }
            if key in self.tax:
                tax, type_, tax_amount = self.tax[key]
                line['tax_lines'] = [('create', [{
                                'tax': tax, 'type': type_,
                                'amount': tax_amount}])]
            result.append(line)
        return result

    @property
    def total(self):
        return sum((v[0] for v in self.sums.values()), Decimal(0))


def posting_period(company, date):
    """The period a move of `date` goes into and the move's date: its own
    period when open, else the first open one after it (late postings)."""
    Period = Pool().get('account.period')
    periods = Period.search([
            ('fiscalyear.company', '=', company.id),
            ('type', '=', 'standard'),
            ('state', '=', 'open'),
            ('end_date', '>=', date),
            ], order=[('start_date', 'ASC')], limit=1)
    if not periods:
        raise PostingError(gettext('scenic_finance.msg_no_open_period',
                company=company.rec_name, date=date))
    period, = periods
    return period, max(date, period.start_date)


class Poster:
    """Posts one day of one area. Call `post()`; it returns the day record,
    or None when the day was posted already."""

    def __init__(self, company, date):
        pool = Pool()
        self.company = company
        self.date = date
        self.rule = pool.get('scenic.finance.rule').for_company(company)
        self.start, self.end = day_bounds(company, date)
        self.cursor = Transaction().connection.cursor()
        self.user = Transaction().user
        self.now = dt.datetime.utcnow()
        self.party_ids = {}

    def post(self):
        pool = Pool()
        Day = pool.get('scenic.finance.day')
        day_table = Day.__table__()
        self.cursor.execute(*day_table.select(day_table.id,
                where=(day_table.company == self.company.id)
                & (day_table.date == self.date)))
        if self.cursor.fetchone():
            return None
        if backend.name == 'postgresql':
            # Until the transaction ends. The posting's reads follow the
            # day's rows by index, but their estimated cost passes
            # jit_above_cost: at 1M tickets (bench/month_close.py)
            # compiling the earned-whole read took 1.3 s a day, more than
            # running it. And each is planned with its values: run daily
            # with the same text, psycopg prepares them and PostgreSQL
            # soon planned them generically, with the day's arrays of ids
            # as parameters (`_in`): estimated at 3 rows instead of
            # 33,000, and an array tested by a linear search per row
            # (2 s a day) where a constant one is hashed.
            self.cursor.execute('SET LOCAL jit = off')
            self.cursor.execute(
                'SET LOCAL plan_cache_mode = force_custom_plan')
        previous = Day.search([('company', '=', self.company.id),
                ('date', '<', self.date)], order=[('date', 'DESC')], limit=1)
        self.day, = Day.create([{
                    'company': self.company.id, 'date': self.date,
                    'state': 'posted', **Watermark.take(self.cursor)}])
        previous = previous[0] if previous else None
        self.coverage = Coverage(self.day, previous)
        self.earning = Earning(self.day, previous)
        self.order_ids = {}
        self.whole_groups = None
        self.batches = {}
        # (channel, ticket type) → [count, VAT] of the whole tickets
        # deferred, for the settlement
        self.sold = {}
        self.receipts()
        # Entries before a refund are earned first: a refund after
        # partial use gives back only what is left.
        self.recognition()
        self.refunds()
        pool.get('scenic.finance.batch').post_extra(self)
        self.day.compute_lines(sold=self.sold)
        return self.day

    def batch(self, kind):
        Batch = Pool().get('scenic.finance.batch')
        if not self.batches:
            self._lock_move_sequence()
        if kind not in self.batches:
            self.batches[kind], = Batch.create([{
                        'company': self.company.id, 'day': self.day.id,
                        'date': self.date, 'kind': kind, 'late': 0}])
        return self.batches[kind]

    def _lock_move_sequence(self):
        """Posting a move locks its period's strict sequence, and trytond
        gets that lock by retrying the whole transaction: asked for before
        the day's first rows are written, the retry costs nothing (else
        the first day of every run wrote its tickets twice)."""
        try:
            period, _ = posting_period(self.company, self.date)
        except PostingError:
            return  # make_move raises it if the day has a move to post
        if period.move_sequence_used:
            period.move_sequence_used.lock()

    def make_move(self, batch, lines, late=0):
        pool = Pool()
        Move = pool.get('account.move')
        Batch = pool.get('scenic.finance.batch')
        if lines.total != 0:
            raise PostingError(gettext('scenic_finance.msg_unbalanced',
                    batch=batch.rec_name, difference=lines.total))
        values = lines.values()
        amount = sum((l['debit'] for l in values), Decimal(0))
        move = None
        if values:
            period, date = posting_period(self.company, self.date)
            move, = Move.create([{
                        'company': self.company.id,
                        'journal': self.rule.journal.id,
                        'period': period.id, 'date': date,
                        'origin': str(batch),
                        'description': batch.rec_name,
                        'lines': [('create', values)],
                        }])
            Move.post([move])
        Batch.write([batch], {'move': move.id if move else None,
                'amount': amount, 'late': late})

    def _money_lines(self, lines, kind, sign):
        """The methods' side of the payments of kind the day covers: one
        line per method and party (late ones apart, named). Returns the
        total, the late count and the batch (None: no payment)."""
        payment = Pool().get('scenic.payment').__table__()
        coverage = self.coverage
        late = 0
        rows = []
        for is_late, where in [(False, coverage.regular(payment, kind)),
                (True, coverage.late(payment, kind))]:
            self.cursor.execute(*payment.select(
                    payment.provider, payment.finance_party,
                    Sum(payment.amount), Count(Literal(1)),
                    where=where,
                    group_by=[payment.provider, payment.finance_party]))
            rows += [(p, party, is_late, a, c)
                for p, party, a, c in self.cursor.fetchall()]
        if not rows:
            return Decimal(0), 0, None
        batch = self.batch('receipts' if kind == 'payment' else 'refunds')
        total = Decimal(0)
        for provider, party, is_late, amount, count in rows:
            amount = _money(amount)
            account = self.rule.method_account(provider)
            description = None
            if is_late:
                late += count
                description = self._late_description(payment, kind,
                    provider, party)
            if account.party_required and not party:
                raise PostingError(gettext(
                        'scenic_finance.msg_party_required',
                        method=provider, account=account.rec_name))
            lines.add(account, sign * amount,
                party if account.party_required else None, description)
            total += amount
        return total, late, batch

    def _late_description(self, payment, kind, provider, party):
        "Name the original payments a late line carries."
        self.cursor.execute(*payment.select(
                payment.provider_reference, payment.date,
                where=self.coverage.late(payment, kind)
                & (payment.provider == provider)
                & ((payment.finance_party == party) if party
                    else (payment.finance_party == Null)),
                order_by=[payment.date], limit=4))
        rows = self.cursor.fetchall()
        refs = ', '.join(f"{r[0]} ({_local_date(self.company, r[1])})"
            for r in rows[:3])
        if len(rows) > 3:
            refs += ", …"
        return gettext('scenic_finance.msg_late_line', references=refs)

    def _orders(self, kind):
        """The orders of the payments of kind the day covers: a sub-select
        (SQLite) or, on PostgreSQL, their ids read once and bound as an
        array (`_in`): with the coverage's sub-select inside a join or an
        update, PostgreSQL's plans ran it once per outer row."""
        if backend.name != 'postgresql':
            return self.coverage.select(kind, 'order')
        if kind not in self.order_ids:
            self.cursor.execute(*self.coverage.select(kind, 'order'))
            self.order_ids[kind] = sorted({r[0] for r in self.cursor})
        return self.order_ids[kind]

    def _whole_groups(self):
        """Earning.groups of the posting, read once for the receipts and
        the recognition (the rows the receipts write are cards': they
        change nothing of the whole tickets' predicates)."""
        if self.whole_groups is None:
            self.whole_groups = self.earning.groups(self._orders('payment'))
        return self.whole_groups

    def receipts(self):
        pool = Pool()
        ticket = pool.get('scenic.ticket').__table__()
        line = pool.get('scenic.order.line').__table__()
        lines = _Lines()
        money, late, batch = self._money_lines(lines, 'payment', 1)
        if not batch:
            return
        # Defer the tickets of the orders paid, at their line's price:
        # those earned whole by groups, no row each.
        orders = self._orders('payment')
        rate = self.rule.vat_rate
        whole_net = whole_vat = Decimal(0)
        for channel, type_, price, count in self._whole_groups()[0]:
            ticket_net, ticket_vat = split_vat(_money(price), rate)
            whole_net += count * ticket_net
            whole_vat += count * ticket_vat
            sold = self.sold.setdefault((channel, type_), [0, Decimal(0)])
            sold[0] += count
            sold[1] += count * ticket_vat
        # Cards earned in parts: a row each.
        self.cursor.execute(*ticket.join(line,
                condition=ticket.line == line.id).select(line.unit_price,
                where=_in(ticket.order, orders)
                & ~self.earning.whole(ticket),
                group_by=[line.unit_price]))
        Deferral = pool.get('scenic.finance.ticket')
        deferral, known = Deferral.__table__(), Deferral.__table__()
        # NOT EXISTS, not NOT IN: PostgreSQL hashes a NOT IN only while it
        # fits in work_mem, else it rescans the sub-select for every row.
        not_known = ~Exists(known.select(Literal(1),
                where=known.ticket == ticket.id))
        for price, in self.cursor.fetchall():
            net, vat = split_vat(_money(price), rate)
            self.cursor.execute(*deferral.insert(
                    [deferral.company, deferral.ticket, deferral.state,
                        deferral.net, deferral.vat, deferral.earned,
                        deferral.receipt, deferral.create_uid,
                        deferral.create_date],
                    ticket.join(line,
                        condition=ticket.line == line.id).select(
                        ticket.company, ticket.id,
                        Literal('deferred'), _numeric(net), _numeric(vat),
                        _numeric(Decimal(0)), Literal(batch.id),
                        Literal(self.user), Literal(self.now),
                        # A join on the line, not a second IN on the
                        # orders: one index lookup less per ticket.
                        where=_in(ticket.order, orders)
                        & ~self.earning.whole(ticket)
                        & (line.unit_price == price) & not_known)))
        self.cursor.execute(*deferral.select(
                Sum(deferral.net), Sum(deferral.vat),
                where=deferral.receipt == batch.id))
        net, vat = (_money(v) for v in self.cursor.fetchone())
        net += whole_net
        vat += whole_vat
        self._deferral_lines(lines, -net, -vat)
        lines.add(self.rule.difference_account, -(money - net - vat))
        self.make_move(batch, lines, late)

    def _deferral_lines(self, lines, net, vat):
        "2203 and output VAT, with the VAT return's tax lines."
        tax = self.rule.tax
        if tax and vat:
            lines.add(self.rule.deferred_account, net,
                tax=(tax.id, 'base', -net))
            lines.add(tax.invoice_account, vat, tax=(tax.id, 'tax', -vat))
        else:
            lines.add(self.rule.deferred_account, net + vat)

    def refunds(self):
        pool = Pool()
        ticket = pool.get('scenic.ticket').__table__()
        lines = _Lines()
        money, late, batch = self._money_lines(lines, 'refund', -1)
        if not batch:
            return
        orders = self._orders('refund')
        deferral = pool.get('scenic.finance.ticket').__table__()
        self.earning.record_refunds(batch, orders, self.rule.vat_rate,
            self.user, self.now)
        earned_ids, reversed_, earned_vat = self._reverse_earned(
            batch, ticket, deferral, orders)
        # The refunded tickets leave the deferral with what is left of
        # them: a partly earned card gives back only its unearned part.
        # Read, then written by id: an UPDATE … IN (sub-select) let
        # PostgreSQL run the payments' sub-select once per deferred row.
        self.cursor.execute(*deferral.join(ticket,
                condition=deferral.ticket == ticket.id).select(
                deferral.id, deferral.net, deferral.earned, deferral.vat,
                where=(deferral.state == 'deferred')
                & ticket.state.in_(REVOKED)
                & _in(ticket.order, orders)))
        rows = self.cursor.fetchall()
        # The VAT of the part given back is reversed; that of what was
        # used stays due (unless all of it is given back: earned_vat).
        left, vat = Decimal(0), earned_vat
        for _, net, earned, ticket_vat in rows:
            net, earned, ticket_vat = map(_money, (net, earned, ticket_vat))
            left += net - earned
            vat += (ticket_vat * (net - earned) / net).quantize(
                CENT, ROUND_HALF_UP) if net else ticket_vat
        for chunk in _chunks([r[0] for r in rows] + earned_ids):
            self.cursor.execute(*deferral.update(
                    [deferral.state, deferral.refund], ['refunded', batch.id],
                    where=deferral.id.in_(chunk)))
        self._deferral_lines(lines, left, vat)
        revenue = Decimal(0)
        tax = self.rule.tax if earned_vat else None
        for account, amount in reversed_.items():
            lines.add(account, amount,
                tax=(tax.id, 'base', -amount) if tax else None)
            revenue += amount
        # Kept (a refund fee) or given back beyond the deferral.
        lines.add(self.rule.other_revenue_account,
            money - left - vat - revenue)
        self.make_move(batch, lines, late)

    def _reverse_earned(self, batch, ticket, deferral, orders):
        """Tickets refunded after their revenue was earned in full (used
        tickets, a supervisor approving): a negative recognition row
        reverses that revenue, and their VAT goes back with the money.
        Return their deferrals' ids, the debits per revenue account and
        their VAT."""
        pool = Pool()
        ttype = pool.get('scenic.ticket.type').__table__()
        order = pool.get('scenic.order').__table__()
        recognition = pool.get('scenic.finance.recognition').__table__()
        self.cursor.execute(*deferral.join(ticket,
                condition=deferral.ticket == ticket.id).join(ttype,
                condition=ticket.ticket_type == ttype.id).join(order,
                condition=ticket.order == order.id).select(
                deferral.id, ticket.id, ticket.ticket_type, order.channel,
                ttype.category, deferral.earned, deferral.vat,
                where=(deferral.state == 'closed')
                & (ticket.state == 'revoked')
                & _in(ticket.order, orders)))
        rows = self.cursor.fetchall()
        debits = defaultdict(Decimal)
        vat = Decimal(0)
        for chunk in _chunks(rows):
            self.cursor.execute(*recognition.insert(
                    [recognition.company, recognition.batch,
                        recognition.ticket, recognition.ticket_type,
                        recognition.channel, recognition.quantity,
                        recognition.date, recognition.kind,
                        recognition.amount, recognition.create_uid,
                        recognition.create_date],
                    [[self.company.id, batch.id, t, type_, channel, 1,
                            self.date, 'refund', -_money(earned), self.user,
                            self.now]
                        for _, t, type_, channel, _, earned, _ in chunk]))
        for _, _, _, _, category, earned, ticket_vat in rows:
            debits[self.rule.revenue_account_for(category)] += _money(earned)
            vat += _money(ticket_vat)
        return [r[0] for r in rows], debits, vat

    def recognition(self):
        pool = Pool()
        Ticket = pool.get('scenic.ticket')
        ticket = Ticket.__table__()
        order = pool.get('scenic.order').__table__()
        Deferral = pool.get('scenic.finance.ticket')
        deferral, target = Deferral.__table__(), Deferral.__table__()
        ttype = pool.get('scenic.ticket.type').__table__()
        scan = pool.get('scenic.gate.scan').__table__()
        deferred = ((deferral.company == self.company.id)
            & (deferral.state == 'deferred'))
        # The entries of the deferred tickets so far, one row per ticket:
        # a join grouped by ticket, not sub-selects run for every ticket.
        entered = deferral.join(scan, condition=scan.ticket == deferral.ticket)
        entries = entered.select(
            scan.ticket.as_('ticket'), Count(Literal(1)).as_('entries'),
            Min(scan.time).as_('first_entry'),
            where=deferred & (scan.decision == 'open')
            & (scan.direction == 'in') & (scan.time < self.end),
            group_by=[scan.ticket])
        joined = deferral.join(ticket,
            condition=deferral.ticket == ticket.id).join(ttype,
            condition=ticket.ticket_type == ttype.id).join(order,
            condition=ticket.order == order.id).join(entries,
            type_='LEFT', condition=entries.ticket == ticket.id)
        # The tickets with a row (cards earned per entry or per day, and
        # rows of earlier versions) go through earned_by_end one by one,
        # a recognition row each.
        query = joined.select(
                ticket.id, ticket.ticket_type, order.channel, ttype.category,
                ticket.entries_allowed, ticket.valid_from,
                ticket.valid_until, ticket.state, ticket.write_date,
                ticket.revoked_at,
                deferral.net, deferral.earned,
                entries.entries, entries.first_entry,
                where=deferred)
        self.cursor.execute(*query)
        rows = []
        for (id_, type_id, channel, category, allowed, valid_from,
                valid_until, state, write_date, revoked_at, net, earned,
                n_entries, first_entry) in self.cursor.fetchall():
            net, earned = _money(net), _money(earned)
            target_, kind = self.earned_by_end(category, allowed,
                _dt(valid_from), _dt(valid_until), state, _dt(write_date),
                n_entries or 0, _dt(first_entry), net, _dt(revoked_at))
            delta = target_ - earned
            if delta <= 0:
                continue
            rows.append((id_, type_id, channel, kind, delta))
        # Every other ticket is earned whole, at first entry or at expiry,
        # by predicate (Earning), summed per kind, ticket type and channel
        # (a busy day has 50,000 of them).
        rate = self.rule.vat_rate
        whole = defaultdict(lambda: [0, Decimal(0)])
        for type_id, channel, kind, price, count in (
                self._whole_groups()[1]):
            net, _ = split_vat(_money(price), rate)
            whole[(type_id, channel, kind)][0] += count
            whole[(type_id, channel, kind)][1] += count * net
        if not rows and not whole:
            return
        batch = self.batch('recognition')
        recognition = pool.get('scenic.finance.recognition').__table__()
        columns = [recognition.company, recognition.batch,
            recognition.ticket_type, recognition.channel,
            recognition.quantity, recognition.date, recognition.kind,
            recognition.amount, recognition.create_uid,
            recognition.create_date]
        if whole:
            self.cursor.execute(*recognition.insert(columns, [
                        [self.company.id, batch.id, t, c, n, self.date, k,
                            a, self.user, self.now]
                        for (t, c, k), (n, a) in sorted(whole.items())]))
        for chunk in _chunks(rows):
            self.cursor.execute(*recognition.insert(
                    columns + [recognition.ticket], [
                        [self.company.id, batch.id, t, c, 1, self.date, k,
                            a, self.user, self.now, i]
                        for i, t, c, k, a in chunk]))
        # One statement from the per-ticket rows just written: what each
        # ticket earned today is added, and a ticket fully earned leaves
        # the deferral (compared within half a cent: SQLite sums its
        # numerics as floats; the bound Decimal is text to SQLite, so it
        # is added, never compared: any number sorts before any text
        # there).
        if rows:
            earned = recognition.select(recognition.ticket.as_('ticket'),
                recognition.amount.as_('amount'),
                where=(recognition.batch == batch.id)
                & (recognition.ticket != Null))
            self.cursor.execute(*target.update(
                    [target.earned, target.state],
                    [target.earned + earned.amount,
                        Case((target.earned + earned.amount + HALF_CENT
                                > target.net, 'closed'),
                            else_=target.state)],
                    from_=[earned], where=target.ticket == earned.ticket))
        TicketType = pool.get('scenic.ticket.type')
        self.cursor.execute(*recognition.join(ttype,
                condition=recognition.ticket_type == ttype.id).select(
                recognition.ticket_type, ttype.category,
                Sum(recognition.amount),
                where=recognition.batch == batch.id,
                group_by=[recognition.ticket_type, ttype.category]))
        lines = _Lines()
        total = Decimal(0)
        for type_id, category, amount in self.cursor.fetchall():
            amount = _money(amount)
            account = self.rule.revenue_account_for(category)
            lines.add(account, -amount,
                description=TicketType(type_id).rec_name)
            total += amount
        lines.add(self.rule.deferred_account, total)
        self.make_move(batch, lines)

    def earned_by_end(self, category, allowed, valid_from, valid_until,
            state, write_date, n_entries, first_entry, net,
            revoked_at=None):
        """How much of a ticket's net is earned by the end of the day, and
        why: all of it at first entry or expiry; per entry for
        multi-entry tickets; day by day over an annual or season card's
        validity. A revoked ticket earns nothing after its revocation
        (its refund takes the rest)."""
        end = self.end
        revoked = state in REVOKED
        if revoked and revoked_at:
            end = min(end, revoked_at)
        if valid_until and valid_until <= end and not revoked:
            return net, 'expiry'
        if category in DAY_CARDS and valid_from and valid_until:
            tz = area_tz(self.company)
            first = _local(valid_from, tz)
            last = _local(valid_until - dt.timedelta(microseconds=1), tz)
            today = _local(end - dt.timedelta(microseconds=1), tz)
            total = (last - first).days + 1
            elapsed = min(max((today - first).days + 1, 0), total)
            return ((net * elapsed / total).quantize(CENT, ROUND_HALF_UP),
                'day')
        if allowed and allowed > 1:
            used = min(n_entries, allowed)
            return ((net * used / allowed).quantize(CENT, ROUND_HALF_UP),
                'entry')
        if allowed == 0:
            # Unlimited entries within validity: earned at expiry.
            return Decimal(0), 'expiry'
        if n_entries or (state == 'used' and write_date
                and write_date < end):
            return net, 'use'
        return Decimal(0), 'use'


def _numeric(value):
    """A number SQLite stores as a number: a bound Decimal is text there,
    and text compares greater than any number (net > earned would hold
    for ever)."""
    if not isinstance(value, Expression):
        value = Literal(value)
    return Cast(value, 'NUMERIC')


def _dt(value):
    "Timestamps come back as text from SQLite."
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


def _local(value, tz):
    return value.replace(tzinfo=dt.timezone.utc).astimezone(tz).date()


def _local_date(company, value):
    return _local(_dt(value), area_tz(company))


def first_payment_date(company):
    """The local date of the area's first payment (None: no payment),
    read on the payments' indexes: the unclaimed ones by (company, date),
    those claimed by batches of earlier versions by their batch (one
    search of all of them sorted the whole table: 0.36 s at 1M)."""
    Payment = Pool().get('scenic.payment')
    dates = [p.date for claimed in ['=', '!=']
        for p in Payment.search([('company', '=', company.id),
                ('finance_batch', claimed, None)],
            order=[('date', 'ASC')], limit=1)]
    return _local(min(dates), area_tz(company)) if dates else None


def post_days(company, until=None, commit=False):
    """Post every day of the area not posted yet, up to `until` (default
    yesterday); never today or later, which are still open for sales.

    With commit, each day commits on its own (the cron): a crash loses at
    most the day in progress, never half of it. Returns the days posted.
    """
    pool = Pool()
    Day = pool.get('scenic.finance.day')
    last_open = area_today(company) - dt.timedelta(1)
    until = min(until or last_open, last_open)
    days = Day.search([('company', '=', company.id)],
        order=[('date', 'DESC')], limit=1)
    if days:
        first = days[0].date + dt.timedelta(1)
    else:
        first = first_payment_date(company)
        if not first:
            return []
    posted = []
    date = first
    # The locks a day's transaction asked for (posting a move locks
    # tables): later days start with them instead of posting half a day,
    # failing and posting it again.
    extras = {}
    while date <= until:
        if commit:
            day = _in_own_transaction(
                lambda: Poster(pool.get('company.company')(company.id),
                    date).post(), extras=extras)
        else:
            day = Poster(company, date).post()
        if day:
            posted.append(date)
        date += dt.timedelta(1)
    return posted


def _in_own_transaction(function, attempts=5, extras=None):
    """Run function in a transaction of its own and commit; retried with
    the tables it asks to lock (as trytond's dispatcher does), which are
    added to `extras`."""
    if extras is None:
        extras = {}
    for attempt in range(attempts):
        try:
            with Transaction().new_transaction(**extras) as transaction:
                result = function()
                transaction.commit()
                return result
        except TransactionError as error:
            if attempt == attempts - 1:
                raise
            error.fix(extras)


class Company(metaclass=PoolMeta):
    __name__ = 'company.company'

    @classmethod
    def scenic_post_days(cls):
        "Cron: post the areas' ended days."
        Rule = Pool().get('scenic.finance.rule')
        for rule in Rule.search([]):
            with Transaction().set_context(company=rule.company.id):
                post_days(rule.company, commit=True)


class PostDays(Wizard):
    "Post the ended days now (what the cron does every hour)."
    __name__ = 'scenic.finance.post_days'
    start = StateTransition()

    def transition_start(self):
        Company = Pool().get('company.company')
        company = Company(Transaction().context['company'])
        post_days(company)
        return 'end'
