"""What a ticket window does: sell, refund, pick up, print.

A counter sale books through scenic_ticket's reservation path (the same
claims as an online booking: slot capacity, daily maxima, per-ID limits)
and pays through its payment step (the same signing), then records the
sale for the books as a sale_point sale with one line per ticket type and
a payment carrying shift, cashier, method and trade number.
"""
import datetime as dt
import hmac
import json
import secrets
import threading
from decimal import Decimal

from scenic_ticket import dbtools, reservation
from scenic_ticket.errors import BookingError
from scenic_ticket.providers import (
    PROVIDERS, PaymentProvider, SimulatedProvider, allowed, register)
from scenic_ticket.reservation import BookingRequest, Item, Visitor

from scenic_common import idnumber

from trytond.i18n import gettext
from trytond.pool import Pool
from trytond.transaction import Transaction

from .counter import is_supervisor, naive, now_utc
from .exceptions import CounterError, ShiftAccessError
from .intent import INTENT_KEY, RecordedProvider

_window = threading.local()


class CollectedAtWindow(PaymentProvider):
    """Money the window has already taken: cash into the drawer, a card on
    the bank's terminal. The payment step records the reference the window
    gives (receipt or terminal trade number); nothing is called."""

    def __init__(self, name):
        self.name = name

    def charge(self, order_reference, amount, currency):
        reference = getattr(_window, 'reference', None)
        if not reference:
            raise BookingError('payment_failed',
                f"{self.name} is collected at a window only.")
        return reference

    def refund(self, payment_reference, amount, currency):
        return getattr(_window, 'refund_reference', None) or (
            f'{self.name.upper()}-REFUND-{secrets.token_hex(6)}')


for _name in ('cash', 'unionpay'):
    if _name not in PROVIDERS:
        register(CollectedAtWindow(_name))


class SimulatedWallet(SimulatedProvider):
    """The demo's wallet (scenic_ticket's simulated provider, which still
    approves a charge at once) with a QR on screen: the code URL opens the
    simulated pay page (notify.py), whose notification carries the QR's
    random token; it is genuine only if it matches the token recorded
    with the QR (the intent), as a real wallet's signature must verify."""
    pay_page = '/{database}/scenic/kiosk/simpay/{token}'

    def charge(self, order_reference, amount, currency):
        # no Tryton transaction when the booking engine pays (notifications
        # are applied on Tryton's route)
        context = Transaction().context or {}
        notified = context.get('scenic_notified') or {}
        if order_reference in notified:
            return notified[order_reference]
        return super().charge(order_reference, amount, currency)

    def close_order(self, order_reference):
        "Nothing to call: closing is the QR's intent moving to closed."

    def refund(self, payment_reference, amount, currency):
        # one refund number per trade (what query_refund finds again)
        return f'SIM-REFUND-{payment_reference}'

    def query_refund(self, payment_reference):
        return f'SIM-REFUND-{payment_reference}'

    def native_qr(self, order_reference, amount, currency):
        return self.pay_page.format(database=Pool().database_name,
            token=secrets.token_urlsafe(16))

    def parse_notification(self, headers, body, now=None):
        from .wallets import ForgedNotification
        Intent = Pool().get('scenic.counter.provider_intent')
        try:
            data = json.loads(body)
            reference, token = data['out_trade_no'], data['token']
        except (ValueError, TypeError, KeyError):
            raise ForgedNotification("Not a simulated wallet notification.")
        if not isinstance(reference, str) or not isinstance(token, str):
            raise ForgedNotification("Not a simulated wallet notification.")
        intents = Intent.search([('provider', '=', self.name),
                ('operation', '=', 'native'), ('reference', '=', reference)])
        if not intents or not hmac.compare_digest(
                intents[0].result.rsplit('/', 1)[-1], token):
            raise ForgedNotification("The QR token does not match.")
        return {'out_trade_no': reference, 'trade': f'SIM-QR-{token[:16]}',
            'amount': intents[0].amount, 'paid': True}


register(SimulatedWallet())


