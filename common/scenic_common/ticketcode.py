"""Signed e-ticket codes, verified offline by the gates.

Gates must keep working when the network is down, so a ticket's QR code
carries everything the gate needs, signed with Ed25519.  Gates hold only
public keys, so a stolen gate box cannot mint tickets.

Code text: ``SC1:`` followed by the Base45 (RFC 9285) encoding of::

    version        1 byte, = 1
    ticket_id      unsigned LEB128 varint, >= 1
    area_id        varint, >= 1
    ticket_type_id varint, >= 1
    valid_from     varint, unix seconds (UTC)
    duration       varint, valid_until - valid_from in seconds, >= 1
    persons        varint, 1..65535
    entries        varint, 0..65535 (0 = unlimited within validity)
    key_id         varint, 0..65535
    hash_length    1 byte, 0 or 8
    holder_hash    hash_length bytes (0 when the ticket is not real-name)
    signature      64 bytes, Ed25519 over all the bytes above

Varints must be minimal (no redundant 0x80 continuation bytes) so that each
payload has exactly one encoding.  The prefix and the Base45 alphabet are all
in the QR alphanumeric set, which keeps the QR symbol small.
"""

import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import segno
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey, Ed25519PublicKey)

from . import base45

__all__ = [
    'PREFIX', 'VERSION', 'MAX_CODE_LENGTH', 'TicketPayload', 'SigningKey',
    'Keyring', 'Verification', 'CodeError', 'encode', 'verify',
    'parse_unverified', 'revocation_message', 'qr_svg', 'qr_png_bytes',
    'OK', 'MALFORMED', 'UNKNOWN_KEY', 'RETIRED_KEY', 'INVALID_SIGNATURE',
    'WRONG_AREA', 'REVOKED', 'NOT_YET_VALID', 'EXPIRED',
]

PREFIX = 'SC1:'
VERSION = 1
MAX_CODE_LENGTH = 512
HOLDER_HASH_SIZE = 8
SIGNATURE_SIZE = 64

OK = 'ok'
MALFORMED = 'malformed'
UNKNOWN_KEY = 'unknown_key'
RETIRED_KEY = 'retired_key'
INVALID_SIGNATURE = 'invalid_signature'
WRONG_AREA = 'wrong_area'
REVOKED = 'revoked'
NOT_YET_VALID = 'not_yet_valid'
EXPIRED = 'expired'

_MAX_ID = 2**63 - 1             # fits a PostgreSQL BIGINT
_MAX_U16 = 0xFFFF
_MAX_VARINT_BYTES = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_TIMESTAMP = 253402300799   # 9999-12-31T23:59:59Z: datetime's limit


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'{name} must be an int')
    if not low <= value <= high:
        raise ValueError(f'{name} must be between {low} and {high}')


def _timestamp(name, value):
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f'{name} must be a timezone-aware datetime')
    if value.microsecond:
        raise ValueError(f'{name} must have whole seconds')
    seconds = (value - _EPOCH) // timedelta(seconds=1)
    if not 0 <= seconds <= _MAX_TIMESTAMP:
        raise ValueError(f'{name} is out of range')
    return seconds


@dataclass(frozen=True)
class TicketPayload:
    """What a gate needs to decide, without asking the server."""

    ticket_id: int
    area_id: int
    ticket_type_id: int
    valid_from: datetime
    valid_until: datetime
    persons: int = 1
    entries: int = 1
    key_id: int = 0
    holder_hash: bytes = b''

    def __post_init__(self):
        _check_int('ticket_id', self.ticket_id, 1, _MAX_ID)
        _check_int('area_id', self.area_id, 1, _MAX_ID)
        _check_int('ticket_type_id', self.ticket_type_id, 1, _MAX_ID)
        _check_int('persons', self.persons, 1, _MAX_U16)
        _check_int('entries', self.entries, 0, _MAX_U16)
        _check_int('key_id', self.key_id, 0, _MAX_U16)
        start = _timestamp('valid_from', self.valid_from)
        end = _timestamp('valid_until', self.valid_until)
        if end <= start:
            raise ValueError('valid_until must be after valid_from')
        if (not isinstance(self.holder_hash, bytes)
                or len(self.holder_hash) not in (0, HOLDER_HASH_SIZE)):
            raise ValueError(
                f'holder_hash must be 0 or {HOLDER_HASH_SIZE} bytes')


