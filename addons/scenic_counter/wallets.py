"""WeChat Pay (API v3) and Alipay (open API, RSA2) adapters.

Both sit behind scenic_ticket's provider interface (charge, refund) plus
the query calls RecordedProvider (intent.py) uses to recover an
interrupted call. The protocols are implemented here against the
documented algorithms rather than through `wechatpayv3` /
`python-alipay-sdk`: both SDKs build their own HTTP sessions (requests)
and fetch platform certificates at start, which cannot run offline and
hides the signed bytes the tests must control. What is implemented:

WeChat Pay v3
  requests signed SHA256-RSA (PKCS#1 v1.5) over
  "METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n" with the merchant key;
  answers and notifications verified over "timestamp\\nnonce\\nbody\\n"
  with the configured platform public key; notification resources
  decrypted with AEAD_AES_256_GCM under the APIv3 key.
Alipay
  requests and notifications signed RSA2 (SHA256-RSA) over the sorted
  "key=value" pairs joined by "&" (sign and sign_type left out); a
  synchronous answer is verified over the raw JSON of its
  "<method>_response" object with the Alipay public key.

The payment code scanned at the counter (micropay / bar code) answers
synchronously; an answer that is not final (visitor confirming on the
phone, timeout, system error) is followed by queries; what does not end
paid is reversed so the visitor cannot be charged after the sale was
abandoned. Money crosses the wire in the providers' units (fen for
WeChat, yuan with two decimals for Alipay), converted from Decimal
exactly.

All network traffic goes through `transport(method, url, headers, body)
-> (status, headers, body)`: the seam the tests use to play recorded
answers. `urllib_transport` is the real one.
"""
import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scenic_ticket.providers import PaymentDeclined, PaymentProvider


class ProviderError(Exception):
    "The provider's answer cannot be trusted or understood."


class ForgedNotification(ProviderError):
    "A notification whose signature does not verify: it pays nothing."


