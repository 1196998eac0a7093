"""Ticket windows and kiosks as sale_point's points of sale, with shifts.

sale_point gives the point, its sales, payments, cash sessions and cash
transfers; what a ticket window adds is modelled here as extensions:

- a shift is a `sale.point.cash.session` opened explicitly by a cashier
  with the counted float (sale_point opens one silently on the first cash
  payment);
- it closes with the cash counted by denomination against the expected
  amount; a difference within the point's tolerance closes at once through
  a cash transfer to the shortage/overage type, a larger one waits in
  `pending` for a supervisor (sale_point only closes exact sessions);
- payments carry the shift, the cashier, the provider method and the trade
  number, for every method (sale_point links only cash payments to the
  session), and refunds may go back by the original wallet or card method
  (sale_point forces negative payments to cash);
- only supervisors approve differences and re-open closed shifts.
"""
import datetime as dt
from collections import defaultdict
from decimal import Decimal

from trytond.i18n import gettext
from trytond.model import Index, ModelSQL, ModelView, Workflow, fields
from trytond.modules.currency.fields import Monetary
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Eval, If
from trytond.transaction import Transaction, without_check_access

from .exceptions import CounterError, ShiftAccessError

PROVIDER_METHODS = [
    (None, ""),
    ('cash', "Cash"),
    ('wechat', "WeChat Pay"),
    ('alipay', "Alipay"),
    ('unionpay', "UnionPay Card"),
    ('simulated', "Simulated Provider"),
    ]
# Yuan notes and coins a drawer holds (the cashier counts each).
DENOMINATIONS = [Decimal(d) for d in (
        '100', '50', '20', '10', '5', '1', '0.5', '0.1')]
EVENT_KINDS = [
    ('open', "Shift Opened"),
    ('sale', "Sale"),
    ('refund', "Refund"),
    ('print', "Print"),
    ('reprint', "Reprint"),
    ('pickup', "Pickup"),
    ('drawer', "Drawer Opened"),
    ('close', "Shift Closed"),
    ('approve', "Difference Approved"),
    ('reopen', "Shift Re-opened"),
    ]


def now_utc():
    return dt.datetime.now(dt.timezone.utc)


def naive(value):
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def in_group(xml_id):
    "Whether the transaction's user is in a scenic_ticket group."
    pool = Pool()
    User = pool.get('res.user')
    ModelData = pool.get('ir.model.data')
    if Transaction().user == 0:
        return True
    return ModelData.get_id('scenic_ticket', xml_id) in User.get_groups()


def is_supervisor():
    return in_group('group_scenic_supervisor')


