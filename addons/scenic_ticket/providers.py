"""Payment providers behind one small interface.

The demo and the tests use the simulated provider; a real one (WeChat Pay,
Alipay, UnionPay) implements the same two calls against its gateway and
registers itself with `register`.
"""
import secrets

from .errors import ApiError


class PaymentDeclined(Exception):
    pass


class PaymentProvider:
    name = None

    def charge(self, order_reference, amount, currency):
        "Take the amount; return the provider's reference of the payment."
        raise NotImplementedError

    def refund(self, payment_reference, amount, currency):
        "Give the amount back; return the provider's reference."
        raise NotImplementedError


class SimulatedProvider(PaymentProvider):
    "Approves every payment and refund at once, as a sandbox would."
    name = 'simulated'

    def charge(self, order_reference, amount, currency):
        return f'SIM-PAY-{secrets.token_hex(8)}'

    def refund(self, payment_reference, amount, currency):
        return f'SIM-REFUND-{secrets.token_hex(8)}'


PROVIDERS = {}


def register(provider):
    "Make a provider instance payable by its name; return it."
    if not provider.name:
        raise ValueError("A payment provider needs a name.")
    PROVIDERS[provider.name] = provider
    return provider


register(SimulatedProvider())


def get_provider(name):
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ApiError('invalid_request',
            f"Unknown payment provider {name!r}; use one of: "
            f"{', '.join(sorted(PROVIDERS))}.", 'provider')
