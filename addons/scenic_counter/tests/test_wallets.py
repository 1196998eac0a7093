"""WeChat Pay v3 and Alipay adapters against recorded answers.

No network: the gateways are played by fakes that hold keys the tests
generate, check the merchant's request signatures and sign their answers
and notifications the way the providers document it.
"""
import base64
import datetime as dt
import hashlib
import json
import os
import time
import unittest
from unittest import mock
import urllib.parse
from decimal import Decimal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scenic_ticket.providers import PaymentDeclined

from .. import wallets


def new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_private(key):
    return key.private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


def pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo).decode()


APIV3_KEY = 'k' * 32


class FakeWeChat:
    """WeChat Pay's gateway: checks each request's merchant signature and
    answers from `script` (path prefix -> list of (status, body)), signed
    with the platform key."""

    def __init__(self, merchant_key):
        self.platform_key = new_key()
        self.merchant_public = merchant_key.public_key()
        self.script = {}
        self.calls = []

    def adapter(self, **kwargs):
        return wallets.WeChatPay(mchid='1900000001', appid='wxapp',
            serial_no='SERIAL1', private_key=pem_private(MERCHANT),
            platform_public_key=pem_public(self.platform_key),
            apiv3_key=APIV3_KEY, transport=self, sleep=lambda s: None,
            **kwargs)

    def signed(self, body, timestamp=None, key=None):
        timestamp = str(timestamp or int(time.time()))
        nonce = os.urandom(8).hex()
        signature = wallets.rsa_sign(key or self.platform_key,
            f'{timestamp}\n{nonce}\n{body}\n')
        return {'Wechatpay-Timestamp': timestamp, 'Wechatpay-Nonce': nonce,
            'Wechatpay-Signature': signature, 'Wechatpay-Serial': 'PLAT1'}

    def __call__(self, method, url, headers, body):
        path = url[len(wallets.WeChatPay.base_url):]
        auth = headers['Authorization']
        assert auth.startswith('WECHATPAY2-SHA256-RSA2048 ')
        fields = dict(part.split('=', 1) for part in
            auth.split(' ', 1)[1].split(','))
        fields = {k: v.strip('"') for k, v in fields.items()}
        message = (f'{method}\n{path}\n{fields["timestamp"]}\n'
            f'{fields["nonce_str"]}\n{body.decode()}\n')
        assert wallets.rsa_verify(self.merchant_public, message,
            fields['signature']), 'bad merchant signature'
        self.calls.append((method, path, json.loads(body) if body else None))
        for prefix, answers in self.script.items():
            if path.startswith(prefix):
                answer = answers.pop(0)
                if isinstance(answer, Exception):
                    raise answer
                status, data = answer
                text = json.dumps(data)
                return status, self.signed(text), text.encode()
        raise AssertionError(f'unexpected call {method} {path}')

    def notification(self, out_trade_no, transaction_id, fen,
            state='SUCCESS', key=None):
        plain = json.dumps({'mchid': '1900000001', 'appid': 'wxapp',
                'out_trade_no': out_trade_no,
                'transaction_id': transaction_id, 'trade_state': state,
                'amount': {'total': fen, 'currency': 'CNY'}})
        nonce = 'abcdefghijkl'
        cipher = AESGCM(APIV3_KEY.encode()).encrypt(nonce.encode(),
            plain.encode(), b'transaction')
        body = json.dumps({'id': 'EV-1', 'event_type': 'TRANSACTION.SUCCESS',
                'resource_type': 'encrypt-resource', 'resource': {
                    'algorithm': 'AEAD_AES_256_GCM', 'nonce': nonce,
                    'associated_data': 'transaction',
                    'ciphertext': base64.b64encode(cipher).decode()}})
        return self.signed(body, key=key), body.encode()


