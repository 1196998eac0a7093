"""The box office (scenic_counter) through the daily posting.

Counter sales and refunds are `scenic.payment` rows like any other and
post with the day's receipts and refunds; sale_point's own posting (one
move per sale, the sessions' transfers) is not used. What the counter adds:

- **Cash short or over** (a shift's counted minus expected cash): when the
  shift is counted, Dr/Cr 1001 against 1901 待处理财产损溢, one line per
  shift naming the window and the cashier; once the difference is approved
  (within the window's tolerance at the close, or by a supervisor) 1901 is
  cleared to 5711 营业外支出 (short) or 5301 营业外收入 (over). Each step posts
  with the day it happened in, or, when that day was posted already, with
  the next day posted (a late item, counted on the batch).
- **The cashier** of a counter payment in the settlement is the shift's
  cashier (`sale.point.cash.session.cashier`), not whoever created the row.
"""
from decimal import Decimal

from sql import Null
from sql.aggregate import Max, Min
from sql.conditionals import Coalesce

from trytond.i18n import gettext
from trytond.model import Index, fields
from trytond.pool import Pool, PoolMeta

from .exceptions import PostingError
from .posting import _Lines, _dt, _local_date, _money


class CashSession(metaclass=PoolMeta):
    __name__ = 'sale.point.cash.session'
    finance_counted_batch = fields.Many2One(
        'scenic.finance.batch', "Counted Batch", readonly=True,
        ondelete='RESTRICT',
        help="The posting that took the cash difference into 1901.")
    finance_cleared_batch = fields.Many2One(
        'scenic.finance.batch', "Cleared Batch", readonly=True,
        ondelete='RESTRICT',
        help="The posting that cleared the approved difference from 1901.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.update({
                Index(t, (t.closed_at, Index.Range()),
                    where=t.finance_counted_batch == Null),
                Index(t, (t.closed_at, Index.Range()),
                    where=t.finance_cleared_batch == Null),
                })


class Batch(metaclass=PoolMeta):
    __name__ = 'scenic.finance.batch'
    counted_sessions = fields.One2Many(
        'sale.point.cash.session', 'finance_counted_batch',
        "Shifts Counted", readonly=True)
    cleared_sessions = fields.One2Many(
        'sale.point.cash.session', 'finance_cleared_batch',
        "Shifts Cleared", readonly=True)

    @classmethod
    def post_extra(cls, poster):
        super().post_extra(poster)
        _CashDifferences(poster).post()


class Day(metaclass=PoolMeta):
    __name__ = 'scenic.finance.day'

    @classmethod
    def _payment_cashier(cls, from_, payment, batch):
        """The shift's cashier of counter payments (sale_point payments of
        the batch's orders: sales are positive, refunds negative)."""
        from_, _ = super()._payment_cashier(from_, payment, batch)
        pool = Pool()
        point_payment = pool.get('sale.point.payment').__table__()
        session = pool.get('sale.point.cash.session').__table__()
        other = pool.get('scenic.payment').__table__()
        sign = (point_payment.amount > 0 if batch.kind == 'receipts'
            else point_payment.amount < 0)
        shifts = point_payment.join(session,
            condition=point_payment.shift == session.id).select(
                point_payment.scenic_order.as_('order'),
                Max(session.cashier).as_('cashier'),
                where=sign & point_payment.scenic_order.in_(
                    other.select(other.order,
                        where=batch.payments_where(other))),
                group_by=[point_payment.scenic_order])
        from_ = from_.join(shifts, type_='LEFT',
            condition=shifts.order == payment.order)
        return from_, Coalesce(shifts.cashier, payment.create_uid)

    def compute_lines(self, sold=None):
        super().compute_lines(sold=sold)
        amount = Decimal(0)
        for batch in self.batches:
            if batch.kind == 'cash':
                amount += sum((s.difference or 0
                        for s in batch.counted_sessions), Decimal(0))
        self.__class__.write([self], {'cash_difference': amount})


class _CashDifferences:
    "The cash differences of the area's shifts for one posting day."

    def __init__(self, poster):
        pool = Pool()
        self.poster = poster
        self.session = pool.get('sale.point.cash.session').__table__()
        self.point = pool.get('sale.point').__table__()
        self.event = pool.get('scenic.counter.event').__table__()

    def _rows(self, where, time):
        session, point = self.session, self.point
        cursor = self.poster.cursor
        cursor.execute(*session.join(point,
                condition=session.point == point.id).select(
                session.id, session.difference, time, point.name,
                session.cashier,
                where=(point.company == self.poster.company.id)
                & (session.difference != Null) & (session.difference != 0)
                & where,
                order_by=[session.id]))
        return cursor.fetchall()

    def post(self):
        poster = self.poster
        session, event = self.session, self.event
        counted = self._rows((session.finance_counted_batch == Null)
            & (session.closed_at < poster.end), session.closed_at)
        # Approved: closed within tolerance (at the close) or by a
        # supervisor (the approval event); re-opened shifts wait.
        approved_at = event.select(Min(event.at),
            where=(event.session == session.id) & (event.kind == 'approve'))
        time = Coalesce(approved_at, session.closed_at)
        # (An approval is never before the close: a shift cleared here
        # was counted here or before.)
        cleared = self._rows((session.finance_cleared_batch == Null)
            & (session.state == 'closed') & (time < poster.end), time)
        if not counted and not cleared:
            return
        rule = poster.rule
        accounts = [rule.cash_pending_account, rule.cash_loss_account,
            rule.cash_gain_account]
        if not all(accounts):
            raise PostingError(gettext(
                    'scenic_finance.msg_rule_cash_accounts_missing',
                    company=poster.company.rec_name))
        pending, loss, gain = accounts
        cash = rule.method_account('cash')
        users = {}
        lines = _Lines()
        late = 0
        for id_, difference, at, point_name, cashier in counted:
            difference = _money(difference)
            is_late = _dt(at) < poster.start
            late += is_late
            description = self._describe(
                'msg_cash_counted', id_, point_name, cashier, users, at,
                is_late)
            # Over: more cash than expected (Dr 1001 / Cr 1901).
            lines.add(cash, difference, description=description)
            lines.add(pending, -difference, description=description)
        for id_, difference, at, point_name, cashier in cleared:
            difference = _money(difference)
            is_late = _dt(at) < poster.start
            late += is_late
            description = self._describe(
                'msg_cash_cleared', id_, point_name, cashier, users, at,
                is_late)
            lines.add(pending, difference, description=description)
            lines.add(gain if difference > 0 else loss, -difference,
                description=description)
        batch = poster.batch('cash')
        cursor = poster.cursor
        for ids, column in [([r[0] for r in counted],
                    session.finance_counted_batch),
                ([r[0] for r in cleared], session.finance_cleared_batch)]:
            if ids:
                cursor.execute(*session.update([column], [batch.id],
                        where=session.id.in_(ids)))
        poster.make_move(batch, lines, late)

    def _describe(self, message, id_, point_name, cashier, users, at,
            is_late):
        User = Pool().get('res.user')
        if cashier and cashier not in users:
            users[cashier] = User(cashier).rec_name
        text = gettext(f'scenic_finance.{message}', window=point_name,
            cashier=users.get(cashier, ''), session=id_)
        if is_late:
            text += ' ' + gettext('scenic_finance.msg_cash_late',
                date=_local_date(self.poster.company, at))
        return text