class Point(metaclass=PoolMeta):
    __name__ = 'sale.point'
    scenic_kind = fields.Selection([
            (None, ""),
            ('window', "Ticket Window"),
            ('kiosk', "Self-Service Kiosk"),
            ], "Scenic Kind",
        help="A ticket window or kiosk sells scenic tickets through its "
        "channel.")
    scenic_channel = fields.Many2One(
        'scenic.channel', "Channel", ondelete='RESTRICT',
        domain=[('company', '=', Eval('company', -1))],
        states={'required': Eval('scenic_kind', None) != None},  # noqa: E711
        help="The channel whose prices and rules the window sells at.")
    cash_tolerance = Monetary(
        "Cash Tolerance", currency='currency', digits='currency',
        help="A shift whose counted cash differs from the expected amount "
        "by at most this closes without a supervisor.")
    difference_transfer_type = fields.Many2One(
        'sale.point.cash.transfer.type', "Difference Transfer Type",
        domain=[('company', '=', Eval('company', -1))],
        help="Where cash shortages and overages go (e.g. 1901 pending "
        "losses) when a shift closes with a difference.")
    float_transfer_type = fields.Many2One(
        'sale.point.cash.transfer.type', "Float Transfer Type",
        domain=[('company', '=', Eval('company', -1))],
        help="Cash brought to or taken from the drawer between shifts.")
    box = fields.Many2One(
        'scenic.gate.box', "IoT Box", ondelete='SET NULL',
        domain=[('company', '=', Eval('company', -1))],
        help="The IoT box of the counter PC or kiosk (ID card reader, "
        "ticket printer), as enrolled in the device registry.")
    box_online = fields.Function(
        fields.Boolean("Box Online"), 'get_box_health')
    box_alarm = fields.Function(fields.Selection(
            'get_box_alarms', "Box Alarm"), 'get_box_health')
    printer_paper = fields.Function(fields.Selection([
                (None, ""),
                ('ok', "OK"),
                ('low', "Low"),
                ('out', "Out"),
                ], "Printer Paper",
            help="The paper of the box's ticket printer at its last "
            "heartbeat."), 'get_box_health')
    currency = fields.Function(
        fields.Many2One('currency.currency', "Currency"),
        'on_change_with_currency')

    @classmethod
    def __register__(cls, module):
        table = cls.__table_handler__(module)
        # The box was a free-text code before it was linked to the registry.
        old_device = table.column_exist('device')
        super().__register__(module)
        if old_device:
            table.drop_column('device')

    @classmethod
    def default_cash_tolerance(cls):
        return Decimal(0)

    @classmethod
    def get_box_alarms(cls):
        Box = Pool().get('scenic.gate.box')
        return Box.alarm.selection

    @classmethod
    def get_box_health(cls, points, names):
        result = {n: {p.id: None for p in points} for n in names}
        for point in points:
            box = point.box
            if not box:
                continue
            if 'box_online' in names:
                result['box_online'][point.id] = box.online
            if 'box_alarm' in names:
                result['box_alarm'][point.id] = box.alarm
            if 'printer_paper' in names:
                papers = [d.paper for d in box.devices
                    if d.kind == 'printer' and d.paper]
                # the worst printer of the box
                for paper in ('out', 'low', 'ok'):
                    if paper in papers:
                        result['printer_paper'][point.id] = paper
                        break
        return result

    @property
    def box_url(self):
        "The box's local API as the PC's browser reaches it, or None."
        if self.box and self.box.state == 'enrolled':
            return self.box.local_url or None

    @fields.depends('company')
    def on_change_with_currency(self, name=None):
        return self.company.currency if self.company else None


class PaymentMethod(metaclass=PoolMeta):
    __name__ = 'sale.point.payment.method'
    scenic_provider = fields.Selection(
        PROVIDER_METHODS, "Provider",
        help="How the window collects this method; refunds of it go back "
        "the same way with the original trade number.")