class FakeAlipay:
    "Alipay's gateway: checks RSA2 request signatures, signs its answers."

    def __init__(self, merchant_key):
        self.alipay_key = new_key()
        self.merchant_public = merchant_key.public_key()
        self.script = {}
        self.calls = []

    def adapter(self):
        return wallets.Alipay(app_id='2021000000000001',
            private_key=pem_private(MERCHANT),
            alipay_public_key=pem_public(self.alipay_key),
            transport=self, sleep=lambda s: None)

    def __call__(self, method, url, headers, body):
        params = dict(urllib.parse.parse_qsl(body.decode()))
        assert params['sign_type'] == 'RSA2'
        assert wallets.rsa_verify(self.merchant_public,
            wallets.Alipay.signing_string(params), params['sign']), \
            'bad merchant signature'
        name = params['method']
        self.calls.append((name, json.loads(params['biz_content'])))
        answer = self.script[name].pop(0)
        if isinstance(answer, Exception):
            raise answer
        raw = json.dumps(answer, ensure_ascii=False)
        sign = wallets.rsa_sign(self.alipay_key, raw)
        key = name.replace('.', '_') + '_response'
        return 200, {}, (f'{{"{key}":{raw},"sign":"{sign}"}}').encode()

    def notification(self, out_trade_no, trade_no, amount, key=None):
        params = {'app_id': '2021000000000001', 'out_trade_no': out_trade_no,
            'trade_no': trade_no, 'total_amount': amount,
            'trade_status': 'TRADE_SUCCESS', 'notify_id': 'N1',
            'charset': 'utf-8', 'sign_type': 'RSA2'}
        params['sign'] = wallets.rsa_sign(key or self.alipay_key,
            wallets.Alipay.signing_string(params))
        return {}, urllib.parse.urlencode(params).encode()


MERCHANT = new_key()


def paying_with(code):
    "The context the counter sets for a sale: the scanned payment code."
    return mock.patch.object(wallets, '_context',
        return_value={'scenic_payment_code': code})


