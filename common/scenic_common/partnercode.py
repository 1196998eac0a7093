"""Codes a partner (an OTA) issues for its tickets instead of Scenic's
signed codes: their format rule, their gate hash and the credential the
gate decision takes for them.

One module, three callers: the partner API checks a code's format when the
partner pays, the ERP derives the hash boxes match with (a cron, off the
booking path), and the box hashes a scanned string to look it up.

The box holds no code, only its hash: scrypt of ``scenic-partner-code:v1:``
plus the code, salted with the area's gate-hash pepper of the current
generation (the same pepper and cost as ID numbers' gate hashes,
``protocol.gate_hash``). A copied store then costs whoever tries to recover
codes from it about 40 ms of CPU per candidate string, and the contract's
format rule keeps the candidates many (``MIN_LENGTH`` characters at
least).

Pure Python: no Tryton, no clock.
"""
import hashlib
import string
from dataclasses import dataclass
from datetime import datetime

from . import ticketcode
from .protocol import GATE_LOG2_N, GATE_P, GATE_R

__all__ = ['CHARSETS', 'MIN_LENGTH', 'MAX_LENGTH', 'CodeFormat',
    'format_error', 'could_be_code', 'code_hash', 'PartnerTicket',
    'verification']

# The characters a code may use, by the name a contract gives.
CHARSETS = {
    'digits': frozenset(string.digits),
    'alnum': frozenset(string.ascii_letters + string.digits),
    'alnum_dash': frozenset(string.ascii_letters + string.digits + '-_.'),
    }
# Bounds of any contract's rule: a 6-digit code is the shortest an OTA
# prints; 64 fits every QR reader's line.
MIN_LENGTH = 6
MAX_LENGTH = 64
_ALL = frozenset().union(*CHARSETS.values())
_PREFIX = 'scenic-partner-code:v1:'


@dataclass(frozen=True)
class CodeFormat:
    "A contract's rule for its partner's codes."

    charset: str = 'alnum_dash'
    min_length: int = 8
    max_length: int = 32

    def __post_init__(self):
        if self.charset not in CHARSETS:
            raise ValueError(f'charset must be one of '
                f'{", ".join(CHARSETS)}, not {self.charset!r}')
        for name in ('min_length', 'max_length'):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int)
                    or not MIN_LENGTH <= value <= MAX_LENGTH):
                raise ValueError(f'{name} must be an int from {MIN_LENGTH} '
                    f'to {MAX_LENGTH}')
        if self.min_length > self.max_length:
            raise ValueError('min_length must not exceed max_length')


def format_error(code, rule):
    """Why ``code`` breaks ``rule`` (a CodeFormat), or None when it fits."""
    if not isinstance(code, str):
        return 'is not a string'
    if not rule.min_length <= len(code) <= rule.max_length:
        return (f'must be {rule.min_length} to {rule.max_length} '
            'characters long')
    allowed = CHARSETS[rule.charset]
    if any(c not in allowed for c in code):
        return f'may only hold {rule.charset} characters'
    return None


def could_be_code(text):
    """Whether a scanned string fits some contract's rule: anything else
    is refused without paying for a hash."""
    return (isinstance(text, str) and MIN_LENGTH <= len(text) <= MAX_LENGTH
        and all(c in _ALL for c in text))


def code_hash(pepper, code, log2_n=GATE_LOG2_N, r=GATE_R, p=GATE_P):
    """The gate hash of a partner's code (hex), under one generation's
    pepper: what boxes store and look a scanned string up with."""
    if not isinstance(pepper, bytes) or len(pepper) < 16:
        raise ValueError('the pepper must be raw bytes (32)')
    if not 10 <= int(log2_n) <= 20:
        raise ValueError('log2_n must be from 10 to 20')
    return hashlib.scrypt((_PREFIX + code).encode('utf-8'), salt=pepper,
        n=2 ** int(log2_n), r=int(r), p=int(p), maxmem=64 * 1024 * 1024,
        dklen=32).hex()


@dataclass(frozen=True)
class PartnerTicket:
    """What a box knows of a ticket whose code a partner issued: what a
    signed code's payload would carry."""

    ticket_id: int
    area_id: int
    ticket_type_id: int
    valid_from: datetime
    valid_until: datetime
    persons: int = 1
    entries: int = 1

    def payload(self):
        return ticketcode.TicketPayload(ticket_id=self.ticket_id,
            area_id=self.area_id, ticket_type_id=self.ticket_type_id,
            valid_from=self.valid_from, valid_until=self.valid_until,
            persons=self.persons, entries=self.entries)


def verification(ticket, revoked=frozenset(), area_id=None):
    """The credential ``gate.decide_ticket`` takes for a matched partner
    code: genuine by its match, so only the codec's other refusals apply
    (wrong area, revoked); validity and use are judged by the decision
    with the same rules as a signed code's."""
    payload = ticket.payload()
    if area_id is not None and payload.area_id != area_id:
        return ticketcode.Verification(False, ticketcode.WRONG_AREA, payload,
            f'Ticket {payload.ticket_id} is for another area.')
    if payload.ticket_id in revoked:
        return ticketcode.Verification(False, ticketcode.REVOKED, payload,
            f'Ticket {payload.ticket_id} has been revoked.')
    return ticketcode.Verification(True, ticketcode.OK, payload, '')