class CashSession(metaclass=PoolMeta):
    __name__ = 'sale.point.cash.session'
    cashier = fields.Many2One(
        'res.user', "Cashier", readonly=True, ondelete='RESTRICT')
    opened_at = fields.DateTime("Opened At", readonly=True)
    float_amount = Monetary(
        "Float", currency='currency', digits='currency', readonly=True,
        help="The cash counted in the drawer when the shift opened.")
    counts = fields.One2Many(
        'scenic.counter.cash_count', 'session', "Cash Counted",
        readonly=True)
    counted_amount = Monetary(
        "Counted", currency='currency', digits='currency', readonly=True)
    expected_amount = Monetary(
        "Expected", currency='currency', digits='currency', readonly=True)
    difference = Monetary(
        "Difference", currency='currency', digits='currency',
        readonly=True, help="Counted minus expected cash.")
    closed_at = fields.DateTime("Closed At", readonly=True)
    approved_by = fields.Many2One(
        'res.user', "Approved By", readonly=True, ondelete='RESTRICT')
    shift_payments = fields.One2Many(
        'sale.point.payment', 'shift', "Shift Payments", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        selection = ('pending', "Awaiting Approval")
        if selection not in cls.state.selection:
            cls.state.selection.insert(1, selection)
        cls._transitions |= {
            ('open', 'pending'),
            ('pending', 'closed'),
            ('pending', 'open'),
            }
        t = cls.__table__()
        cls._sql_indexes.add(Index(t, (t.cashier, Index.Equality()),
                (t.state, Index.Equality(cardinality='low'))))
        cls._buttons.update({
                'approve': {
                    'invisible': Eval('state') != 'pending',
                    'depends': ['state'],
                    },
                })

    # --- opening -------------------------------------------------------

    @classmethod
    def open_shift(cls, point, float_amount, cashier=None, now=None):
        """Open the point's shift for the cashier with the counted float.

        Cash brought to or taken from the drawer since the last close goes
        through the point's float transfer, so sale_point's balance holds.
        """
        pool = Pool()
        Transfer = pool.get('sale.point.cash.transfer')
        User = pool.get('res.user')
        now = now or now_utc()
        cashier = cashier or User(Transaction().user)
        float_amount = Decimal(float_amount)
        if float_amount < 0:
            raise CounterError('invalid_request', gettext(
                    'scenic_counter.msg_float_negative'))
        cls.lock()
        if cls.search([
                    ('point', '=', point.id),
                    ('state', 'in', ['open', 'pending']),
                    ], limit=1):
            raise CounterError('shift_open', gettext(
                    'scenic_counter.msg_shift_already_open',
                    point=point.rec_name))
        last = cls.search([
                ('point', '=', point.id),
                ('next_session', '=', None),
                ], limit=1)
        session = cls(point=point, previous_session=last[0] if last else None,
            cashier=cashier, opened_at=naive(now),
            float_amount=float_amount)
        session.save()
        adjustment = float_amount - session.start_amount
        if adjustment:
            if not point.float_transfer_type:
                raise CounterError('invalid_request', gettext(
                        'scenic_counter.msg_float_mismatch',
                        point=point.rec_name, float=float_amount,
                        previous=session.start_amount))
            Transfer.create([{
                        'point': point.id, 'session': session.id,
                        'type': point.float_transfer_type.id,
                        'amount': adjustment, 'date': now.date(),
                        }])
        pool.get('scenic.counter.event').record(
            'open', session, amount=float_amount, now=now)
        return session

    @classmethod
    def current_shift(cls, point, user=None):
        "The open shift of the point, which must be the user's own."
        user_id = user if user is not None else Transaction().user
        user_id = getattr(user_id, 'id', user_id)
        sessions = cls.search([
                ('point', '=', point.id),
                ('state', '=', 'open'),
                ], limit=1)
        if not sessions:
            raise CounterError('no_shift', gettext(
                    'scenic_counter.msg_no_shift', point=point.rec_name))
        session, = sessions
        session.check_cashier()
        return session

    def check_cashier(self):
        "Only the shift's cashier (or a supervisor) acts on it."
        user = Transaction().user
        if self.cashier and self.cashier.id != user and not is_supervisor():
            raise ShiftAccessError(gettext(
                    'scenic_counter.msg_not_your_shift',
                    session=self.rec_name))

    @classmethod
    def get_current(cls, point):
        # sale_point opens a session silently on the first cash payment;
        # a window must be opened explicitly with its float.
        if point.scenic_kind:
            sessions = cls.search([
                    ('point', '=', point.id),
                    ('state', '=', 'open'),
                    ], limit=1)
            if not sessions:
                raise CounterError('no_shift', gettext(
                        'scenic_counter.msg_no_shift', point=point.rec_name))
            return sessions[0]
        return super().get_current(point)

    # --- closing -------------------------------------------------------

    def get_expected_amount(self):
        "Cash that should be in the drawer: start + payments + transfers."
        Transaction().cache.clear()
        fresh = self.__class__(self.id)
        return fresh.start_amount + fresh.balance

    def close_shift(self, counts, now=None):
        """Count the drawer ({denomination: quantity}) and close.

        Returns the shift; its state is `closed` when the difference is
        within the tolerance, `pending` (awaiting a supervisor) otherwise.
        """
        pool = Pool()
        Count = pool.get('scenic.counter.cash_count')
        now = now or now_utc()
        self.check_cashier()
        if self.state != 'open':
            raise CounterError('shift_not_open', gettext(
                    'scenic_counter.msg_shift_not_open',
                    session=self.rec_name))
        rows = []
        for denomination, quantity in sorted(counts.items(), reverse=True):
            denomination = Decimal(str(denomination))
            if denomination not in DENOMINATIONS or int(quantity) < 0 \
                    or int(quantity) != quantity:
                raise CounterError('invalid_request', gettext(
                        'scenic_counter.msg_bad_count',
                        denomination=denomination, quantity=quantity))
            if quantity:
                rows.append({'session': self.id,
                        'denomination': denomination,
                        'quantity': int(quantity)})
        Count.delete(Count.search([('session', '=', self.id)]))
        Count.create(rows)
        counted = sum((r['denomination'] * r['quantity'] for r in rows),
            Decimal(0))
        expected = self.get_expected_amount()
        difference = counted - expected
        self.__class__.write([self], {
                'counted_amount': counted, 'expected_amount': expected,
                'difference': difference, 'closed_at': naive(now),
                'end_amount': counted,
                })
        Transaction().cache.clear()
        session = self.__class__(self.id)
        tolerance = session.point.cash_tolerance or Decimal(0)
        Event = pool.get('scenic.counter.event')
        if abs(difference) <= tolerance:
            session._settle(now)
        else:
            self.__class__.wait_approval([session])
        Event.record('close', session, amount=difference, now=now)
        Transaction().cache.clear()
        return self.__class__(self.id)

    def _settle(self, now):
        "Book the difference as a cash transfer and close for sale_point."
        pool = Pool()
        Transfer = pool.get('sale.point.cash.transfer')
        if self.difference:
            if not self.point.difference_transfer_type:
                raise CounterError('invalid_request', gettext(
                        'scenic_counter.msg_no_difference_type',
                        point=self.point.rec_name))
            Transfer.create([{
                        'point': self.point.id, 'session': self.id,
                        'type': self.point.difference_transfer_type.id,
                        'amount': self.difference, 'date': now.date(),
                        }])
        # sale_point's close checks the balance with the new transfer.
        Transaction().cache.clear()
        self.__class__.close([self.__class__(self.id)])

    @classmethod
    @Workflow.transition('pending')
    def wait_approval(cls, sessions):
        pass

    @classmethod
    @ModelView.button
    def approve(cls, sessions, now=None):
        "A supervisor accepts the counted difference and closes."
        pool = Pool()
        User = pool.get('res.user')
        now = now or now_utc()
        if not is_supervisor():
            raise ShiftAccessError(gettext(
                    'scenic_counter.msg_supervisor_only'))
        for session in sessions:
            if session.state != 'pending':
                raise CounterError('shift_not_pending', gettext(
                        'scenic_counter.msg_shift_not_pending',
                        session=session.rec_name))
        # Transfers attach to open sessions only (sale_point's domain).
        cls.write(sessions, {'state': 'open'})
        for session in sessions:
            session = cls(session.id)
            session._settle(now)
            session.approved_by = User(Transaction().user)
            session.save()
            pool.get('scenic.counter.event').record(
                'approve', session, amount=session.difference, now=now)

    @classmethod
    def open(cls, sessions):
        # Re-opening a closed shift changes what was counted: supervisors.
        if any(s.state in ('closed', 'pending') for s in sessions) \
                and not is_supervisor():
            raise ShiftAccessError(gettext(
                    'scenic_counter.msg_supervisor_only'))
        super().open(sessions)
        for session in sessions:
            if session.cashier:
                pool = Pool()
                pool.get('scenic.counter.event').record('reopen', session)

    # --- reports -------------------------------------------------------

    def report(self, kind=None):
        """The X report (shift still open) or Z report (closed) as data:
        totals per method and per ticket type, cash, reprints."""
        pool = Pool()
        Event = pool.get('scenic.counter.event')
        kind = kind or ('X' if self.state == 'open' else 'Z')
        if kind == 'Z' and self.state == 'open':
            raise CounterError('shift_open', gettext(
                    'scenic_counter.msg_z_report_open',
                    session=self.rec_name))
        methods = defaultdict(lambda: {'count': 0, 'amount': Decimal(0),
                'refunds': Decimal(0)})
        types = defaultdict(lambda: {'quantity': 0, 'amount': Decimal(0)})
        for payment in self.shift_payments:
            entry = methods[payment.method.name]
            if payment.amount >= 0:
                entry['count'] += 1
                entry['amount'] += payment.amount
            else:
                entry['refunds'] += -payment.amount
            sign = 1 if payment.amount >= 0 else -1
            if payment.scenic_order:
                for line in payment.scenic_order.lines:
                    entry_type = types[line.ticket_type.name]
                    entry_type['quantity'] += sign * line.quantity
                    entry_type['amount'] += sign * line.amount
        events = Event.search([('session', '=', self.id)])
        expected = (self.expected_amount if self.state != 'open'
            else self.get_expected_amount())
        return {
            'kind': kind,
            'point': self.point.name,
            'cashier': self.cashier.name if self.cashier else '',
            'opened_at': self.opened_at,
            'closed_at': self.closed_at,
            'state': self.state,
            'float': self.float_amount or Decimal(0),
            'methods': dict(methods),
            'ticket_types': dict(types),
            'expected': expected,
            'counted': self.counted_amount,
            'difference': self.difference,
            'sales': sum(1 for e in events if e.kind == 'sale'),
            'refunds': sum(1 for e in events if e.kind == 'refund'),
            'reprints': sum(1 for e in events if e.kind == 'reprint'),
            'drawer_opens': sum(1 for e in events if e.kind == 'drawer'),
            }

    def report_job(self, kind=None):
        """The report as a receipt print job for the window's printer, in
        the user's language."""
        data = self.report(kind)
        money = '{:.2f}'.format

        def text(name, **kwargs):
            return gettext(f'scenic_counter.msg_report_{name}', **kwargs)
        lines = [
            f"{data['point']}  {data['cashier']}",
            text('opened', at=f"{data['opened_at']:%Y-%m-%d %H:%M}")
            if data['opened_at'] else '',
            text('float', amount=money(data['float'])),
            ]
        for name, entry in sorted(data['methods'].items()):
            lines.append(text('method', method=name, count=entry['count'],
                    amount=money(entry['amount']),
                    refunds=money(entry['refunds'])))
        for name, entry in sorted(data['ticket_types'].items()):
            lines.append(text('ticket_type', type=name,
                    quantity=entry['quantity'],
                    amount=money(entry['amount'])))
        lines.append(text('expected', amount=money(data['expected'])))
        if data['counted'] is not None and data['kind'] == 'Z':
            lines.append(text('counted', counted=money(data['counted']),
                    difference=money(data['difference'])))
        lines.append(text('counts', sales=data['sales'],
                refunds=data['refunds'], reprints=data['reprints'],
                drawer=data['drawer_opens']))
        return {'kind': 'receipt', 'title': text('title', kind=data['kind']),
            'lines': [l for l in lines if l]}


class CashCount(ModelSQL, ModelView):
    "The cash counted in a drawer, one line per denomination."
    __name__ = 'scenic.counter.cash_count'
    session = fields.Many2One(
        'sale.point.cash.session', "Shift", required=True,
        ondelete='CASCADE')
    denomination = fields.Numeric(
        "Denomination", digits=(16, 2), required=True)
    quantity = fields.Integer("Quantity", required=True)
    amount = fields.Function(
        fields.Numeric("Amount", digits=(16, 2)), 'get_amount')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__access__.add('session')
        cls._order = [('denomination', 'DESC'), ('id', 'ASC')]

    def get_amount(self, name):
        return self.denomination * self.quantity


class Payment(metaclass=PoolMeta):
    __name__ = 'sale.point.payment'
    shift = fields.Many2One(
        'sale.point.cash.session', "Shift", readonly=True,
        ondelete='RESTRICT',
        help="The shift the payment was taken in, for every method.")
    cashier = fields.Many2One(
        'res.user', "Cashier", readonly=True, ondelete='RESTRICT')
    scenic_order = fields.Many2One(
        'scenic.order', "Order", readonly=True, ondelete='RESTRICT')
    trade_number = fields.Char(
        "Trade Number", readonly=True,
        help="The provider's or terminal's number of the transaction.")
    original_payment = fields.Many2One(
        'sale.point.payment', "Original Payment", readonly=True,
        ondelete='RESTRICT', help="The payment a refund gives back.")
    tendered = Monetary(
        "Tendered", currency='currency', digits='currency', readonly=True)
    change = Monetary(
        "Change", currency='currency', digits='currency', readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        # sale_point sends every negative payment to cash; a wallet or
        # card sale is refunded to the same wallet or card.
        cls.method.domain = [
            ('company', '=', Eval('company', -1)),
            If(Eval('amount', 0) < 0,
                ['OR',
                    ('cash', '=', True),
                    ('scenic_provider', 'not in', [None, 'cash']),
                    ],
                ()),
            ]
        t = cls.__table__()
        cls._sql_indexes.update({
                Index(t, (t.shift, Index.Equality())),
                Index(t, (t.scenic_order, Index.Equality())),
                Index(t, (t.trade_number, Index.Equality())),
                })


class Event(ModelSQL, ModelView):
    "What happened at a window, by whom and when (audit)."
    __name__ = 'scenic.counter.event'
    company = fields.Many2One(
        'company.company', "Company", required=True, readonly=True)
    point = fields.Many2One(
        'sale.point', "Point", required=True, readonly=True,
        ondelete='RESTRICT')
    session = fields.Many2One(
        'sale.point.cash.session', "Shift", readonly=True,
        ondelete='RESTRICT')
    user = fields.Many2One(
        'res.user', "User", required=True, readonly=True,
        ondelete='RESTRICT')
    kind = fields.Selection(EVENT_KINDS, "Kind", required=True,
        readonly=True)
    at = fields.DateTime("At", required=True, readonly=True)
    order = fields.Many2One(
        'scenic.order', "Order", readonly=True, ondelete='RESTRICT')
    ticket = fields.Many2One(
        'scenic.ticket', "Ticket", readonly=True, ondelete='RESTRICT')
    amount = fields.Numeric("Amount", digits=(16, 2), readonly=True)
    note = fields.Char("Note", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t, (t.session, Index.Equality())))
        cls._order = [('at', 'DESC'), ('id', 'DESC')]

    @classmethod
    def record(cls, kind, session=None, point=None, order=None,
            ticket=None, amount=None, note=None, now=None):
        point = point or session.point
        event, = cls.create([{
                    'company': point.company.id, 'point': point.id,
                    'session': session.id if session else None,
                    'user': Transaction().user, 'kind': kind,
                    'at': naive(now or now_utc()),
                    'order': getattr(order, 'id', order),
                    'ticket': getattr(ticket, 'id', ticket),
                    'amount': amount, 'note': note,
                    }])
        return event


class Ticket(metaclass=PoolMeta):
    __name__ = 'scenic.ticket'
    print_count = fields.Integer(
        "Prints", readonly=True,
        help="How many times the ticket was printed (first print and "
        "reprints).")


class TicketType(metaclass=PoolMeta):
    __name__ = 'scenic.ticket.type'

    @classmethod
    @without_check_access
    def _create_product(cls, values):
        product = super()._create_product(values)
        # sale_point sells only salable products.
        template = product.template
        template.salable = True
        template.sale_uom = template.default_uom
        template.save()
        return product