class WeChatPayTestCase(unittest.TestCase):

    def setUp(self):
        self.gateway = FakeWeChat(MERCHANT)
        self.wechat = self.gateway.adapter()

    def test_micropay_synchronous(self):
        self.gateway.script = {'/v3/pay/transactions/codepay': [
                (200, {'trade_state': 'SUCCESS',
                        'transaction_id': '4200000001'})]}
        with paying_with('134567890123456789'):
            trade = self.wechat.charge('ORD1', Decimal('120.50'), 'CNY')
        self.assertEqual(trade, '4200000001')
        method, path, body = self.gateway.calls[0]
        self.assertEqual(body['payer'], {'auth_code': '134567890123456789'})
        self.assertEqual(body['amount'], {'total': 12050, 'currency': 'CNY'})
        self.assertEqual(body['out_trade_no'], 'ORD1')

    def test_micropay_timeout_then_query(self):
        "No answer: query until the visitor has confirmed on the phone."
        self.gateway.script = {
            '/v3/pay/transactions/codepay': [TimeoutError()],
            '/v3/pay/transactions/out-trade-no/ORD2': [
                (200, {'trade_state': 'USERPAYING'}),
                (200, {'trade_state': 'SUCCESS',
                        'transaction_id': '4200000002'})]}
        with paying_with('134567890123456789'):
            trade = self.wechat.charge('ORD2', Decimal('50'), 'CNY')
        self.assertEqual(trade, '4200000002')
        self.assertEqual([c[0] for c in self.gateway.calls],
            ['POST', 'GET', 'GET'])
        self.assertNotIn('reverse', self.gateway.calls[-1][1])

    def test_micropay_failure_reversed(self):
        "Declined (or undecided after polling): reversed, then refused."
        self.gateway.script = {
            '/v3/pay/transactions/codepay': [
                (400, {'code': 'NOTENOUGH', 'message': 'balance'})],
            '/v3/pay/transactions/out-trade-no/ORD3/reverse': [
                (200, {})]}
        with paying_with('134567890123456789'), \
                self.assertRaises(PaymentDeclined):
            self.wechat.charge('ORD3', Decimal('50'), 'CNY')
        self.assertEqual(self.gateway.calls[-1][1],
            '/v3/pay/transactions/out-trade-no/ORD3/reverse')

    def test_unsigned_answer_refused(self):
        "An answer not signed by the platform key is not believed."
        self.gateway.platform_key = new_key()   # an impostor answers
        self.gateway.script = {'/v3/pay/transactions/codepay': [
                (200, {'trade_state': 'SUCCESS',
                        'transaction_id': '4200000009'})]}
        with paying_with('134567890123456789'), \
                self.assertRaises(wallets.ForgedNotification):
            self.wechat.charge('ORD9', Decimal('50'), 'CNY')

    def test_refund_with_original_trade_number(self):
        self.gateway.script = {
            '/v3/pay/transactions/id/4200000001': [
                (200, {'trade_state': 'SUCCESS',
                        'amount': {'total': 12050}})],
            '/v3/refund/domestic/refunds': [
                (200, {'status': 'PROCESSING', 'refund_id': '5000001'})]}
        refund = self.wechat.refund('4200000001', Decimal('120.50'), 'CNY')
        self.assertEqual(refund, '5000001')
        method, path, body = self.gateway.calls[-1]
        self.assertEqual(body['transaction_id'], '4200000001')
        self.assertEqual(body['amount'],
            {'refund': 12050, 'total': 12050, 'currency': 'CNY'})

    def test_notification(self):
        headers, body = self.gateway.notification('ORD4', '4200000004', 100)
        info = self.wechat.parse_notification(headers, body)
        self.assertEqual(info, {'out_trade_no': 'ORD4',
                'trade': '4200000004', 'amount': Decimal('1'),
                'paid': True})

    def test_forged_notification(self):
        headers, body = self.gateway.notification('ORD5', '4200000005', 100,
            key=new_key())
        with self.assertRaises(wallets.ForgedNotification):
            self.wechat.parse_notification(headers, body)
        # Genuine headers on an altered body.
        headers, body = self.gateway.notification('ORD5', '4200000005', 100)
        with self.assertRaises(wallets.ForgedNotification):
            self.wechat.parse_notification(headers,
                body.replace(b'EV-1', b'EV-2'))

    def test_stale_notification(self):
        headers, body = self.gateway.notification('ORD6', '4200000006', 100)
        with self.assertRaises(wallets.ForgedNotification):
            self.wechat.parse_notification(headers, body,
                now=time.time() + 3600)

    def test_native_qr(self):
        self.gateway.script = {'/v3/pay/transactions/native': [
                (200, {'code_url': 'weixin://wxpay/bizpayurl?pr=abc'})]}
        wechat = self.gateway.adapter(notify_url='https://x/notify')
        self.assertEqual(wechat.native_qr('ORD7', Decimal('10'), 'CNY'),
            'weixin://wxpay/bizpayurl?pr=abc')
        self.assertEqual(self.gateway.calls[0][2]['notify_url'],
            'https://x/notify')

    def test_fen_exact(self):
        with self.assertRaises(ValueError):
            wallets.to_fen(Decimal('1.005'))


class WeChatStatementTestCase(unittest.TestCase):
    "The daily trade bill: downloaded, checked against its hash"

    def setUp(self):
        self.gateway = FakeWeChat(MERCHANT)
        self.wechat = self.gateway.adapter()

    def script(self, content, digest=None, url=None):
        # FakeWeChat answers JSON text: the file is that text.
        text = json.dumps(content).encode()
        self.gateway.script = {
            '/v3/bill/tradebill': [(200, {'hash_type': 'SHA1',
                        'hash_value': digest or hashlib.sha1(text).hexdigest(),
                        'download_url': url or (wallets.WeChatPay.base_url
                            + '/v3/billdownload/file?token=T1')})],
            '/v3/billdownload/file': [(200, content)]}
        return text

    def test_statement(self):
        text = self.script('交易时间,公众账号ID\n`2026-12-03 10:00:00,wx')
        self.assertEqual(self.wechat.statement(dt.date(2026, 12, 3)), text)
        (_, path, _), (_, download, _) = self.gateway.calls
        self.assertEqual(path, '/v3/bill/tradebill?bill_date=2026-12-03'
            '&bill_type=ALL')
        self.assertEqual(download, '/v3/billdownload/file?token=T1')

    def test_statement_hash_mismatch(self):
        self.script('rows', digest='0' * 40)
        with self.assertRaises(wallets.ProviderError):
            self.wechat.statement(dt.date(2026, 12, 3))

    def test_statement_elsewhere_refused(self):
        self.script('rows', url='https://evil.example/bill')
        with self.assertRaises(wallets.ProviderError):
            self.wechat.statement(dt.date(2026, 12, 3))
        self.assertEqual(len(self.gateway.calls), 1)