def native_qr(order, provider_name):
    """The code URL to show as a QR for the visitor to pay `order` with
    `provider_name` (a wallet's native pay / precreate): made once per
    order and recorded as an intent (the same QR again when asked again);
    the payment arrives by the provider's notification."""
    Intent = Pool().get('scenic.counter.provider_intent')
    provider = PROVIDERS.get(provider_name)
    inner = getattr(provider, 'inner', provider)
    channel = order.channel.code if order.channel else None
    if not hasattr(inner, 'native_qr') \
            or provider_name not in allowed(channel):
        raise CounterError('invalid_request', gettext(
                'scenic_counter.msg_no_qr_provider', provider=provider_name))
    if order.state != 'reserved':
        raise CounterError('invalid_request', gettext(
                'scenic_counter.msg_order_not_payable',
                order=order.reference))
    found = Intent.search([('provider', '=', provider_name),
            ('operation', '=', 'native'),
            ('reference', '=', order.reference)])
    if found:
        return found[0].result
    code_url = inner.native_qr(order.reference, order.total,
        order.currency.code)
    Intent.create([{'key': f'native-{order.reference}',
                'provider': provider_name, 'operation': 'native',
                'reference': order.reference, 'amount': order.total,
                'state': 'pending', 'result': code_url}])
    return code_url


def _read_key(value):
    "A PEM given inline or as the path of a file."
    if value and '-----BEGIN' not in value:
        with open(value, 'rb') as file:
            return file.read()
    return value


def register_wallets(transport=None):
    """Register the WeChat Pay / Alipay adapters configured in
    [scenic_wechatpay] / [scenic_alipay] (keys inline or as file paths),
    each behind RecordedProvider; returns the names registered."""
    from trytond import config

    from .wallets import Alipay, WeChatPay
    built = []
    sections = [
        ('scenic_wechatpay', WeChatPay, ('mchid', 'appid', 'serial_no',
                'private_key', 'platform_public_key', 'apiv3_key'),
            ('private_key', 'platform_public_key')),
        ('scenic_alipay', Alipay, ('app_id', 'private_key',
                'alipay_public_key'),
            ('private_key', 'alipay_public_key')),
        ]
    for section, cls, required, keys in sections:
        if not config.has_section(section):
            continue
        values = {k: config.get(section, k, default=None) for k in required}
        missing = [k for k, v in values.items() if not v]
        if missing:
            raise ValueError(
                f"[{section}] lacks {', '.join(missing)}.")
        for k in keys:
            values[k] = _read_key(values[k])
        built.append(cls(notify_url=config.get(section, 'notify_url',
                    default=None), transport=transport, **values))
    # Registered only once every configured one is complete.
    for provider in built:
        register(RecordedProvider(provider))
    return [p.name for p in built]


register_wallets()


def apply_notification(provider_name, headers, body, now=None):
    """A wallet's asynchronous payment notification (native QR): verified
    by the provider's signature (a forged one raises and pays nothing),
    then the order it names is paid once whatever the number of
    deliveries (idempotent by the provider's trade number). Returns the
    order paid now, or None when there was nothing (more) to pay."""
    pool = Pool()
    Order = pool.get('scenic.order')
    Payment = pool.get('scenic.payment')
    provider = PROVIDERS.get(provider_name)
    inner = getattr(provider, 'inner', provider)
    if not hasattr(inner, 'parse_notification'):
        raise CounterError('invalid_request',
            f"{provider_name!r} sends no payment notifications.")
    info = inner.parse_notification(headers, body)
    if not info['paid'] or not info['trade']:
        return None
    if Payment.search([('provider', '=', provider_name),
                ('kind', '=', 'payment'),
                ('provider_reference', '=', info['trade'])]):
        return None     # delivered again: already paid
    orders = Order.search([('reference', '=', info['out_trade_no'])])
    if not orders:
        raise CounterError('invalid_request',
            f"No order {info['out_trade_no']!r} for this notification.")
    order, = orders
    if info['amount'] != order.total:
        raise CounterError('amount_mismatch',
            f"Notified {info['amount']}, the order is {order.total}.")
    if _late(order, now):
        _refund_late(provider, order, info, now)
        return None
    # A notification comes with no user: the order's area is the company
    # (the payment's postings need it).
    with Transaction().set_context({
                'company': order.company.id,
                'companies': [order.company.id],
                'scenic_notified': {order.reference: info['trade']},
                INTENT_KEY: f"notify-{info['trade']}"}):
        before = len([p for p in order.payments if p.kind == 'payment'])
        order = reservation.pay(order.id, provider_name, order.total,
            now=now)
    after = len([p for p in order.payments if p.kind == 'payment'])
    Intent = pool.get('scenic.counter.provider_intent')
    qr = Intent.search([('provider', '=', provider_name),
            ('operation', '=', 'native'),
            ('reference', '=', order.reference),
            ('state', '=', 'pending')])
    if qr:
        Intent.paid(qr)
    return order if after > before else None