class CodeError(ValueError):
    """A code that cannot be parsed; ``reason`` is a stable code."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Verification:
    """The gate's verdict: ``reason`` drives the gate, ``message`` the
    operator's screen."""

    ok: bool
    reason: str
    payload: TicketPayload | None
    message: str


def revocation_message(key_id, public_bytes):
    "What a key signs to retire itself (bound to its id and its bytes)."
    return b'scenic-key-revocation:v1:%d:' % key_id + public_bytes


class SigningKey:
    """A private key, held by the ticketing server only."""

    __slots__ = ('key_id', '_private')

    def __init__(self, key_id, private_key):
        _check_int('key_id', key_id, 0, _MAX_U16)
        if not isinstance(private_key, Ed25519PrivateKey):
            raise ValueError('private_key must be an Ed25519PrivateKey')
        self.key_id = key_id
        self._private = private_key

    @classmethod
    def generate(cls, key_id):
        return cls(key_id, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, key_id, data):
        if not isinstance(data, bytes) or len(data) != 32:
            raise ValueError('an Ed25519 private key is 32 raw bytes')
        return cls(key_id, Ed25519PrivateKey.from_private_bytes(data))

    def private_bytes(self):
        return self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())

    def public_bytes(self):
        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def sign(self, data):
        return self._private.sign(data)

    def revocation(self):
        """This key's signed retirement: gates retire a key they trust
        only on this signature (a sync cannot retire or replace keys)."""
        return self.sign(revocation_message(self.key_id, self.public_bytes()))

    def __repr__(self):
        return f'<SigningKey key_id={self.key_id}>'

    def __reduce__(self):
        raise TypeError('SigningKey cannot be pickled')


class Keyring:
    """Public keys a gate trusts, by key id.

    Rotation: add the new key, start signing with it, and retire the old one
    once its tickets have expired; retired keys are kept so that their
    tickets are refused with a clear reason.
    """

    def __init__(self):
        self._keys = {}          # key_id -> (raw bytes, public key, retired)

    def add(self, key_id, public_bytes, retired=False):
        """Idempotent for the same key, so a sync can re-add everything;
        a different key under a known id is refused."""
        _check_int('key_id', key_id, 0, _MAX_U16)
        if not isinstance(public_bytes, bytes) or len(public_bytes) != 32:
            raise ValueError('an Ed25519 public key is 32 raw bytes')
        known = self._keys.get(key_id)
        if known is not None and known[0] != public_bytes:
            raise ValueError(f'key id {key_id} already holds another key')
        public = Ed25519PublicKey.from_public_bytes(public_bytes)
        self._keys[key_id] = (public_bytes, public, bool(retired))

    def retire(self, key_id):
        if key_id not in self._keys:
            raise KeyError(key_id)
        raw, public, _ = self._keys[key_id]
        self._keys[key_id] = (raw, public, True)

    def signature_ok(self, key_id, signature, data):
        """True when ``signature`` over ``data`` is by key ``key_id``
        (retired or not: the caller decides)."""
        try:
            self._keys[key_id][1].verify(signature, data)
        except Exception:
            return False
        return True

    def revocation_ok(self, key_id, signature):
        "Is ``signature`` key ``key_id``'s own signed retirement?"
        return key_id in self._keys and self.signature_ok(key_id, signature,
            revocation_message(key_id, self._keys[key_id][0]))

    def is_retired(self, key_id):
        return self._keys[key_id][2]

    def public_bytes(self, key_id):
        return self._keys[key_id][0]

    def __contains__(self, key_id):
        return key_id in self._keys

    def __iter__(self):
        return iter(sorted(self._keys))

    def __len__(self):
        return len(self._keys)

    def __repr__(self):
        active = [k for k in self if not self._keys[k][2]]
        return f'<Keyring keys={list(self)} active={active}>'


