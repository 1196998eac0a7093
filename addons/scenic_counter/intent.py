"""A provider call is made once, whatever the database does after it.

The sale's transaction may be retried (a serialization failure, a lock
not available: txn.run starts it again), and a retried transaction would
charge the visitor's wallet again. So before a wallet provider is called
the intent is written and committed in a transaction of its own, keyed by
the sale's idempotency key; the answer is committed the same way. A retry
finds the intent: with its answer it reuses it; without one (the process
died during the call) it asks the provider what became of it (query)
instead of charging again.

A QR on screen (operation 'native') whose order expires or is cancelled
unpaid is closed at the wallet: the order's state hook records a 'close'
intent in the same transaction as the order's move (so it is never lost),
and the cron `close_wallet_orders` makes the call and moves the QR
pending -> closed. A wallet payment that arrives for an order no longer
payable is refunded at once (window.apply_notification) and its QR moves
to refunded.
"""
import logging

from trytond.model import Index, ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction

from scenic_ticket.errors import ApiError
from scenic_ticket.providers import PROVIDERS, PaymentDeclined, PaymentProvider
from scenic_ticket.workflow import StateMachine, transition

from .wallets import ProviderError

INTENT_KEY = 'scenic_payment_intent'    # context: the sale's key
logger = logging.getLogger(__name__)


class ProviderIntent(StateMachine, ModelSQL, ModelView):
    """A call to a payment provider, recorded before it is made.

    A charge or refund goes pending -> done when the answer is back. A
    QR shown on screen (native pay, operation 'native') stays pending with
    the code URL as result until the provider's verified notification
    moves it to paid (window.apply_notification)."""
    __name__ = 'scenic.counter.provider_intent'
    key = fields.Char("Key", required=True, readonly=True)
    provider = fields.Char("Provider", required=True, readonly=True)
    operation = fields.Selection([
            ('charge', "Charge"),
            ('refund', "Refund"),
            ('native', "QR on Screen"),
            ('close', "Close QR Order"),
            ], "Operation", required=True, readonly=True)
    reference = fields.Char("Reference", readonly=True,
        help="The order reference or the original trade number.")
    amount = fields.Numeric("Amount", digits=(16, 2), readonly=True)
    state = fields.Selection([
            ('pending', "Pending"),
            ('done', "Done"),
            ('paid', "Paid"),
            ('closed', "Closed"),
            ('refunded', "Refunded"),
            ], "State", required=True, readonly=True)
    result = fields.Char("Result", readonly=True,
        help="The provider's trade or refund number; for a QR on screen "
        "the code URL shown.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('key_unique', Unique(t, t.provider, t.operation, t.key),
                'scenic_counter.msg_intent_unique'),
            ]
        cls._sql_indexes.add(Index(t, (t.key, Index.Equality())))
        # the QR of an order (notifications, the order's state hook)
        cls._sql_indexes.add(Index(t, (t.reference, Index.Equality()),
                (t.operation, Index.Equality())))
        cls._transitions |= {
            ('pending', 'done'),
            ('pending', 'paid'),
            # a QR whose order expired or was cancelled unpaid
            ('pending', 'closed'),
            # a QR paid after its order was no longer payable: refunded
            ('pending', 'refunded'),
            ('closed', 'refunded'),
            }

    @staticmethod
    def default_state():
        return 'pending'

    @classmethod
    @transition('paid')
    def paid(cls, intents):
        "The visitor paid the QR: the provider's notification verified."

    @classmethod
    @transition('closed')
    def closed(cls, intents):
        "The QR's order at the wallet is closed: it can no longer be paid."

    @classmethod
    @transition('refunded')
    def refunded(cls, intents):
        "The QR was paid too late: the payment went back (refund intent)."

    @classmethod
    def record_closes(cls, references):
        """Record a 'close' intent for each pending QR of these orders
        (the caller's transaction: the order's state change)."""
        if not references:
            return
        natives = cls.search([('operation', '=', 'native'),
                ('state', '=', 'pending'),
                ('reference', 'in', list(references))])
        keys = {(n.provider, f'close-{n.reference}') for n in natives}
        existing = {(i.provider, i.key) for i in cls.search([
                    ('operation', '=', 'close'),
                    ('key', 'in', [k for _, k in keys])])} if keys else set()
        cls.create([{'key': key, 'provider': provider,
                    'operation': 'close', 'reference': key[len('close-'):],
                    'state': 'pending'}
                for provider, key in sorted(keys - existing)])

    @classmethod
    def close_wallet_orders(cls, limit=200):
        """Cron: close at the wallet the QR orders recorded to close.

        A close is harmless when repeated (the wallets answer a closed
        order as closed), so a crash between the call and the commit only
        makes the next run ask again. A QR no longer pending (paid or
        refunded meanwhile) is not closed. Returns the QRs closed."""
        closes = cls.search([('operation', '=', 'close'),
                ('state', '=', 'pending')], order=[('id', 'ASC')],
            limit=limit)
        closed = []
        for close in closes:
            natives = cls.search([('provider', '=', close.provider),
                    ('operation', '=', 'native'),
                    ('reference', '=', close.reference),
                    ('state', '=', 'pending')])
            if natives:
                provider = PROVIDERS.get(close.provider)
                inner = getattr(provider, 'inner', provider)
                try:
                    if hasattr(inner, 'close_order'):
                        inner.close_order(close.reference)
                except (PaymentDeclined, ProviderError, OSError,
                        ValueError) as error:
                    # paid just now, or the wallet is away: the next run
                    # asks again (a late payment is refunded on notice)
                    logger.warning("closing %s QR order %s failed: %s",
                        close.provider, close.reference,
                        type(error).__name__)
                    continue
                cls.closed(natives)
                closed.extend(natives)
            cls.write([close], {'state': 'done'})
        return closed