def _late(order, now=None):
    """True when the order can no longer take this payment: expired or
    cancelled, its hold over, or already paid (by another trade)."""
    Order = Pool().get('scenic.order')
    now = now or now_utc()
    return (not Order.may_enter(order.state, 'paid')
        or order.hold_expires_at.replace(tzinfo=dt.timezone.utc) <= now)


def _refund_late(provider, order, info, now=None):
    """A genuine payment for an order no longer payable: refunded at once
    on its trade number, recorded as a refund intent (key
    ``late-<trade>``, reference the trade, result the refund number) so
    that a second delivery or a retried transaction refunds once; the
    order's QR moves to refunded. The money is recorded too, as the
    wallet's settlement file shows it: the late trade as a payment of the
    order and its refund (``refund_of`` the payment, so that
    reservation.cancel never gives it back again). The order's state
    stays as it is."""
    pool = Pool()
    Intent = pool.get('scenic.counter.provider_intent')
    Payment = pool.get('scenic.payment')
    now = now or now_utc()
    recorded = provider if isinstance(provider, RecordedProvider) \
        else RecordedProvider(provider)
    with Transaction().set_context({INTENT_KEY: f"late-{info['trade']}"}):
        refund_number = recorded.refund(info['trade'], info['amount'],
            order.currency.code)
    table = Payment.__table__()
    row = {'company': order.company.id, 'order': order.id,
        'provider': provider.name, 'amount': info['amount'],
        'currency': order.currency.id, 'date': naive(now)}
    payment_id, = dbtools.insert(table, [dict(row, kind='payment',
                provider_reference=info['trade'], refund_of=None)])
    dbtools.insert(table, [dict(row, kind='refund',
                provider_reference=refund_number, refund_of=payment_id)])
    dbtools.forget('scenic.payment', 'scenic.order')
    qr = Intent.search([('provider', '=', provider.name),
            ('operation', '=', 'native'),
            ('reference', '=', order.reference),
            ('state', 'in', Intent.sources('refunded'))])
    if qr:
        Intent.refunded(qr)


def _collected(reference):
    class _Context:
        def __enter__(self):
            _window.reference = reference

        def __exit__(self, *exc):
            _window.reference = None
    return _Context()


def _point_channel(point):
    if not point.scenic_channel:
        raise CounterError('invalid_request', gettext(
                'scenic_counter.msg_point_no_channel', point=point.rec_name))
    return point.scenic_channel


def _request(slot_id, items, contact_phone=''):
    "items: [{'ticket_type': code, 'visitors': [{name, id_number}]} | persons]"
    parsed = []
    first_name = ''
    for i, item in enumerate(items):
        visitors = []
        for j, visitor in enumerate(item.get('visitors') or []):
            visitors.append(Visitor(
                    name=(visitor.get('name') or '').strip(),
                    id_type=visitor.get('id_type') or idnumber.RESIDENT_ID,
                    id_number=visitor.get('id_number') or '',
                    field=f'items[{i}].visitors[{j}]'))
            first_name = first_name or visitors[-1].name
        parsed.append(Item(ticket_type=item['ticket_type'],
                visitors=visitors, persons=item.get('persons'),
                field=f'items[{i}]'))
    return BookingRequest(slot=slot_id, items=parsed,
        contact_name=first_name or 'Window', contact_phone=contact_phone)


