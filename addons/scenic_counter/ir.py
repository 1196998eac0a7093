from trytond.pool import PoolMeta
from trytond.transaction import Transaction

# Rules that name the user: a cashier sees their own shifts and payments.
OWN_MODELS = {'sale.point.cash.session', 'sale.point.payment'}


class Rule(metaclass=PoolMeta):
    __name__ = 'ir.rule'

    @classmethod
    def _get_context(cls, model_name):
        context = super()._get_context(model_name)
        if model_name in OWN_MODELS:
            context['user_id'] = Transaction().user
        return context

    @classmethod
    def _get_cache_key(cls, model_names):
        key = super()._get_cache_key(model_names)
        if model_names & OWN_MODELS:
            key = (*key, Transaction().user)
        return key


class Cron(metaclass=PoolMeta):
    __name__ = 'ir.cron'

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.method.selection.append(
            ('scenic.counter.provider_intent|close_wallet_orders',
                "Close Expired Wallet QR Orders"))
