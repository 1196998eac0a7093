"""Box ↔ ERP transport (issue 15 item 8): TLS with a pinned CA, plain
http only to loopback, no redirects; synced keys are append-only."""
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scenic_iotbox.config import ConfigError, parse
from scenic_iotbox.sync import ErpClient, ErpRejected, ErpUnavailable


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn))
        .issuer_name(_name(cn)).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None),
            critical=True)
        .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key, ca_cert, host='127.0.0.1'):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(host))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .sign(ca_key, hashes.SHA256()))
    return key, cert


def _pem(path, cert):
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def pki(tmp_path):
    ca_key, ca_cert = _ca('Scenic test CA')
    key, cert = _leaf(ca_key, ca_cert)
    other_key, other_ca = _ca('Someone else')
    (tmp_path / 'erp.key').write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    _pem(tmp_path / 'erp.crt', cert)
    return {'ca': _pem(tmp_path / 'ca.pem', ca_cert),
        'other': _pem(tmp_path / 'other.pem', other_ca),
        'cert': tmp_path / 'erp.crt', 'key': tmp_path / 'erp.key'}


@pytest.fixture
def tls_erp(fake_erp, pki):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki['cert'], pki['key'])
    fake_erp.server.socket = context.wrap_socket(fake_erp.server.socket,
        server_side=True)
    return fake_erp


def test_pinned_ca_talks_tls(tls_erp, pki):
    url = f'https://127.0.0.1:{tls_erp.port}'
    client = ErpClient(url, 'demo', timeout=5, ca_file=pki['ca'])
    answer = client.enrol('TOKEN-1', 'box', 'h')
    assert answer['box'] == 42


def test_other_ca_refused(tls_erp, pki):
    url = f'https://127.0.0.1:{tls_erp.port}'
    # another CA, and the system's CAs: the ERP's certificate is not trusted
    for client in (ErpClient(url, 'demo', timeout=5, ca_file=pki['other']),
            ErpClient(url, 'demo', timeout=5)):
        with pytest.raises(ErpUnavailable, match='CERTIFICATE_VERIFY'):
            client.enrol('TOKEN-1', 'box', 'h')
    assert not tls_erp.boxes


def test_redirect_refused(fake_erp):
    "An ERP (or someone in between) cannot send the box elsewhere."
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header('Location', fake_erp.url + self.path)
            self.send_header('Content-Length', '0')
            self.end_headers()

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(('127.0.0.1', 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{server.server_address[1]}'
        client = ErpClient(url, 'demo', timeout=5,
            credentials=lambda: {'box': 42, 'secret': 's'})
        with pytest.raises(ErpRejected, match='302'):
            client.sync()
        assert not any(p.endswith('/sync') for _, p in fake_erp.requests)
    finally:
        server.shutdown()
        server.server_close()


def _config(**erp):
    return {'erp': dict({'database': 'demo'}, **erp),
        'gates': [{'code': 'MAIN-IN'}]}


def test_config_requires_tls_beyond_loopback(pki):
    base = Path(pki['ca']).parent
    for url in ('http://erp.example.com:8000', 'http://10.0.0.5:8000'):
        with pytest.raises(ConfigError) as info:
            parse(_config(url=url), base=base)
        assert info.value.key == 'erp.url' and 'https' in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse(_config(url='https://erp.example.com'), base=base)
    assert info.value.key == 'erp.ca_file'
    with pytest.raises(ConfigError) as info:
        parse(_config(url='https://erp.example.com', ca_file='nope.pem'),
            base=base)
    assert info.value.key == 'erp.ca_file'
    config = parse(_config(url='https://erp.example.com',
        ca_file='ca.pem'), base=base)
    assert config.erp.ca_file == pki['ca']
    for url in ('http://127.0.0.1:8000', 'http://localhost:8000',
            'http://[::1]:8000'):
        assert parse(_config(url=url)).erp.ca_file is None


# --- synced keys are append-only ------------------------------------------

def _key(signer, **extra):
    import base64
    return dict({'key_id': signer.key_id, 'public_key': base64.b64encode(
        signer.public_bytes()).decode()}, **extra)


def test_sync_cannot_replace_a_key(validator, synced_store, clock):
    from box_fakes import KEY, sign
    from scenic_common.ticketcode import SigningKey
    from scenic_iotbox.store import StoreError
    from scenic_iotbox.validator import ScanRequest
    code = sign(7001)
    forged = SigningKey.generate(KEY.key_id)
    before = synced_store.keys()
    for full in (False, True):
        with pytest.raises(StoreError, match='append-only'):
            synced_store.apply_sync({'watermark': 'x', 'full': full,
                'keys': [_key(forged)]}, clock())
    assert synced_store.keys() == before
    # a full sync without the key does not drop it either
    synced_store.apply_sync({'watermark': 'y', 'full': True, 'keys': [],
        'deleted': {'keys': [KEY.key_id]}}, clock())
    assert synced_store.keys() == before
    assert validator.scan(ScanRequest(gate='MAIN-IN', lane=1, medium='qr',
        data=code)).decision.reason != 'unknown_key'


def test_retired_only_by_signed_revocation(synced_store, clock):
    import base64
    from box_fakes import KEY
    from scenic_common.ticketcode import SigningKey
    from scenic_iotbox.store import StoreError
    # a bare flag does nothing
    synced_store.apply_sync({'watermark': 'a', 'keys': [
        _key(KEY, retired=True)]}, clock())
    assert synced_store.keys()[0][2] is False
    # a revocation signed by another key is refused
    other = SigningKey.generate(9)
    bad = base64.b64encode(other.sign(b'scenic-key-revocation:v1:1:'
        + KEY.public_bytes())).decode()
    with pytest.raises(StoreError, match='revocation'):
        synced_store.apply_sync({'watermark': 'b', 'keys': [
            _key(KEY, retired=True, revocation=bad)]}, clock())
    assert synced_store.keys()[0][2] is False
    good = base64.b64encode(KEY.revocation()).decode()
    synced_store.apply_sync({'watermark': 'c', 'keys': [
        _key(KEY, retired=True, revocation=good)]}, clock())
    assert synced_store.keys()[0][2] is True
    # and it stays retired
    synced_store.apply_sync({'watermark': 'd', 'full': True, 'keys': [
        _key(KEY, retired=False)]}, clock())
    assert synced_store.keys()[0][2] is True