def sell(session, slot_id, items, method, tendered=None, trade_number=None,
        idempotency_key=None, now=None, payment_code=None):
    """Sell tickets at the window of the shift; return the sale's summary.

    ``method`` is a sale.point.payment.method. Cash needs ``tendered`` (at
    least the total: the change is returned); a card terminal needs its
    ``trade_number``; a wallet the visitor's ``payment_code`` (scanned).
    ``idempotency_key`` (one per sale on the counter page) makes a double
    Enter sell once.
    """
    pool = Pool()
    Order = pool.get('scenic.order')
    Payment = pool.get('sale.point.payment')
    Event = pool.get('scenic.counter.event')
    now = now or now_utc()
    session.check_cashier()
    if session.state != 'open':
        raise CounterError('shift_not_open', gettext(
                'scenic_counter.msg_shift_not_open', session=session.rec_name))
    point = session.point
    channel = _point_channel(point)
    provider = method.scenic_provider
    recorded = isinstance(PROVIDERS.get(provider), RecordedProvider)
    if provider not in ('cash', 'unionpay', 'simulated') and not recorded:
        raise CounterError('invalid_request', gettext(
                'scenic_counter.msg_method_not_at_window',
                method=method.rec_name))
    key = idempotency_key or f'window-{secrets.token_hex(12)}'
    order_id, replay = reservation.book(
        channel, _request(slot_id, items), key, now=now)
    if replay:
        payments = Payment.search([('scenic_order', '=', order_id)])
        if payments:
            return dict(summary(payments[0]), replay=True)
    order = Order(order_id)
    total = order.total
    change = None
    if provider == 'cash':
        tendered = Decimal(str(tendered if tendered is not None else total))
        if tendered < total:
            raise CounterError('amount_short', gettext(
                    'scenic_counter.msg_tendered_short', total=total,
                    tendered=tendered))
        change = tendered - total
        reference = f'CASH-{order.reference}'
    elif provider == 'unionpay':
        if not trade_number:
            raise CounterError('invalid_request', gettext(
                    'scenic_counter.msg_trade_number_required',
                    method=method.rec_name))
        reference = trade_number
    if recorded:
        # A wallet: the call is recorded first under the sale's key, so a
        # retried transaction never charges twice (intent.py).
        with Transaction().set_context({INTENT_KEY: key,
                    'scenic_payment_code': payment_code}):
            order = reservation.pay(order_id, provider, total, now=now)
    elif provider == 'simulated':
        order = reservation.pay(order_id, 'simulated', total, now=now)
    else:
        with _collected(reference):
            order = reservation.pay(order_id, provider, total, now=now)
    scenic_payment = [p for p in order.payments if p.kind == 'payment'][-1]
    payment = _record_sale(session, order, method, total,
        scenic_payment.provider_reference, tendered, change)
    Event.record('sale', session, order=order, amount=total, now=now)
    return summary(payment)


def _record_sale(session, order, method, total, trade_number,
        tendered=None, change=None, sign=1, original=None):
    "The sale_point sale (lines per ticket type) and its payment."
    pool = Pool()
    Sale = pool.get('sale.point.sale')
    User = pool.get('res.user')
    lines = []
    for line in order.lines:
        lines.append({
                'product': line.ticket_type.product.id,
                'quantity': sign * line.quantity,
                'unit_list_price': line.unit_price,
                'unit_gross_price': line.unit_price,
                })
    sale, = Sale.create([{
                'company': order.company.id, 'point': session.point.id,
                'date': session.point.company and _today(order.company),
                'lines': [('create', lines)],
                'payments': [('create', [{
                                'method': method.id,
                                'amount': sign * total,
                                'shift': session.id,
                                'cashier': User(Transaction().user).id,
                                'scenic_order': order.id,
                                'trade_number': trade_number,
                                'tendered': tendered, 'change': change,
                                'original_payment': (
                                    original.id if original else None),
                                }])],
                }])
    Sale.do([sale])
    return Sale(sale.id).payments[0]


def _today(company):
    from zoneinfo import ZoneInfo
    return dt.datetime.now(ZoneInfo(company.timezone or 'UTC')).date()


def summary(payment):
    order = payment.scenic_order
    return {
        'order': order.reference, 'order_id': order.id,
        'receipt': payment.sale.number, 'total': order.total,
        'method': payment.method.scenic_provider,
        'tendered': payment.tendered, 'change': payment.change,
        'trade_number': payment.trade_number,
        'tickets': [t.id for t in order.tickets],
        'replay': False,
        }


def refund(session, order, now=None, approved=False):
    """Refund a paid order at the window by its original method.

    The ticket type's refund rule and the used-ticket rule are
    scenic_ticket's (reservation.cancel); the amount given back is what
    was paid, to the same method with the original trade number.
    ``approved``: a supervisor refunds outside the ticket type's refund
    period, or an order whose tickets were used (finance reverses the
    revenue they earned); a cashier alone is refused both.
    """
    pool = Pool()
    Payment = pool.get('sale.point.payment')
    Event = pool.get('scenic.counter.event')
    now = now or now_utc()
    session.check_cashier()
    if approved and not is_supervisor():
        raise ShiftAccessError(gettext(
                'scenic_counter.msg_supervisor_only'))
    if session.state != 'open':
        raise CounterError('shift_not_open', gettext(
                'scenic_counter.msg_shift_not_open', session=session.rec_name))
    originals = Payment.search([
            ('scenic_order', '=', order.id),
            ('amount', '>', 0),
            ])
    before = {p.id for p in order.payments if p.kind == 'refund'}
    used = any(t.state == 'used' for t in order.tickets)
    order = reservation.cancel(order.id, now=now, by_back_office=approved,
        used_approved=approved)
    # this cancel's refunds (a late wallet trade's was given back before)
    refunds = [p for p in order.payments
        if p.kind == 'refund' and p.id not in before]
    results = []
    if originals:
        original = originals[0]
        paid = sum(p.amount for p in originals)
        refunded = sum(p.amount for p in refunds)
        if refunded > paid:  # reservation.cancel gives back what was paid
            raise CounterError('invalid_request', 'refund above payment')
        # Card and wallet refunds go back by the sale's method; a provider
        # refund carries the original trade number in the provider's
        # reference, kept beside the original payment.
        results.append(_record_sale(session, order, original.method,
                refunded, original.trade_number, sign=-1, original=original))
    else:
        # An online order refunded at the window: the provider's refund
        # went back to the visitor's wallet; nothing passes the drawer.
        pass
    Event.record('refund', session, order=order,
        amount=sum(p.amount for p in refunds), now=now,
        note=(gettext('scenic_counter.msg_refund_used_approved') if used
            else gettext('scenic_counter.msg_refund_approved'))
        if approved else None)
    return order, results