class AlipayTestCase(unittest.TestCase):

    def setUp(self):
        self.gateway = FakeAlipay(MERCHANT)
        self.alipay = self.gateway.adapter()

    def test_statement(self):
        "The bill's URL from a verified answer, fetched from the bill host"
        downloads = []

        def transport(method, url, headers, body):
            if method == 'GET':
                downloads.append(url)
                return 200, {}, b'PK-zip-bytes'
            return self.gateway(method, url, headers, body)
        self.alipay.transport = transport
        self.gateway.script = {
            'alipay.data.dataservice.bill.downloadurl.query': [
                {'code': '10000', 'bill_download_url':
                    'https://dwbillcenter.alipay.com/downloadBillFile.resource'
                    '?bizType=trade&fileId=F1'},
                {'code': '10000', 'bill_download_url':
                    'https://evil.example/bill.zip'},
                {'code': '40004', 'sub_msg': 'bill not exist'}]}
        self.assertEqual(self.alipay.statement(dt.date(2026, 12, 3)),
            b'PK-zip-bytes')
        self.assertEqual(self.gateway.calls[0][1],
            {'bill_type': 'trade', 'bill_date': '2026-12-03'})
        for _ in range(2):
            with self.assertRaises(wallets.ProviderError):
                self.alipay.statement(dt.date(2026, 12, 3))
        self.assertEqual(len(downloads), 1)

    def test_close_order(self):
        "trade.close: closed, never scanned, closed before; paid refuses"
        self.gateway.script = {
            'alipay.trade.close': [{'code': '10000'},
                {'code': '40004', 'sub_code': 'ACQ.TRADE_NOT_EXIST'},
                {'code': '40004', 'sub_code': 'ACQ.TRADE_STATUS_ERROR'},
                {'code': '40004', 'sub_code': 'ACQ.TRADE_STATUS_ERROR'}],
            'alipay.trade.query': [
                {'code': '10000', 'trade_status': 'TRADE_CLOSED'},
                {'code': '10000', 'trade_status': 'TRADE_SUCCESS',
                    'trade_no': '2026X'}]}
        for _ in range(3):
            self.alipay.close_order('ORD-1')
        with self.assertRaises(PaymentDeclined):
            self.alipay.close_order('ORD-1')
        self.assertEqual(self.gateway.calls[0],
            ('alipay.trade.close', {'out_trade_no': 'ORD-1'}))

    def test_micropay_synchronous(self):
        self.gateway.script = {'alipay.trade.pay': [
                {'code': '10000', 'msg': 'Success', 'trade_no': '2026A1',
                    'out_trade_no': 'ORD1', 'total_amount': '120.50'}]}
        with paying_with('281234567890123456'):
            self.assertEqual(
                self.alipay.charge('ORD1', Decimal('120.5'), 'CNY'), '2026A1')
        name, biz = self.gateway.calls[0]
        self.assertEqual(biz['scene'], 'bar_code')
        self.assertEqual(biz['auth_code'], '281234567890123456')
        self.assertEqual(biz['total_amount'], '120.50')

    def test_micropay_waiting_then_query(self):
        self.gateway.script = {
            'alipay.trade.pay': [{'code': '10003', 'msg': 'waiting'}],
            'alipay.trade.query': [
                {'code': '10000', 'trade_status': 'WAIT_BUYER_PAY'},
                {'code': '10000', 'trade_status': 'TRADE_SUCCESS',
                    'trade_no': '2026A2'}]}
        with paying_with('281234567890123456'):
            self.assertEqual(
                self.alipay.charge('ORD2', Decimal('5'), 'CNY'), '2026A2')

    def test_micropay_never_confirmed_cancelled(self):
        self.gateway.script = {
            'alipay.trade.pay': [{'code': '10003'}],
            'alipay.trade.query': [{'code': '10000',
                        'trade_status': 'WAIT_BUYER_PAY'}] * 5,
            'alipay.trade.cancel': [{'code': '10000', 'action': 'close'}]}
        with paying_with('281234567890123456'), \
                self.assertRaises(PaymentDeclined):
            self.alipay.charge('ORD3', Decimal('5'), 'CNY')
        self.assertEqual(self.gateway.calls[-1],
            ('alipay.trade.cancel', {'out_trade_no': 'ORD3'}))

    def test_answer_with_bad_signature(self):
        self.gateway.alipay_key = new_key()
        self.gateway.script = {'alipay.trade.pay': [
                {'code': '10000', 'trade_no': '2026A9'}]}
        with paying_with('281234567890123456'), \
                self.assertRaises(wallets.ProviderError):
            self.alipay.charge('ORD9', Decimal('5'), 'CNY')

    def test_refund_with_original_trade_number(self):
        self.gateway.script = {'alipay.trade.refund': [
                {'code': '10000', 'fund_change': 'Y'}]}
        self.assertEqual(self.alipay.refund('2026A1', Decimal('20'), 'CNY'),
            'R2026A1')
        self.assertEqual(self.gateway.calls[0][1]['trade_no'], '2026A1')
        self.assertEqual(self.gateway.calls[0][1]['refund_amount'], '20.00')

    def test_notification(self):
        headers, body = self.gateway.notification('ORD4', '2026A4', '10.00')
        self.assertEqual(self.alipay.parse_notification(headers, body),
            {'out_trade_no': 'ORD4', 'trade': '2026A4',
                'amount': Decimal('10.00'), 'paid': True})
        headers, body = self.gateway.notification('ORD4', '2026A4', '10.00',
            key=new_key())
        with self.assertRaises(wallets.ForgedNotification):
            self.alipay.parse_notification(headers, body)
        headers, body = self.gateway.notification('ORD4', '2026A4', '10.00')
        with self.assertRaises(wallets.ForgedNotification):
            self.alipay.parse_notification(headers,
                body.replace(b'10.00', b'0.01'))