def _put_varint(out, value):
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def _body(payload):
    out = bytearray([VERSION])
    start = _timestamp('valid_from', payload.valid_from)
    end = _timestamp('valid_until', payload.valid_until)
    for value in (payload.ticket_id, payload.area_id, payload.ticket_type_id,
            start, end - start, payload.persons, payload.entries,
            payload.key_id):
        _put_varint(out, value)
    out.append(len(payload.holder_hash))
    out += payload.holder_hash
    return bytes(out)


def encode(payload, signing_key):
    """The text to put in the ticket's QR code."""
    if not isinstance(payload, TicketPayload):
        raise TypeError('payload must be a TicketPayload')
    if payload.key_id != signing_key.key_id:
        raise ValueError(
            f'payload.key_id ({payload.key_id}) differs from the signing '
            f'key id ({signing_key.key_id})')
    body = _body(payload)
    return PREFIX + base45.encode(body + signing_key.sign(body))


class _Reader:

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def byte(self, what):
        if self.pos >= len(self.data):
            raise CodeError(MALFORMED, f'Ticket code is truncated ({what}).')
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self, what):
        value = shift = 0
        for i in range(_MAX_VARINT_BYTES):
            b = self.byte(what)
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise CodeError(
                        MALFORMED, f'Ticket code has a non-minimal number '
                        f'({what}).')
                return value
        raise CodeError(MALFORMED, f'Ticket code has an over-long number '
            f'({what}).')

    def take(self, size, what):
        if len(self.data) - self.pos < size:
            raise CodeError(MALFORMED, f'Ticket code is truncated ({what}).')
        self.pos += size
        return self.data[self.pos - size:self.pos]


def _in_range(what, value, low, high):
    if not low <= value <= high:
        raise CodeError(MALFORMED, f'Ticket code has an invalid {what}.')
    return value


def _parse(code):
    """-> (payload, signed bytes, signature); raises only CodeError."""
    if not isinstance(code, str):
        raise CodeError(MALFORMED, 'Ticket code is not text.')
    code = code.rstrip('\r\n')      # keyboard-wedge scanners append these
    if len(code) > MAX_CODE_LENGTH:
        raise CodeError(MALFORMED, 'Ticket code is too long.')
    if not code.startswith(PREFIX):
        raise CodeError(MALFORMED, 'Not a Scenic ticket code.')
    try:
        data = base45.decode(code[len(PREFIX):])
    except ValueError:
        raise CodeError(
            MALFORMED, 'Ticket code is damaged (bad Base45).') from None
    reader = _Reader(data)
    version = reader.byte('version')
    if version != VERSION:
        raise CodeError(
            MALFORMED, f'Unsupported ticket code version {version}.')
    ticket_id = _in_range('ticket id', reader.varint('ticket id'), 1, _MAX_ID)
    area_id = _in_range('area id', reader.varint('area id'), 1, _MAX_ID)
    type_id = _in_range(
        'ticket type id', reader.varint('ticket type id'), 1, _MAX_ID)
    start = _in_range(
        'validity start', reader.varint('validity start'), 0, _MAX_TIMESTAMP)
    duration = _in_range('validity duration',
        reader.varint('validity duration'), 1, _MAX_TIMESTAMP - start)
    persons = _in_range(
        'number of persons', reader.varint('persons'), 1, _MAX_U16)
    entries = _in_range(
        'number of entries', reader.varint('entries'), 0, _MAX_U16)
    key_id = _in_range('key id', reader.varint('key id'), 0, _MAX_U16)
    hash_size = reader.byte('holder hash length')
    if hash_size not in (0, HOLDER_HASH_SIZE):
        raise CodeError(
            MALFORMED, 'Ticket code has an invalid holder hash length.')
    holder_hash = reader.take(hash_size, 'holder hash')
    signed = data[:reader.pos]
    signature = reader.take(SIGNATURE_SIZE, 'signature')
    if reader.pos != len(data):
        raise CodeError(MALFORMED, 'Ticket code has trailing data.')
    valid_from = _EPOCH + timedelta(seconds=start)
    payload = TicketPayload(
        ticket_id=ticket_id, area_id=area_id, ticket_type_id=type_id,
        valid_from=valid_from,
        valid_until=valid_from + timedelta(seconds=duration),
        persons=persons, entries=entries, key_id=key_id,
        holder_hash=bytes(holder_hash))
    return payload, signed, signature