class Order(metaclass=PoolMeta):
    __name__ = 'scenic.order'

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._state_hooks = cls._state_hooks | {'expired', 'cancelled'}

    @classmethod
    def on_state_change(cls, to_state, ids):
        super().on_state_change(to_state, ids)
        if to_state in ('expired', 'cancelled'):
            Intent = Pool().get('scenic.counter.provider_intent')
            Intent.record_closes([o.reference for o in cls.browse(ids)])


def _in_own_transaction(func):
    transaction = Transaction()
    with transaction.new_transaction() as own:
        result = func()
        own.commit()
    return result


class RecordedProvider(PaymentProvider):
    """Wraps a provider that calls out (a wallet): each charge or refund
    is recorded first. The inner provider has charge, refund and
    query(reference) -> trade number or None."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name

    def _once(self, operation, reference, amount, call, recover):
        key = Transaction().context.get(INTENT_KEY) or reference

        def begin():
            Intent = Pool().get('scenic.counter.provider_intent')
            found = Intent.search([('provider', '=', self.name),
                    ('operation', '=', operation), ('key', '=', key)])
            if found:
                return found[0].state, found[0].result, found[0].reference
            Intent.create([{'key': key, 'provider': self.name,
                        'operation': operation, 'reference': reference,
                        'amount': amount, 'state': 'pending'}])
            return None, None, reference
        state, result, first_reference = _in_own_transaction(begin)
        if state == 'done':
            return result
        if state == 'pending':
            # An earlier attempt called and never heard back: ask about
            # what that attempt sent.
            result = recover(first_reference)
            if not result:
                raise ApiError('payment_failed',
                    "The provider has no record of this payment: start "
                    "the sale again.")
        else:
            result = call()

        def finish():
            Intent = Pool().get('scenic.counter.provider_intent')
            intent, = Intent.search([('provider', '=', self.name),
                    ('operation', '=', operation), ('key', '=', key)])
            Intent.write([intent], {'state': 'done', 'result': result})
        _in_own_transaction(finish)
        return result

    def charge(self, order_reference, amount, currency):
        return self._once('charge', order_reference, amount,
            lambda: self.inner.charge(order_reference, amount, currency),
            self.inner.query)

    def refund(self, payment_reference, amount, currency):
        return self._once('refund', payment_reference, amount,
            lambda: self.inner.refund(payment_reference, amount, currency),
            self.inner.query_refund)