def urllib_transport(method, url, headers, body, timeout=10):
    request = urllib.request.Request(url, data=body or None,
        headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def load_private_key(pem):
    if isinstance(pem, str):
        pem = pem.encode()
    return serialization.load_pem_private_key(pem, password=None)


def load_public_key(pem):
    "A PEM public key or an X.509 certificate (the platform certificate)."
    if isinstance(pem, str):
        pem = pem.encode()
    if b'CERTIFICATE' in pem:
        from cryptography import x509
        return x509.load_pem_x509_certificate(pem).public_key()
    return serialization.load_pem_public_key(pem)


def rsa_sign(private_key, message):
    if isinstance(message, str):
        message = message.encode()
    return base64.b64encode(private_key.sign(
            message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(public_key, message, signature):
    if isinstance(message, str):
        message = message.encode()
    try:
        public_key.verify(base64.b64decode(signature), message,
            padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def to_fen(amount):
    fen = Decimal(amount) * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of fen.")
    return int(fen)


def _context():
    "The sale's context: the scanned code, a notified trade number."
    from trytond.transaction import Transaction
    return Transaction().context or {}


def _header(headers, name):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


class WalletProvider(PaymentProvider):
    """Common shape: `payment_code` gives the code scanned at the counter
    for the current sale (the counter passes it in the context)."""
    # Polling a visitor who is still confirming on the phone.
    poll_attempts = 5
    poll_interval = 2.0

    def __init__(self, transport=None, sleep=time.sleep):
        self.transport = transport or urllib_transport
        self.sleep = sleep

    def payment_code(self):
        code = _context().get('scenic_payment_code')
        if not code:
            raise PaymentDeclined(
                "Scan the visitor's payment code first.")
        return code

    def charge(self, order_reference, amount, currency):
        "Micropay with the scanned code; the provider's trade number."
        notified = _context().get('scenic_notified') or {}
        if order_reference in notified:
            # Paid by the visitor on a native QR: the verified
            # notification's trade number (window.apply_notification).
            return notified[order_reference]
        code = self.payment_code()
        try:
            state, trade = self._micropay(order_reference, amount, currency,
                code)
        except (TimeoutError, OSError):
            state, trade = 'unknown', None
        attempts = 0
        while state in ('paying', 'unknown') and attempts < self.poll_attempts:
            self.sleep(self.poll_interval)
            attempts += 1
            try:
                state, trade = self._query_state(order_reference)
            except (TimeoutError, OSError):
                state, trade = 'unknown', None
        if state == 'paid':
            return trade
        # Not paid (declined, or still undecided after polling): reverse,
        # so a late confirmation on the phone takes no money.
        self._reverse(order_reference)
        raise PaymentDeclined(
            f"The {self.name} payment did not go through ({state}).")

    def query(self, order_reference):
        "The trade number if the order was paid, else None."
        state, trade = self._query_state(order_reference)
        return trade if state == 'paid' else None


class WeChatPay(WalletProvider):
    "WeChat Pay API v3 (direct merchant)."
    name = 'wechat'
    base_url = 'https://api.mch.weixin.qq.com'
    schema = 'WECHATPAY2-SHA256-RSA2048'
    # A notification older than this is refused (replay window).
    max_skew = 300

    def __init__(self, mchid, appid, serial_no, private_key,
            platform_public_key, apiv3_key, notify_url=None, **kwargs):
        super().__init__(**kwargs)
        self.mchid = mchid
        self.appid = appid
        self.serial_no = serial_no
        self.private_key = load_private_key(private_key)
        self.platform_key = load_public_key(platform_public_key)
        self.apiv3_key = (apiv3_key.encode() if isinstance(apiv3_key, str)
            else apiv3_key)
        if len(self.apiv3_key) != 32:
            raise ValueError("The WeChat Pay APIv3 key is 32 characters.")
        self.notify_url = notify_url

    # -- signing -------------------------------------------------------
    def authorization(self, method, path, body, timestamp=None,
            nonce=None):
        timestamp = str(timestamp or int(time.time()))
        nonce = nonce or secrets.token_hex(16)
        message = f'{method}\n{path}\n{timestamp}\n{nonce}\n{body}\n'
        signature = rsa_sign(self.private_key, message)
        return (f'{self.schema} mchid="{self.mchid}",nonce_str="{nonce}",'
            f'signature="{signature}",timestamp="{timestamp}",'
            f'serial_no="{self.serial_no}"')

    def verify(self, headers, body, now=None):
        "Check a platform signature on an answer or a notification."
        if isinstance(body, bytes):
            body = body.decode()
        timestamp = _header(headers, 'Wechatpay-Timestamp')
        nonce = _header(headers, 'Wechatpay-Nonce')
        signature = _header(headers, 'Wechatpay-Signature')
        if not (timestamp and nonce and signature):
            raise ForgedNotification("WeChat Pay signature headers missing.")
        if not rsa_verify(self.platform_key,
                f'{timestamp}\n{nonce}\n{body}\n', signature):
            raise ForgedNotification("WeChat Pay signature does not verify.")
        now = now if now is not None else time.time()
        try:
            skew = abs(now - int(timestamp))
        except ValueError:
            raise ForgedNotification("WeChat Pay timestamp is not a number.")
        if skew > self.max_skew:
            raise ForgedNotification("WeChat Pay message is too old.")
        return body

    def decrypt(self, resource):
        if resource.get('algorithm') != 'AEAD_AES_256_GCM':
            raise ProviderError(
                f"Unknown resource algorithm {resource.get('algorithm')!r}.")
        try:
            plain = AESGCM(self.apiv3_key).decrypt(
                resource['nonce'].encode(),
                base64.b64decode(resource['ciphertext']),
                (resource.get('associated_data') or '').encode())
        except (InvalidTag, KeyError, ValueError) as error:
            raise ForgedNotification(
                "WeChat Pay resource does not decrypt.") from error
        return json.loads(plain)

    def request(self, method, path, payload=None):
        body = json.dumps(payload, separators=(',', ':'),
            ensure_ascii=False) if payload is not None else ''
        headers = {
            'Authorization': self.authorization(method, path, body),
            'Accept': 'application/json',
            'Content-Type': 'application/json',
            }
        status, answer_headers, answer = self.transport(
            method, self.base_url + path, headers, body.encode())
        text = answer.decode() if isinstance(answer, bytes) else answer
        # Every answer, errors included, carries the platform signature.
        self.verify(answer_headers, text)
        return status, (json.loads(text) if text else {})

    # -- micropay (payment code) ---------------------------------------
    def _micropay(self, order_reference, amount, currency, code):
        status, data = self.request('POST', '/v3/pay/transactions/codepay', {
                'appid': self.appid, 'mchid': self.mchid,
                'description': f'Tickets {order_reference}',
                'out_trade_no': order_reference,
                'payer': {'auth_code': code},
                'amount': {'total': to_fen(amount), 'currency': currency},
                })
        return self._state(status, data)

    def _state(self, status, data):
        if status >= 500 or data.get('code') in (
                'SYSTEM_ERROR', 'BANK_ERROR', 'USERPAYING'):
            return ('paying' if data.get('code') == 'USERPAYING'
                else 'unknown'), None
        if status >= 400:
            return 'declined', None
        state = data.get('trade_state')
        if state == 'SUCCESS':
            return 'paid', data['transaction_id']
        if state in ('USERPAYING', 'NOTPAY', None) and status == 202:
            return 'paying', None
        if state == 'USERPAYING':
            return 'paying', None
        return 'declined', None

    def _query_state(self, order_reference):
        status, data = self.request('GET',
            f'/v3/pay/transactions/out-trade-no/'
            f'{urllib.parse.quote(order_reference)}?mchid={self.mchid}')
        if status == 404 or data.get('code') == 'ORDER_NOT_EXIST':
            return 'absent', None
        if status == 200 and data.get('trade_state') == 'NOTPAY':
            return 'paying', None
        return self._state(status, data)

    def _reverse(self, order_reference):
        self.request('POST', f'/v3/pay/transactions/out-trade-no/'
            f'{urllib.parse.quote(order_reference)}/reverse',
            {'appid': self.appid, 'mchid': self.mchid})

    # -- refund --------------------------------------------------------
    def refund(self, payment_reference, amount, currency):
        "Refund on the original trade (transaction_id); the refund id."
        status, trade = self.request('GET',
            f'/v3/pay/transactions/id/{urllib.parse.quote(payment_reference)}'
            f'?mchid={self.mchid}')
        if status != 200 or trade.get('trade_state') not in (
                'SUCCESS', 'REFUND'):
            raise PaymentDeclined(
                f"WeChat Pay has no paid trade {payment_reference}.")
        status, data = self.request('POST', '/v3/refund/domestic/refunds', {
                'transaction_id': payment_reference,
                'out_refund_no': f'R{payment_reference}',
                'amount': {'refund': to_fen(amount),
                    'total': trade['amount']['total'],
                    'currency': currency},
                })
        if status != 200 or data.get('status') not in (
                'SUCCESS', 'PROCESSING'):
            raise PaymentDeclined(
                f"WeChat Pay refused the refund: {data.get('message')}.")
        return data['refund_id']

    def query_refund(self, payment_reference):
        status, data = self.request('GET', '/v3/refund/domestic/refunds/'
            f'R{urllib.parse.quote(payment_reference)}')
        return data.get('refund_id') if status == 200 else None

    # -- native QR -----------------------------------------------------
    def native_qr(self, order_reference, amount, currency):
        "The code_url to show as a QR; payment arrives by notification."
        status, data = self.request('POST', '/v3/pay/transactions/native', {
                'appid': self.appid, 'mchid': self.mchid,
                'description': f'Tickets {order_reference}',
                'out_trade_no': order_reference,
                'notify_url': self.notify_url,
                'amount': {'total': to_fen(amount), 'currency': currency},
                })
        if status != 200:
            raise PaymentDeclined(
                f"WeChat Pay refused the QR order: {data.get('message')}.")
        return data['code_url']

    def close_order(self, order_reference):
        """Close the unpaid QR order (its hold ended): it can no longer
        be paid. A closed or unknown order is already closed; a paid one
        raises PaymentDeclined (its notification refunds it)."""
        status, data = self.request('POST', '/v3/pay/transactions/'
            f'out-trade-no/{urllib.parse.quote(order_reference)}/close',
            {'mchid': self.mchid})
        if status in (200, 204):
            return
        state, _ = self._query_state(order_reference)
        if state in ('absent', 'declined'):
            return
        raise PaymentDeclined(
            f"WeChat Pay did not close the order ({state}).")

    # -- settlement ----------------------------------------------------
    def statement(self, day):
        """The day's trade bill (交易账单, CSV text as bytes) that finance
        imports: asked for with a signed request, downloaded from WeChat
        Pay's own host only and checked against the SHA1 it announced."""
        status, data = self.request('GET', '/v3/bill/tradebill?bill_date='
            f'{day.isoformat()}&bill_type=ALL')
        if status != 200:
            raise ProviderError(f"WeChat Pay has no bill for {day}: "
                f"{data.get('message')}.")
        url = data.get('download_url') or ''
        if not url.startswith(self.base_url + '/'):
            raise ProviderError("WeChat Pay's bill is not on its host.")
        path = url[len(self.base_url):]
        status, _, content = self.transport('GET', url, {
                'Authorization': self.authorization('GET', path, ''),
                'Accept': '*/*'}, b'')
        if status != 200:
            raise ProviderError(f"WeChat Pay's bill download failed "
                f"({status}).")
        if data.get('hash_type') != 'SHA1' or not hmac.compare_digest(
                hashlib.sha1(content).hexdigest(),
                str(data.get('hash_value', '')).lower()):
            raise ProviderError("WeChat Pay's bill does not match its hash.")
        return content

    def parse_notification(self, headers, body, now=None):
        """A verified payment notification: dict(out_trade_no, trade,
        amount (Decimal), paid) — ForgedNotification if not genuine."""
        text = self.verify(headers, body, now=now)
        envelope = json.loads(text)
        data = self.decrypt(envelope['resource'])
        if data.get('mchid') not in (None, self.mchid):
            raise ForgedNotification("Notification for another merchant.")
        return {
            'out_trade_no': data['out_trade_no'],
            'trade': data.get('transaction_id'),
            'amount': Decimal(data['amount']['total']) / 100,
            'paid': data.get('trade_state') == 'SUCCESS',
            }


class Alipay(WalletProvider):
    "Alipay open platform (RSA2)."
    name = 'alipay'
    gateway = 'https://openapi.alipay.com/gateway.do'

    def __init__(self, app_id, private_key, alipay_public_key,
            notify_url=None, **kwargs):
        super().__init__(**kwargs)
        self.app_id = app_id
        self.private_key = load_private_key(private_key)
        self.alipay_key = load_public_key(alipay_public_key)
        self.notify_url = notify_url

    @staticmethod
    def signing_string(params):
        return '&'.join(f'{k}={params[k]}' for k in sorted(params)
            if k not in ('sign', 'sign_type') and params[k] not in (None, ''))

    def sign(self, params):
        return rsa_sign(self.private_key, self.signing_string(params))

    @staticmethod
    def raw_object(text, key):
        "The raw JSON text of the value of `key` (what Alipay signs)."
        start = text.index(f'"{key}"') + len(key) + 2
        start = text.index('{', start)
        depth, in_string, escape = 0, False, False
        for i in range(start, len(text)):
            c = text[i]
            if in_string:
                if escape:
                    escape = False
                elif c == '\\':
                    escape = True
                elif c == '"':
                    in_string = False
            elif c == '"':
                in_string = True
            elif c == '{':
                depth += 1
            elif c == '}':
                depth -= 1
                if depth == 0:
                    return text[start:i + 1]
        raise ProviderError("Unterminated Alipay answer.")

    def call(self, method, biz):
        params = {
            'app_id': self.app_id, 'method': method, 'format': 'JSON',
            'charset': 'utf-8', 'sign_type': 'RSA2', 'version': '1.0',
            'timestamp': dt.datetime.now(dt.timezone(dt.timedelta(hours=8))
                ).strftime('%Y-%m-%d %H:%M:%S'),
            'biz_content': json.dumps(biz, separators=(',', ':'),
                ensure_ascii=False),
            }
        if self.notify_url and method == 'alipay.trade.precreate':
            params['notify_url'] = self.notify_url
        params['sign'] = self.sign(params)
        body = urllib.parse.urlencode(params).encode()
        status, _, answer = self.transport('POST', self.gateway, {
                'Content-Type':
                'application/x-www-form-urlencoded;charset=utf-8'}, body)
        text = answer.decode() if isinstance(answer, bytes) else answer
        if status >= 500:
            return {'code': '20000'}
        key = method.replace('.', '_') + '_response'
        raw = self.raw_object(text, key)
        data = json.loads(text)
        # An error for a badly signed request comes unsigned; anything
        # else must verify.
        if 'sign' not in data or not rsa_verify(
                self.alipay_key, raw, data['sign']):
            raise ProviderError("Alipay answer signature does not verify.")
        return json.loads(raw)

    def _micropay(self, order_reference, amount, currency, code):
        data = self.call('alipay.trade.pay', {
                'out_trade_no': order_reference, 'scene': 'bar_code',
                'auth_code': code, 'subject': f'Tickets {order_reference}',
                'total_amount': f'{Decimal(amount):.2f}'})
        return self._state(data)

    @staticmethod
    def _state(data):
        code = data.get('code')
        if code == '10000':
            status = data.get('trade_status', 'TRADE_SUCCESS')
            if status in ('TRADE_SUCCESS', 'TRADE_FINISHED'):
                return 'paid', data['trade_no']
            if status == 'WAIT_BUYER_PAY':
                return 'paying', None
            return 'declined', None
        if code == '10003':
            return 'paying', None
        if code == '20000':
            return 'unknown', None
        if data.get('sub_code') == 'ACQ.TRADE_NOT_EXIST':
            return 'absent', None
        return 'declined', None

    def _query_state(self, order_reference):
        return self._state(self.call('alipay.trade.query',
                {'out_trade_no': order_reference}))

    def _reverse(self, order_reference):
        self.call('alipay.trade.cancel', {'out_trade_no': order_reference})

    def refund(self, payment_reference, amount, currency):
        "Refund on the original trade_no; the refund's request number."
        request_no = f'R{payment_reference}'
        data = self.call('alipay.trade.refund', {
                'trade_no': payment_reference,
                'refund_amount': f'{Decimal(amount):.2f}',
                'out_request_no': request_no})
        if data.get('code') != '10000':
            raise PaymentDeclined(
                f"Alipay refused the refund: {data.get('sub_msg')}.")
        return request_no

    def query_refund(self, payment_reference):
        data = self.call('alipay.trade.fastpay.refund.query', {
                'trade_no': payment_reference,
                'out_request_no': f'R{payment_reference}'})
        return data.get('out_request_no') if data.get('code') == '10000' \
            else None

    def native_qr(self, order_reference, amount, currency):
        data = self.call('alipay.trade.precreate', {
                'out_trade_no': order_reference,
                'subject': f'Tickets {order_reference}',
                'total_amount': f'{Decimal(amount):.2f}'})
        if data.get('code') != '10000':
            raise PaymentDeclined(
                f"Alipay refused the QR order: {data.get('sub_msg')}.")
        return data['qr_code']

    def close_order(self, order_reference):
        """alipay.trade.close of the unpaid QR order. A trade never
        scanned does not exist at Alipay (nothing to close); a paid one
        raises PaymentDeclined (its notification refunds it)."""
        data = self.call('alipay.trade.close',
            {'out_trade_no': order_reference})
        if data.get('code') == '10000' \
                or data.get('sub_code') == 'ACQ.TRADE_NOT_EXIST':
            return
        state, _ = self._query_state(order_reference)
        if state in ('absent', 'declined'):
            return
        raise PaymentDeclined(f"Alipay did not close the order ({state}).")

    # Where Alipay serves its bills (the answer's URL must be there).
    bill_host = 'https://dwbillcenter.alipay.com/'

    def statement(self, day):
        """The day's trade bill (a zip of CSV files, as bytes): its URL
        from a signed, verified answer, downloaded from Alipay's bill
        host only."""
        data = self.call('alipay.data.dataservice.bill.downloadurl.query',
            {'bill_type': 'trade', 'bill_date': day.isoformat()})
        if data.get('code') != '10000':
            raise ProviderError(f"Alipay has no bill for {day}: "
                f"{data.get('sub_msg') or data.get('msg')}.")
        url = data.get('bill_download_url') or ''
        if not url.startswith(self.bill_host):
            raise ProviderError("Alipay's bill is not on its bill host.")
        status, _, content = self.transport('GET', url, {}, b'')
        if status != 200:
            raise ProviderError(f"Alipay's bill download failed ({status}).")
        return content

    def parse_notification(self, headers, body, now=None):
        "Form-encoded notification, verified RSA2 over the sorted pairs."
        if isinstance(body, bytes):
            body = body.decode()
        params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        signature = params.get('sign')
        if not signature or not rsa_verify(self.alipay_key,
                self.signing_string(params), signature):
            raise ForgedNotification("Alipay signature does not verify.")
        if params.get('app_id') != self.app_id:
            raise ForgedNotification("Notification for another app.")
        return {
            'out_trade_no': params['out_trade_no'],
            'trade': params.get('trade_no'),
            'amount': Decimal(params['total_amount']),
            'paid': params.get('trade_status') in (
                'TRADE_SUCCESS', 'TRADE_FINISHED'),
            }