def parse_unverified(code):
    """Decode without checking the signature: for diagnostics only, never
    to admit anybody."""
    return _parse(code)[0]


def _fmt(moment):
    return moment.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


def verify(code, keyring, now=None, revoked=frozenset(), area_id=None):
    """Decide on a scanned code.  Never raises for any scanned input: a gate
    must always answer.  Only a naive ``now`` (a programming error) raises.
    """
    if now is None:
        now = datetime.now(timezone.utc)
    elif not isinstance(now, datetime):
        raise TypeError('now must be a datetime')
    elif now.utcoffset() is None:
        raise ValueError('now must be a timezone-aware datetime')

    def refuse(reason, message, payload=None):
        return Verification(False, reason, payload, message)

    try:
        payload, signed, signature = _parse(code)
    except CodeError as error:
        return refuse(MALFORMED, error.message)
    except Exception:       # last line of defence: a gate must answer
        return refuse(MALFORMED, 'Ticket code is unreadable.')

    if payload.key_id not in keyring:
        return refuse(UNKNOWN_KEY, f'Ticket signed with unknown key '
            f'{payload.key_id}; the gate key list may be out of date.')
    if keyring.is_retired(payload.key_id):
        return refuse(RETIRED_KEY, f'Ticket signed with retired key '
            f'{payload.key_id}; it is no longer accepted.')
    if not keyring.signature_ok(payload.key_id, signature, signed):
        return refuse(INVALID_SIGNATURE,
            'Ticket signature is invalid: the code is forged or damaged.')

    if area_id is not None and payload.area_id != area_id:
        return refuse(WRONG_AREA, f'Ticket is for area {payload.area_id}, '
            f'not this area ({area_id}).', payload)
    if payload.ticket_id in revoked:
        return refuse(REVOKED, f'Ticket {payload.ticket_id} has been '
            'cancelled or refunded.', payload)
    if now < payload.valid_from:
        return refuse(NOT_YET_VALID, 'Ticket is not valid before '
            f'{_fmt(payload.valid_from)}.', payload)
    if now >= payload.valid_until:
        return refuse(EXPIRED, 'Ticket expired at '
            f'{_fmt(payload.valid_until)}.', payload)
    return Verification(True, OK, payload, f'Valid ticket '
        f'{payload.ticket_id} for {payload.persons} person(s).')


def _qr(code):
    # make_qr, not make: gate scanners may not read Micro QR.
    return segno.make_qr(code, error='m')


def qr_svg(code, scale=4):
    """A standalone SVG document: it renders as an <img> source or inline."""
    buffer = io.BytesIO()
    _qr(code).save(buffer, kind='svg', scale=scale, xmldecl=False,
        svgns=True, nl=False)
    return buffer.getvalue().decode()


def qr_png_bytes(code, scale=4):
    buffer = io.BytesIO()
    _qr(code).save(buffer, kind='png', scale=scale)
    return buffer.getvalue()
