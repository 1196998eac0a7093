"""Request signing of the partner API (and of the notices sent to partners).

Each request carries four headers:

- ``X-Scenic-Key``: the partner's key id;
- ``X-Scenic-Timestamp``: Unix seconds;
- ``X-Scenic-Nonce``: 8–64 characters of ``[A-Za-z0-9._~-]``, never reused
  within the time window;
- ``X-Scenic-Signature``: lowercase hex HMAC-SHA256(secret, canonical).

The canonical text is six lines joined by ``\\n``: the method in upper case,
the full request path as sent, the query string exactly as sent without
``?`` (empty if none), the timestamp, the nonce, and the lowercase hex
SHA-256 of the raw body (of the empty string when there is no body).

Pure Python: the ERP checks requests and signs notices with it, the
simulated partner, the benchmark and partners' own code sign with it.
"""
import hashlib
import hmac
import re
import secrets
import time

KEY_HEADER = 'X-Scenic-Key'
TIMESTAMP_HEADER = 'X-Scenic-Timestamp'
NONCE_HEADER = 'X-Scenic-Nonce'
SIGNATURE_HEADER = 'X-Scenic-Signature'
WINDOW = 300  # seconds either side of the server's clock
NONCE_RE = re.compile(r'^[A-Za-z0-9._~-]{8,64}$')
TIMESTAMP_RE = re.compile(r'^[0-9]{1,12}$')
SIGNATURE_RE = re.compile(r'^[0-9a-f]{64}$')
KEY_RE = re.compile(r'^[A-Za-z0-9._-]{1,64}$')


class SignatureError(Exception):
    """A refused request: `code` is stale_request, replayed_nonce or
    bad_signature (all answered 401)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def body_digest(body):
    if isinstance(body, str):
        body = body.encode()
    return hashlib.sha256(body or b'').hexdigest()


def canonical(method, path, query, timestamp, nonce, body):
    "The text that is signed, as bytes."
    return '\n'.join([
            method.upper(), path, query or '', str(timestamp), nonce,
            body_digest(body)]).encode()


def sign(secret, method, path, query, timestamp, nonce, body):
    if isinstance(secret, str):
        secret = secret.encode()
    return hmac.new(
        secret, canonical(method, path, query, timestamp, nonce, body),
        hashlib.sha256).hexdigest()


def new_nonce():
    return secrets.token_urlsafe(18)


def signed_headers(key_id, secret, method, path, query='', body=b'',
        timestamp=None, nonce=None):
    "The four headers of a signed request."
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    nonce = nonce or new_nonce()
    return {
        KEY_HEADER: key_id,
        TIMESTAMP_HEADER: str(timestamp),
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign(
            secret, method, path, query, timestamp, nonce, body),
        }


def parse_headers(headers):
    """(key id, timestamp, nonce, signature) from a request's headers.

    Missing or malformed headers are a bad signature: the request cannot
    have been signed as the contract says.
    """
    key = (headers.get(KEY_HEADER) or '').strip()
    timestamp = (headers.get(TIMESTAMP_HEADER) or '').strip()
    nonce = (headers.get(NONCE_HEADER) or '').strip()
    signature = (headers.get(SIGNATURE_HEADER) or '').strip()
    if not (key and timestamp and nonce and signature):
        raise SignatureError('bad_signature',
            f"Sign the request: send {KEY_HEADER}, {TIMESTAMP_HEADER}, "
            f"{NONCE_HEADER} and {SIGNATURE_HEADER}.")
    if not KEY_RE.match(key):
        raise SignatureError('bad_signature', "Unknown key.")
    if not TIMESTAMP_RE.match(timestamp):
        raise SignatureError('bad_signature',
            f"{TIMESTAMP_HEADER} must be Unix seconds.")
    if not NONCE_RE.match(nonce):
        raise SignatureError('bad_signature',
            f"{NONCE_HEADER} must be 8 to 64 characters of "
            "A-Z a-z 0-9 . _ ~ -.")
    if not SIGNATURE_RE.match(signature):
        raise SignatureError('bad_signature',
            f"{SIGNATURE_HEADER} must be 64 lowercase hex digits.")
    return key, int(timestamp), nonce, signature


def check_timestamp(timestamp, now=None, window=WINDOW):
    now = time.time() if now is None else now
    if abs(now - timestamp) > window:
        raise SignatureError('stale_request',
            f"The timestamp is more than {window} s away from the server's "
            "clock; sign the request again with the current time.")


def verify(secrets_, method, path, query, timestamp, nonce, body,
        signature):
    """Whether one of the secrets (the current one and, while a rotation
    overlaps, the previous one) signed the request. Every secret is tried
    in constant time."""
    ok = False
    for secret in secrets_:
        expected = sign(secret, method, path, query, timestamp, nonce, body)
        ok |= hmac.compare_digest(expected, signature)
    return ok
