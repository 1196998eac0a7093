"""Personal data at rest: identity numbers are encrypted, and looked up by
keyed hash.

PIPL requires us to protect ID numbers; the database holds only the
ciphertext (to show a masked number or to answer an authority's request) and
an HMAC (to enforce "one ticket per ID per day" and to find a visitor's
tickets) so a database dump alone reveals nothing.  Both keys are derived from
a single configured master key.
"""

import base64
import binascii
import hashlib
import hmac
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import idnumber

__all__ = ['PIIError', 'PIIVault', 'MIN_KEY_LENGTH']

MIN_KEY_LENGTH = 32
_PREFIX = 'v1:'
_AAD = b'scenic-pii-v1'
_NONCE_SIZE = 12
_TAG_SIZE = 16
_B64URL_RE = re.compile(r'[A-Za-z0-9_-]*={0,2}')


class PIIError(ValueError):
    """A token cannot be decrypted; the message never contains secrets."""


def _derive(master, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
        info=info).derive(master)


def _master_bytes(master_key):
    if not isinstance(master_key, str):
        raise ValueError('The PII master key must be a string.')
    if master_key.startswith('base64:'):
        try:
            raw = base64.b64decode(master_key[len('base64:'):],
                validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                'The PII master key after "base64:" is not valid '
                'base64.') from None
        if len(raw) < MIN_KEY_LENGTH:
            raise ValueError(
                f'The PII master key is too short: it must decode to at '
                f'least {MIN_KEY_LENGTH} bytes.')
        return raw
    if len(master_key) < MIN_KEY_LENGTH:
        raise ValueError(
            f'The PII master key is too short: it must have at least '
            f'{MIN_KEY_LENGTH} characters (or be "base64:" followed by at '
            f'least {MIN_KEY_LENGTH} base64-encoded bytes).')
    return master_key.encode('utf-8')


def keyed_mac(lookup_key, id_type, number):
    "HMAC-SHA256 of a normalized document: what look-up hashes are made of."
    message = f'{id_type}:{idnumber.normalize(id_type, number)}'
    return hmac.new(lookup_key, message.encode('utf-8'),
        hashlib.sha256).digest()


class PIIVault:
    """Encrypts and hashes personal data with keys derived from one secret.

    The two derived keys are independent: leaking the look-up key (which the
    gate box may hold) does not allow decryption.
    """

    __slots__ = ('_aead', '_lookup_key')

    def __init__(self, master_key):
        master = _master_bytes(master_key)
        self._aead = AESGCM(_derive(master, b'scenic-pii encryption v1'))
        self._lookup_key = _derive(master, b'scenic-pii lookup-hash v1')

    def __repr__(self):
        return '<PIIVault (keys hidden)>'

    def __reduce__(self):
        # Keep keys out of pickles, caches and crash dumps.
        raise TypeError('PIIVault cannot be pickled')

    def encrypt(self, plaintext):
        """Random nonce: the same number encrypts differently every time."""
        if not isinstance(plaintext, str):
            raise TypeError('only str can be encrypted')
        nonce = os.urandom(_NONCE_SIZE)
        ciphertext = self._aead.encrypt(
            nonce, plaintext.encode('utf-8'), _AAD)
        return _PREFIX + base64.urlsafe_b64encode(
            nonce + ciphertext).decode('ascii')

    def decrypt(self, token):
        if not isinstance(token, str) or not token.startswith(_PREFIX):
            raise PIIError(
                'Malformed encrypted value: missing the "v1:" prefix.')
        body = token[len(_PREFIX):]
        if not _B64URL_RE.fullmatch(body):
            raise PIIError('Malformed encrypted value: not base64url.')
        try:
            raw = base64.urlsafe_b64decode(body)
        except (binascii.Error, ValueError):
            raise PIIError(
                'Malformed encrypted value: bad base64 padding.') from None
        if len(raw) < _NONCE_SIZE + _TAG_SIZE:
            raise PIIError('Malformed encrypted value: too short.')
        try:
            data = self._aead.decrypt(
                raw[:_NONCE_SIZE], raw[_NONCE_SIZE:], _AAD)
        except InvalidTag:
            raise PIIError(
                'Cannot decrypt: wrong key, or the value was altered.'
                ) from None
        try:
            return data.decode('utf-8')
        except UnicodeDecodeError:
            raise PIIError('Decrypted value is not UTF-8 text.') from None

    def _mac(self, id_type, number):
        return keyed_mac(self._lookup_key, id_type, number)

    def lookup_key(self):
        """The raw key of the look-up hashes, for gate boxes: with it they
        match ID cards to tickets; it cannot decrypt anything."""
        return self._lookup_key

    def lookup_hash(self, id_type, number):
        """Same document, same hash: usable in a UNIQUE constraint."""
        return self._mac(id_type, number).hex()

    def short_hash(self, id_type, number, size=8):
        """Truncated look-up hash, small enough to fit in a ticket code."""
        if not 1 <= size <= 32:
            raise ValueError('size must be between 1 and 32')
        return self._mac(id_type, number)[:size]