def ticket_jobs(order, receipt=None):
    "Print jobs for an order's valid tickets (masked holders only)."
    company = order.company
    jobs = []
    for ticket in sorted(order.tickets, key=lambda t: t.id):
        if ticket.state != 'valid' or not ticket.code:
            continue
        slot = ticket.slot
        when = (f'{ticket.visit_date:%Y-%m-%d} '
            f'{slot.start_time:%H:%M}-{slot.end_time:%H:%M}' if slot
            else f'{ticket.visit_date:%Y-%m-%d}')
        line = ticket.line
        lines = [
            ticket.ticket_type.name,
            when,
            ]
        if ticket.holder_masked:
            lines.append(ticket.holder_masked)
        if line:
            lines.append(f'¥{line.unit_price:.2f}')
        lines.append(f'#{ticket.id} {order.reference[:8]}'
            + (f' / {receipt}' if receipt else ''))
        jobs.append({'kind': 'ticket', 'title': company.party.name,
                'lines': lines, 'code': ticket.code, 'ticket': ticket.id,
                'holder': ticket.holder_masked})
    return jobs


def print_order(session_or_point, order, receipt=None, reprint=False,
        now=None):
    """Jobs for the order's tickets, counting prints on each ticket."""
    pool = Pool()
    Ticket = pool.get('scenic.ticket')
    Event = pool.get('scenic.counter.event')
    Session = pool.get('sale.point.cash.session')
    session = (session_or_point
        if isinstance(session_or_point, Session) else None)
    point = session.point if session else session_or_point
    jobs = ticket_jobs(order, receipt)
    tickets = Ticket.browse([j['ticket'] for j in jobs])
    for ticket in tickets:
        count = (ticket.print_count or 0) + 1
        Ticket.write([ticket], {'print_count': count})
        if reprint:
            Event.record('reprint', session, point=point, order=order,
                ticket=ticket, now=now)
    if not reprint and jobs:
        Event.record('print', session, point=point, order=order, now=now)
    return jobs


def simulated_print(jobs):
    """The demo's window printer: with `[scenic] window_print_dir` set,
    render the jobs with the IoT box's printer driver as PNG files there
    (what a counter PC's box does with a real printer). Returns how many
    were printed, 0 when no simulated printer is configured."""
    from trytond.config import config
    directory = config.get('scenic', 'window_print_dir', default=None)
    if not directory or not jobs:
        return 0
    from scenic_iotbox.drivers import create
    printer = create('printer', 'memory', {'png_dir': directory})
    for job in jobs:
        printer.print_job(job)
    return len(jobs)


def open_drawer(session, note=None, now=None):
    "The cashier opens the drawer without a sale: attributed and counted."
    session.check_cashier()
    Pool().get('scenic.counter.event').record(
        'drawer', session, note=note, now=now)


def find_by_id(company, id_number, date=None):
    """Paid orders with a ticket for this ID number (kiosk pickup by card:
    the card on the reader is the proof)."""
    from scenic_ticket.visitor import id_hashes
    Order = Pool().get('scenic.order')
    hashes = id_hashes(id_number)
    if not hashes:
        return []
    domain = [
        ('company', '=', company),
        ('tickets.holder_hash', 'in', hashes),
        ('state', 'in', ['paid', 'partly_used']),
        ]
    if date:
        domain.append(('visit_date', '=', date))
    return Order.search(domain)
