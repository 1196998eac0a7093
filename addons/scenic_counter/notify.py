"""Wallet payment notifications over HTTP, and the demo's wallet pay page.

    POST /<db>/scenic/notify/<provider>         the provider's asynchronous
                                                notification (native QR)
    GET  /<db>/scenic/kiosk/simpay/<token>      the simulated wallet's pay
    POST /<db>/scenic/kiosk/simpay/<token>      page (what a phone shows
                                                after scanning the kiosk QR)

A notification is verified by the provider's adapter (WeChat Pay v3:
platform signature, AES-256-GCM resource; Alipay: RSA2; the simulated
wallet: the QR's token) and applied by ``window.apply_notification``: the
order is paid once whatever the number of deliveries, and the QR's intent
moves to paid. The answer is what each provider expects: WeChat Pay 204 or
4xx ``{"code": "FAIL", "message"}`` (it retries), Alipay ``success`` or
``fail``. Nothing from the body is logged (it names the order and, for
Alipay, the buyer's account).
"""
import html
import json
import logging

from scenic_ticket.web import database_pool

from trytond.pool import Pool
from trytond.protocols.wrappers import Response
from trytond.wsgi import app

from . import txn, window
from .exceptions import CounterError
from .wallets import ForgedNotification, ProviderError

logger = logging.getLogger(__name__)
MAX_NOTIFICATION = 64 * 1024


def _answer(provider, ok, message='', status=400):
    if provider == 'alipay':
        return Response('success' if ok else 'fail',
            status=200 if ok else status,
            content_type='text/plain; charset=utf-8')
    if ok:
        return Response(status=204)
    return Response(json.dumps({'code': 'FAIL', 'message': message}),
        status=status, content_type='application/json')


def handle(database_name, provider, headers, body):
    """(paid order reference or None); raises ForgedNotification,
    CounterError. One transaction, retried as the window's work."""
    def work():
        order = window.apply_notification(provider, headers, body)
        return order.reference if order else None
    return txn.run(database_name, 0, work)


@app.route('/<database_name>/scenic/notify/<provider>', methods=['POST'])
def post_notification(request, database_name, provider):
    if database_pool(database_name) is None:
        return _answer(provider, False, "No such database.", 404)
    body = request.get_data(cache=True)
    if len(body) > MAX_NOTIFICATION:
        return _answer(provider, False, "Too large.", 413)
    try:
        handle(database_name, provider, dict(request.headers), body)
    except (ForgedNotification, ProviderError, ValueError, KeyError):
        logger.warning("refused a %s notification: not genuine", provider)
        return _answer(provider, False, "Signature does not verify.", 401)
    except CounterError as error:
        logger.warning("refused a %s notification: %s", provider,
            error.code)
        return _answer(provider, False, error.code, 400)
    except Exception:
        logger.exception("a %s notification failed", provider)
        return _answer(provider, False, "Try again.", 500)
    return _answer(provider, True)


# --- the simulated wallet's pay page (demo) ------------------------------

SIMPAY_CSP = ("default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def _simpay_intent(database_name, token):
    Intent = Pool().get('scenic.counter.provider_intent')
    url = window.SimulatedWallet.pay_page.format(database=database_name,
        token=token)
    intents = Intent.search([('provider', '=', 'simulated'),
            ('operation', '=', 'native'), ('result', '=', url)], limit=1)
    return intents[0] if intents else None


def _simpay_page(title, text, form=None, status=200):
    body = (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, '
        'initial-scale=1"><title>模拟支付 · Simulated wallet</title></head>'
        '<body style="font:20px system-ui,sans-serif;text-align:center;'
        f'padding:2em"><h1>{html.escape(title)}</h1>'
        f'<p id="simpay-text">{html.escape(text)}</p>{form or ""}'
        '</body></html>')
    return Response(body, status=status,
        content_type='text/html; charset=utf-8',
        headers={'Content-Security-Policy': SIMPAY_CSP,
            # Not no-referrer: the browser would then post the form with
            # "Origin: null", which trytond refuses.
            'Cache-Control': 'no-store', 'Referrer-Policy': 'same-origin',
            'X-Content-Type-Options': 'nosniff'})


@app.route('/<database_name>/scenic/kiosk/simpay/<token>',
    methods=['GET', 'POST'])
def simpay(request, database_name, token):
    if database_pool(database_name) is None or 'simulated' not in (
            window.PROVIDERS) or len(token) > 64:
        return _simpay_page("模拟支付", "No such payment.", status=404)
    if request.method == 'POST':
        # A closed QR (its order expired or was cancelled) cannot be paid,
        # as at a real wallet.
        if txn.run(database_name, 0, lambda: getattr(_simpay_intent(
                        database_name, token), 'state', None),
                readonly=True) in ('closed', 'refunded'):
            return _simpay_page("已关闭 · Closed",
                "This payment was closed.", status=409)
        # The wallet notifies the ERP (in-process: the same handler as
        # POST /notify/simulated).
        body = json.dumps({'out_trade_no': request.form.get('order', ''),
                'token': token}).encode()
        try:
            reference = handle(database_name, 'simulated', {}, body)
        except (ForgedNotification, CounterError):
            return _simpay_page("模拟支付", "No such payment.", status=404)
        return _simpay_page("已支付 · Paid",
            f"{reference or ''} ✓".strip())
    intent = txn.run(database_name, 0,
        lambda: (lambda i: (i.reference, str(i.amount), i.state)
            if i else None)(_simpay_intent(database_name, token)),
        readonly=True)
    if not intent:
        return _simpay_page("模拟支付", "No such payment.", status=404)
    reference, amount, state = intent
    if state == 'paid':
        return _simpay_page("已支付 · Paid", f"{reference} ✓")
    if state in ('closed', 'refunded'):
        return _simpay_page("已关闭 · Closed", "This payment was closed.")
    form = (f'<form method="post"><input type="hidden" name="order" '
        f'value="{html.escape(reference, quote=True)}">'
        '<button id="simpay-pay" type="submit" style="font-size:24px;'
        'padding:.5em 2em">确认支付 · Pay</button></form>')
    return _simpay_page("模拟支付 · Simulated wallet",
        f"¥{amount} · {reference}", form)
