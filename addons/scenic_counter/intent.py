"""A provider call is made once, whatever the database does after it.

The sale's transaction may be retried (a serialization failure, a lock
not available: txn.run starts it again), and a retried transaction would
charge the visitor's wallet again. So before a wallet provider is called
the intent is written and committed in a transaction of its own, keyed by
the sale's idempotency key; the answer is committed the same way. A retry
finds the intent: with its answer it reuses it; without one (the process
died during the call) it asks the provider what became of it (query)
instead of charging again.
"""
from trytond.model import Index, ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool
from trytond.transaction import Transaction

from scenic_ticket.errors import ApiError
from scenic_ticket.providers import PaymentProvider
from scenic_ticket.workflow import StateMachine, transition

INTENT_KEY = 'scenic_payment_intent'    # context: the sale's key


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
            ], "Operation", required=True, readonly=True)
    reference = fields.Char("Reference", readonly=True,
        help="The order reference or the original trade number.")
    amount = fields.Numeric("Amount", digits=(16, 2), readonly=True)
    state = fields.Selection([
            ('pending', "Pending"),
            ('done', "Done"),
            ('paid', "Paid"),
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
        cls._transitions |= {
            ('pending', 'done'),
            ('pending', 'paid'),
            }

    @staticmethod
    def default_state():
        return 'pending'

    @classmethod
    @transition('paid')
    def paid(cls, intents):
        "The visitor paid the QR: the provider's notification verified."


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
