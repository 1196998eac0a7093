"""Payment providers behind one small interface.

The demo and the tests use the simulated provider; a real one (WeChat Pay,
Alipay, UnionPay) implements the same two calls against its gateway and
registers itself with `register`. `charge` returns only once the
provider's answer is verified (its signature checked, or its notification
received): the order is paid on that, never on the client's word.

Which providers a channel may pay with is an allow-list in the server
configuration (the booking page's channel key is public, so the client
must not choose freely), section ``[scenic_payment]``: one option per
channel code, ``default`` for the others, each a list of provider names:

    [scenic_payment]
    default = wechat alipay
    web = wechat

Nothing listed: the channel cannot take payments. The simulated provider
approves everything, so it is refused unless the configuration says it is
a demo (``[scenic] demo = True``, config/trytond.conf).
"""
import re
import secrets

from trytond import config

from .errors import ApiError
from .vault import is_demo


class PaymentDeclined(Exception):
    pass


class PaymentProvider:
    name = None
    # charge() needs no Tryton transaction: the booking engine (engine.py)
    # may call it on its own connection; others are paid on Tryton's route
    engine_safe = False

    def charge(self, order_reference, amount, currency):
        "Take the amount; return the provider's reference of the payment."
        raise NotImplementedError

    def refund(self, payment_reference, amount, currency):
        "Give the amount back; return the provider's reference."
        raise NotImplementedError


class SimulatedProvider(PaymentProvider):
    "Approves every payment and refund at once, as a sandbox would."
    name = 'simulated'
    demo_only = True
    engine_safe = True

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


def configured(channel_code):
    """The provider names the configuration gives channel `channel_code`
    ([scenic_payment] <code>, else default), demo-only ones removed outside
    a demo: these need no database to decide (the booking engine's)."""
    text = config.get('scenic_payment', (channel_code or '').lower(),
        default=None)
    if text is None:
        text = config.get('scenic_payment', 'default', default='')
    names = [n for n in re.split(r'[\s,]+', text or '') if n]
    return [n for n in names if n in PROVIDERS
        and (is_demo() or not getattr(PROVIDERS[n], 'demo_only', False))]


def allowed(channel_code):
    """The provider names channel `channel_code` may take payments with:
    the configured ones and those that accept the channel themselves."""
    text = config.get('scenic_payment', (channel_code or '').lower(),
        default=None)
    if text is None:
        text = config.get('scenic_payment', 'default', default='')
    names = [n for n in re.split(r'[\s,]+', text or '') if n]
    # A provider may accept channels itself (e.g. payment on a partner's
    # account, for the partners' own channels only).
    names += [n for n, p in PROVIDERS.items() if n not in names
        and getattr(p, 'accepts_channel', None)
        and p.accepts_channel(channel_code)]
    return [n for n in names if n in PROVIDERS
        and (is_demo() or not getattr(PROVIDERS[n], 'demo_only', False))]


def get_provider(name, channel_code=None, refund=False):
    """The provider `name`: for a charge, one the channel may use
    (`allowed`); for a refund, the one that took the payment (outside a
    demo never the simulated one)."""
    provider = PROVIDERS.get(name) if isinstance(name, str) else None
    if provider is not None and getattr(provider, 'demo_only', False) \
            and not is_demo():
        raise ApiError('invalid_request',
            f"The payment provider {name!r} exists only in the demo.",
            'provider')
    if provider is not None and (refund or name in configured(channel_code)
            or name in allowed(channel_code)):
        return provider
    names = allowed(channel_code)
    raise ApiError('invalid_request',
        f"Payment provider {name!r} is not accepted here; use one of: "
        f"{', '.join(names) or '(none configured)'}.", 'provider')
