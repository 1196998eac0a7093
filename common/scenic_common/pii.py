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
import functools
import hashlib
import hmac
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import idnumber

__all__ = ['PIIError', 'PIIVault', 'MIN_KEY_LENGTH', 'PURPOSES',
    'DEMO_PII_KEY']

MIN_KEY_LENGTH = 32
_PREFIX = 'v1:'
_PREFIX_V2 = 'v2:'
_AAD = b'scenic-pii-v1'
_AAD_V2 = b'scenic-pii-v2:'
# what a value is; each has its own encryption key
PURPOSES = ('id', 'channel', 'signing')
# The demo's published key (config/trytond.conf): refused outside a
# configuration that says it is a demo ([scenic] demo = True).
DEMO_PII_KEY = 'demo-only-pii-key-change-me-0123456789abcdef'
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
    """Encrypts and hashes personal data with keys derived from secrets.

    One sub-key per purpose (``PURPOSES``: ID numbers, channel API keys,
    private signing keys) and one for look-up hashes, all derived (HKDF)
    and independent: leaking the look-up key (which the gate box may hold)
    does not allow decryption, nor does one purpose's key open another's
    values.  Rotation: ``previous`` master keys still decrypt; new values
    are encrypted with the current one; ``is_current`` tells what
    ``scripts/rekey_pii.py`` must re-encrypt.  The look-up key is derived
    from ``lookup_master`` (default: the master key) so that rotating the
    encryption key keeps the per-ID rules and the boxes' hashes.

    Tokens: ``v2:`` + base64url(nonce + ciphertext + tag) with the purpose
    in the AAD; ``v1:`` tokens (one key for everything, before purposes)
    still decrypt, with any purpose, until re-encrypted.
    """

    __slots__ = ('_masters', '_lookup_key', '_code_key', '_gate_key')

    def __init__(self, master_key, previous=(), lookup_master=None):
        masters = [_master_bytes(master_key)]
        masters += [_master_bytes(k) for k in previous if k]
        self._masters = tuple(masters)
        lookup = _master_bytes(lookup_master) if lookup_master \
            else masters[0]
        self._lookup_key = _derive(lookup, b'scenic-pii lookup-hash v1')
        # never leaves the ERP (boxes get only the look-up key)
        self._code_key = _derive(lookup, b'scenic-pii code-holder v1')
        # never leaves the ERP: the areas' gate peppers are derived from it
        self._gate_key = _derive(lookup, b'scenic-gate secret v1')

    def __repr__(self):
        return '<PIIVault (keys hidden)>'

    def __reduce__(self):
        # Keep keys out of pickles, caches and crash dumps.
        raise TypeError('PIIVault cannot be pickled')

    @staticmethod
    def _purpose(purpose):
        if purpose not in PURPOSES:
            raise ValueError(f'purpose must be one of {", ".join(PURPOSES)}')
        return purpose.encode()

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _aead_for(master, version, purpose):
        if version == 1:
            return AESGCM(_derive(master, b'scenic-pii encryption v1'))
        return AESGCM(_derive(master, b'scenic-pii encryption v2 '
                + purpose))

    def encrypt(self, plaintext, purpose='id'):
        """Random nonce: the same number encrypts differently every time."""
        if not isinstance(plaintext, str):
            raise TypeError('only str can be encrypted')
        purpose = self._purpose(purpose)
        nonce = os.urandom(_NONCE_SIZE)
        ciphertext = self._aead_for(self._masters[0], 2, purpose).encrypt(
            nonce, plaintext.encode('utf-8'), _AAD_V2 + purpose)
        return _PREFIX_V2 + base64.urlsafe_b64encode(
            nonce + ciphertext).decode('ascii')

    def _open(self, token, purpose, masters):
        if not isinstance(token, str) or not token.startswith(
                (_PREFIX, _PREFIX_V2)):
            raise PIIError(
                'Malformed encrypted value: missing the "v1:"/"v2:" prefix.')
        version = 2 if token.startswith(_PREFIX_V2) else 1
        body = token[3:]
        if not _B64URL_RE.fullmatch(body):
            raise PIIError('Malformed encrypted value: not base64url.')
        try:
            raw = base64.urlsafe_b64decode(body)
        except (binascii.Error, ValueError):
            raise PIIError(
                'Malformed encrypted value: bad base64 padding.') from None
        if len(raw) < _NONCE_SIZE + _TAG_SIZE:
            raise PIIError('Malformed encrypted value: too short.')
        purpose = self._purpose(purpose)
        aad = _AAD if version == 1 else _AAD_V2 + purpose
        for master in masters:
            try:
                data = self._aead_for(master, version, purpose).decrypt(
                    raw[:_NONCE_SIZE], raw[_NONCE_SIZE:], aad)
            except InvalidTag:
                continue
            try:
                return data.decode('utf-8')
            except UnicodeDecodeError:
                raise PIIError('Decrypted value is not UTF-8 text.') \
                    from None
        raise PIIError(
            'Cannot decrypt: wrong key, or the value was altered.')

    def decrypt(self, token, purpose='id'):
        return self._open(token, purpose, self._masters)

    def is_current(self, token, purpose='id'):
        """Is ``token`` a v2 token of this purpose under the current key
        (nothing to re-encrypt)?"""
        if not isinstance(token, str) or not token.startswith(_PREFIX_V2):
            return False
        try:
            self._open(token, purpose, self._masters[:1])
        except PIIError:
            return False
        return True

    def reencrypt(self, token, purpose='id'):
        "``token`` under the current key (decrypted with any known key)."
        if self.is_current(token, purpose):
            return token
        return self.encrypt(self.decrypt(token, purpose), purpose)

    def _mac(self, id_type, number):
        return keyed_mac(self._lookup_key, id_type, number)

    def lookup_key(self):
        """The raw key of the look-up hashes, for gate boxes: with it they
        match ID cards to tickets; it cannot decrypt anything."""
        return self._lookup_key

    def gate_secret(self):
        """The ERP-only secret the areas' gate-hash peppers are derived
        from (``scenic_common.protocol.gate_pepper``)."""
        return self._gate_key

    def lookup_hash(self, id_type, number):
        """Same document, same hash: usable in a UNIQUE constraint."""
        return self._mac(id_type, number).hex()

    def code_holder_hash(self, lookup_hash_hex, size=8):
        """The holder hash a ticket code carries: a MAC of the look-up
        hash under a key only the ERP holds, so that a photographed code
        plus a gate box's look-up key cannot test candidate ID numbers
        (iot-box/PROTOCOL.md, threat model). Boxes only read whether it
        is there (a real-name ticket)."""
        return hmac.new(self._code_key, bytes.fromhex(lookup_hash_hex),
            hashlib.sha256).digest()[:size]

    def short_hash(self, id_type, number, size=8):
        """Truncated look-up hash, small enough to fit in a ticket code."""
        if not 1 <= size <= 32:
            raise ValueError('size must be between 1 and 32')
        return self._mac(id_type, number)[:size]