class RegisterFromConfigTestCase(unittest.TestCase):

    def test_wallets_registered_from_config(self):
        "[scenic_wechatpay] / [scenic_alipay] register recorded adapters"
        import tempfile

        from scenic_ticket.providers import PROVIDERS

        from trytond import config

        from .. import window
        from ..intent import RecordedProvider
        previous = {n: PROVIDERS.get(n) for n in ('wechat', 'alipay')}
        gateway = FakeWeChat(MERCHANT)
        with tempfile.NamedTemporaryFile('w', suffix='.pem') as key_file:
            key_file.write(pem_private(MERCHANT))
            key_file.flush()
            config.add_section('scenic_wechatpay')
            config.add_section('scenic_alipay')
            try:
                for k, v in {'mchid': '1900000001', 'appid': 'wxapp',
                        'serial_no': 'S1', 'private_key': key_file.name,
                        'platform_public_key':
                        pem_public(gateway.platform_key),
                        'apiv3_key': APIV3_KEY}.items():
                    config.set('scenic_wechatpay', k, v)
                config.set('scenic_alipay', 'app_id', '2021')
                # Incomplete: a clear error, nothing registered half-way.
                with self.assertRaisesRegex(ValueError, 'private_key'):
                    window.register_wallets(transport=gateway)
                self.assertIs(PROVIDERS.get('wechat'), previous['wechat'])
                config.set('scenic_alipay', 'private_key', key_file.name)
                config.set('scenic_alipay', 'alipay_public_key',
                    pem_public(MERCHANT))
                self.assertEqual(window.register_wallets(transport=gateway),
                    ['wechat', 'alipay'])
                wechat = PROVIDERS['wechat']
                self.assertIsInstance(wechat, RecordedProvider)
                self.assertEqual(wechat.inner.mchid, '1900000001')
                headers, body = gateway.notification('O1', 'T1', 100)
                self.assertTrue(
                    wechat.inner.parse_notification(headers, body)['paid'])
            finally:
                config.remove_section('scenic_wechatpay')
                config.remove_section('scenic_alipay')
                for name, provider in previous.items():
                    if provider is None:
                        PROVIDERS.pop(name, None)
                    else:
                        PROVIDERS[name] = provider
