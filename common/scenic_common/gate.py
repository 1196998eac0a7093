"""The gate decision: may this credential pass this gate now?

One pure function, two callers: the IoT box decides offline from the data
it synced, and the ERP re-checks uploaded scans and serves handhelds with
the same code.  No I/O, no clock: ``now`` is passed in (timezone-aware),
so the same inputs always give the same :class:`Decision`.

Credentials
    - a scanned ticket code, already checked by
      :func:`scenic_common.ticketcode.verify` (its ``Verification``);
    - a card (:class:`CardInfo`, or ``None`` when the UID is unknown).

The checks, in this order (the first that fails gives the reason, like
pretix's check-in: first "is this credential genuine", then "is it for this
place", then "for this time", then "how often", then "is there room")::

    1. credential
       ticket: the codec's refusals, passed through unchanged:
               malformed, unknown_key, retired_key, invalid_signature,
               wrong_area, revoked.  (The codec's not_yet_valid/expired
               are re-judged in step 4 with the rule's tolerances: the
               codec checks time last, so such a code is genuine, of this
               area and not revoked.)
               unknown_ticket: the code's ticket type is not known here.
       card:   unknown_card, card_lost, card_replaced, card_suspended.
    2. wrong_gate   the gate is inactive, does not serve this direction,
                    or does not admit this ticket type.
    3. wrong_zone   the gate's zone is not among the type's zones
                    (no zones on the type = every zone).
    -- entries only from here, except 6 (anti-passback), which also
       applies to exits --
    4. time         not_yet_valid before valid_from - early_minutes,
                    expired from valid_until + late_minutes.
    5. entries      already_used when all entries are used (entries 0 =
                    unlimited); reentry_not_allowed for a single-entry
                    ticket used once whose holder went out (an exit was
                    recorded); card_exhausted for a count card at 0.
    6. passback     (rule.anti_passback) an entry while the usage says
                    inside, an exit while it says outside.
    7. too_soon     less than min_interval_minutes since the last entry.
    8. binding      re-entry tickets (entries > 1 or unlimited) whose type
                    binds the holder (id_card, photo, fingerprint, face):
                    the first entry opens with ``needs_binding`` (the caller
                    captures the binding); every later entry (or any entry
                    once a binding is on record, e.g. a card's photo taken
                    when it was sold) needs
                    ``binding_ok`` True: binding_required when None (the
                    caller compares, then asks again), binding_mismatch
                    when False.  Checked after 4-7 so nobody is asked for a
                    face only to be refused for another reason.
    9. capacity     capacity_full when zone.inside + persons >
                    zone.instant_max (entries only: exits never fail for
                    capacity; a limit of None or 0 means no limit).
   10. ok           open for ``persons`` people (a group ticket of N opens
                    the turnstile N times).

Exits (``direction='out'``) check 1, 2, 3 and 6 only: a visitor whose
ticket expired while inside may always leave.

What the caller does with an open decision (the function only decides):
    - record the use: :func:`usage_after` gives the new :class:`Usage`
      (entries + 1, last entry/exit, inside);
    - count cards: decrement ``remaining`` by one per admitted entry (the
      caller's job: the card's ``remaining`` here is what is left *before*
      this entry; 0 gives card_exhausted);
    - zone headcount: :func:`zone_delta` (persons in, minus persons out when
      the rule counts exits);
    - ``needs_binding``: capture and keep the binding (photo, template, ID
      hash) and store its reference in ``Usage.binding_ref``.

Rule fields (:class:`AccessRule`):
    ``exit_counts``: exits of these tickets are scanned and counted: an exit
    takes the ticket's persons off the zone's headcount (:func:`zone_delta`).
    When False the zone's headcount is kept otherwise (e.g. turnstile
    counters at free exits); an exit scan still marks the ticket outside.
    Anti-passback needs exit scans to work: without them a ticket stays
    "inside" after its first entry.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from . import ticketcode
from .protocol import BOTH, IN, OUT, record_use

__all__ = [
    'GateInfo', 'AccessRule', 'TicketTypeInfo', 'Usage', 'CardInfo',
    'ZoneLoad', 'Decision', 'decide', 'decide_ticket', 'decide_card',
    'usage_after', 'zone_delta', 'REASONS', 'DIRECTIONS', 'BINDINGS',
    'CARD_STATES', 'OPEN', 'DENY', 'IN', 'OUT', 'BOTH',
    'OK', 'MALFORMED', 'UNKNOWN_KEY', 'RETIRED_KEY', 'INVALID_SIGNATURE',
    'UNKNOWN_TICKET', 'REVOKED', 'NOT_YET_VALID', 'EXPIRED', 'WRONG_AREA',
    'WRONG_ZONE', 'WRONG_GATE', 'ALREADY_USED', 'REENTRY_NOT_ALLOWED',
    'BINDING_REQUIRED', 'BINDING_MISMATCH', 'PASSBACK', 'TOO_SOON',
    'CAPACITY_FULL', 'CARD_SUSPENDED', 'CARD_LOST', 'CARD_REPLACED',
    'CARD_EXHAUSTED', 'UNKNOWN_CARD', 'NO_TICKET_TODAY',
]

# Stable reason codes (PROTOCOL.md).  The codec's are the same strings.
OK = ticketcode.OK
MALFORMED = ticketcode.MALFORMED
UNKNOWN_KEY = ticketcode.UNKNOWN_KEY
RETIRED_KEY = ticketcode.RETIRED_KEY
INVALID_SIGNATURE = ticketcode.INVALID_SIGNATURE
WRONG_AREA = ticketcode.WRONG_AREA
REVOKED = ticketcode.REVOKED
NOT_YET_VALID = ticketcode.NOT_YET_VALID
EXPIRED = ticketcode.EXPIRED
UNKNOWN_TICKET = 'unknown_ticket'
WRONG_ZONE = 'wrong_zone'
WRONG_GATE = 'wrong_gate'
ALREADY_USED = 'already_used'
REENTRY_NOT_ALLOWED = 'reentry_not_allowed'
BINDING_REQUIRED = 'binding_required'
BINDING_MISMATCH = 'binding_mismatch'
PASSBACK = 'passback'
TOO_SOON = 'too_soon'
CAPACITY_FULL = 'capacity_full'
CARD_SUSPENDED = 'card_suspended'
CARD_LOST = 'card_lost'
CARD_REPLACED = 'card_replaced'
CARD_EXHAUSTED = 'card_exhausted'
UNKNOWN_CARD = 'unknown_card'
NO_TICKET_TODAY = 'no_ticket_today'   # the box's "ID card as ticket" path

REASONS = (
    OK, INVALID_SIGNATURE, MALFORMED, UNKNOWN_KEY, RETIRED_KEY,
    UNKNOWN_TICKET, REVOKED, NOT_YET_VALID, EXPIRED, WRONG_AREA, WRONG_ZONE,
    WRONG_GATE, ALREADY_USED, REENTRY_NOT_ALLOWED, BINDING_REQUIRED,
    BINDING_MISMATCH, PASSBACK, TOO_SOON, CAPACITY_FULL, CARD_SUSPENDED,
    CARD_LOST, CARD_REPLACED, CARD_EXHAUSTED, UNKNOWN_CARD, NO_TICKET_TODAY)

OPEN = 'open'
DENY = 'deny'
DIRECTIONS = (IN, OUT)
GATE_DIRECTIONS = (IN, OUT, BOTH)
BINDINGS = ('none', 'id_card', 'photo', 'fingerprint', 'face')
CARD_STATES = ('active', 'suspended', 'lost', 'replaced')
_CARD_STATE_REASONS = {
    'suspended': CARD_SUSPENDED, 'lost': CARD_LOST,
    'replaced': CARD_REPLACED}

# Codec reasons that mean "genuine, but outside its validity": re-judged
# here with the rule's tolerances.
_TIME_REASONS = (NOT_YET_VALID, EXPIRED)


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f'{name} must be one of {", ".join(allowed)}, '
            f'not {value!r}')


def _aware(name, value, optional=True):
    if value is None and optional:
        return
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f'{name} must be a timezone-aware datetime')


def _count(name, value, low=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f'{name} must be an int >= {low}')


@dataclass(frozen=True)
class GateInfo:
    """A gate: ``ticket_types`` it admits (empty = all), its zone and the
    direction it serves (a 'both' gate takes the scan's direction)."""

    id: int
    zone: int | None = None
    direction: str = BOTH
    ticket_types: frozenset = frozenset()
    active: bool = True
    code: str = ''

    def __post_init__(self):
        _choice('direction', self.direction, GATE_DIRECTIONS)
        object.__setattr__(self, 'ticket_types', frozenset(self.ticket_types))


@dataclass(frozen=True)
class AccessRule:
    """How a ticket type is let in (see the module docstring)."""

    id: int | None = None
    early_minutes: int = 0
    late_minutes: int = 0
    min_interval_minutes: int = 0
    anti_passback: bool = False
    exit_counts: bool = False

    def __post_init__(self):
        _count('early_minutes', self.early_minutes)
        _count('late_minutes', self.late_minutes)
        _count('min_interval_minutes', self.min_interval_minutes)


DEFAULT_RULE = AccessRule()


@dataclass(frozen=True)
class TicketTypeInfo:
    """``entries`` 0 = unlimited within validity; ``zones`` empty = all;
    ``binding`` how a re-entry ticket is bound to its holder."""

    id: int
    zones: frozenset = frozenset()
    persons: int = 1
    entries: int = 1
    binding: str = 'none'
    rule: int | None = None
    code: str = ''

    def __post_init__(self):
        _count('persons', self.persons, 1)
        _count('entries', self.entries)
        _choice('binding', self.binding, BINDINGS)
        object.__setattr__(self, 'zones', frozenset(self.zones))


@dataclass(frozen=True)
class Usage:
    """What is known of a ticket's or card's past use."""

    entries: int = 0
    last_entry_at: datetime | None = None
    last_exit_at: datetime | None = None
    inside: bool = False
    binding_ref: str | None = None

    def __post_init__(self):
        _count('entries', self.entries)
        _aware('last_entry_at', self.last_entry_at)
        _aware('last_exit_at', self.last_exit_at)


NO_USAGE = Usage()


@dataclass(frozen=True)
class CardInfo:
    """A card (annual, season, count, VIP).  ``remaining`` is the count
    card's balance before this entry (None = not a count card)."""

    uid: str
    id: int
    ticket_type: int
    state: str = 'active'
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    remaining: int | None = None
    holder_hash: str | None = None

    def __post_init__(self):
        _choice('state', self.state, CARD_STATES)
        _aware('valid_from', self.valid_from)
        _aware('valid_until', self.valid_until)
        if self.remaining is not None:
            if isinstance(self.remaining, bool) or not isinstance(
                    self.remaining, int):
                raise ValueError('remaining must be an int or None')


@dataclass(frozen=True)
class ZoneLoad:
    """People inside a zone now, and its instantaneous maximum (None or 0:
    no limit)."""

    inside: int = 0
    instant_max: int | None = None
    id: int | None = None


@dataclass(frozen=True)
class Decision:
    action: str                  # 'open' | 'deny'
    reason: str                  # one of REASONS
    persons: int = 0             # passages to open (0 when denied)
    ticket: int | None = None
    card: int | None = None
    ticket_type: int | None = None
    direction: str = IN
    needs_binding: bool = False  # first entry of a bound ticket: capture it
    binding_check: str | None = None  # method to check at this re-entry
    message: str = ''

    @property
    def opened(self):
        return self.action == OPEN


def _fmt(moment):
    return moment.isoformat(timespec='minutes')


class _Subject:
    "What the checks need, whatever the credential."
    __slots__ = ('ticket', 'card', 'type_id', 'persons', 'entries',
        'valid_from', 'valid_until', 'remaining', 'label')

    def __init__(self, **values):
        for name in self.__slots__:
            setattr(self, name, values.get(name))


def _check_now(now):
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise ValueError('now must be a timezone-aware datetime')


def _decide(subject, ticket_type, gate, rule, usage, zone, direction, now,
        binding_ok):
    """Steps 2 to 10 for a genuine credential."""
    rule = rule or DEFAULT_RULE
    usage = usage or NO_USAGE
    persons = subject.persons

    def deny(reason, message, binding_check=None):
        return Decision(DENY, reason, 0, subject.ticket, subject.card,
            subject.type_id, direction, False, binding_check, message)

    # 2. gate
    if not gate.active:
        return deny(WRONG_GATE, f'Gate {gate.code or gate.id} is closed.')
    if gate.direction != BOTH and gate.direction != direction:
        return deny(WRONG_GATE, f'Gate {gate.code or gate.id} is '
            f'{"an entry" if gate.direction == IN else "an exit"} gate.')
    if gate.ticket_types and subject.type_id not in gate.ticket_types:
        return deny(WRONG_GATE, f'{subject.label} is not admitted at gate '
            f'{gate.code or gate.id}.')
    # 3. zone
    if (ticket_type.zones and gate.zone is not None
            and gate.zone not in ticket_type.zones):
        return deny(WRONG_ZONE, f'{subject.label} is not valid for this '
            'zone.')

    if direction == OUT:
        # 6. passback on exits
        if rule.anti_passback and not usage.inside:
            return deny(PASSBACK, f'{subject.label} has not entered: it '
                'cannot exit (anti-passback).')
        return Decision(OPEN, OK, persons, subject.ticket, subject.card,
            subject.type_id, direction, False, None,
            f'Exit for {persons} person(s).')

    # 4. time window, with the rule's tolerances
    early = timedelta(minutes=rule.early_minutes)
    late = timedelta(minutes=rule.late_minutes)
    if subject.valid_from is not None and now < subject.valid_from - early:
        return deny(NOT_YET_VALID, f'{subject.label} is not valid before '
            f'{_fmt(subject.valid_from - early)}.')
    if subject.valid_until is not None and now >= subject.valid_until + late:
        return deny(EXPIRED, f'{subject.label} expired at '
            f'{_fmt(subject.valid_until + late)}.')
    # 5. entries
    if subject.remaining is not None and subject.remaining <= 0:
        return deny(CARD_EXHAUSTED, f'{subject.label} has no entries left.')
    if subject.entries and usage.entries >= subject.entries:
        if subject.entries == 1 and usage.last_exit_at is not None:
            return deny(REENTRY_NOT_ALLOWED, f'{subject.label} was used '
                'and its holder went out: it does not allow re-entry.')
        return deny(ALREADY_USED, f'{subject.label} has already been used '
            f'({usage.entries} of {subject.entries} entries).')
    # 6. passback
    if rule.anti_passback and usage.inside:
        return deny(PASSBACK, f'{subject.label} is already inside '
            '(anti-passback).')
    # 7. interval
    if rule.min_interval_minutes and usage.last_entry_at is not None:
        ready = usage.last_entry_at + timedelta(
            minutes=rule.min_interval_minutes)
        if now < ready:
            return deny(TOO_SOON, f'{subject.label} may enter again from '
                f'{_fmt(ready)}.')
    # 8. binding
    needs_binding = False
    binding_check = None
    if ticket_type.binding != 'none' and subject.entries != 1:
        if usage.entries == 0 and usage.binding_ref is None:
            needs_binding = True
        else:
            binding_check = ticket_type.binding
            if binding_ok is None:
                return deny(BINDING_REQUIRED, f'Re-entry: check the '
                    f'holder ({ticket_type.binding}).', binding_check)
            if not binding_ok:
                return deny(BINDING_MISMATCH, 'Re-entry refused: the '
                    f'holder does not match ({ticket_type.binding}).',
                    binding_check)
    # 9. capacity
    if zone is not None and zone.instant_max:
        if zone.inside + persons > zone.instant_max:
            return deny(CAPACITY_FULL, f'The zone is full ({zone.inside} '
                f'of {zone.instant_max} inside).')
    # 10. open
    return Decision(OPEN, OK, persons, subject.ticket, subject.card,
        subject.type_id, direction, needs_binding, binding_check,
        f'Welcome: {persons} person(s).')


def _direction(direction):
    _choice('direction', direction, DIRECTIONS)


def decide_ticket(verification, ticket_type, gate, rule=None, usage=None,
        zone=None, direction=IN, now=None, binding_ok=None):
    """Decide on a scanned code (``verification`` from ticketcode.verify).

    ``ticket_type`` is the code's type as synced (None when unknown: the
    code is refused with unknown_ticket); ``usage`` None = never used;
    ``zone`` None = no capacity check; ``binding_ok`` the result of the
    caller's comparison with the bound holder (None = not compared).
    Raises only for programming errors (naive ``now``, bad direction).
    """
    _check_now(now)
    _direction(direction)
    payload = verification.payload
    ticket_id = payload.ticket_id if payload is not None else None
    type_id = payload.ticket_type_id if payload is not None else None

    def deny(reason, message):
        return Decision(DENY, reason, 0, ticket_id, None, type_id,
            direction, False, None, message)

    # 1. credential: the codec's refusals, except time, pass unchanged
    if not verification.ok and (verification.reason not in _TIME_REASONS
            or payload is None):
        return deny(verification.reason, verification.message)
    if ticket_type is None or ticket_type.id != payload.ticket_type_id:
        return deny(UNKNOWN_TICKET, f'Ticket type {payload.ticket_type_id} '
            'is unknown here: the gate data may be out of date.')
    subject = _Subject(ticket=payload.ticket_id, card=None,
        type_id=payload.ticket_type_id, persons=payload.persons,
        entries=payload.entries, valid_from=payload.valid_from,
        valid_until=payload.valid_until, remaining=None,
        label=f'Ticket {payload.ticket_id}')
    return _decide(subject, ticket_type, gate, rule, usage, zone, direction,
        now, binding_ok)


def decide_card(card, ticket_type, gate, rule=None, usage=None, zone=None,
        direction=IN, now=None, binding_ok=None):
    """Decide on a card read by UID (``card`` None = unknown UID).

    Persons and entries come from the card's ticket type; ``card.remaining``
    (count cards) is the balance before this entry: the caller decrements
    it after an open entry.
    """
    _check_now(now)
    _direction(direction)
    if card is None:
        return Decision(DENY, UNKNOWN_CARD, 0, None, None, None, direction,
            False, None, 'Unknown card.')

    def deny(reason, message):
        return Decision(DENY, reason, 0, None, card.id, card.ticket_type,
            direction, False, None, message)

    if card.state in _CARD_STATE_REASONS:
        return deny(_CARD_STATE_REASONS[card.state],
            f'Card {card.id} is {card.state}.')
    if ticket_type is None or ticket_type.id != card.ticket_type:
        return deny(UNKNOWN_TICKET, f'Card type {card.ticket_type} is '
            'unknown here: the gate data may be out of date.')
    subject = _Subject(ticket=None, card=card.id, type_id=card.ticket_type,
        persons=ticket_type.persons, entries=ticket_type.entries,
        valid_from=card.valid_from, valid_until=card.valid_until,
        remaining=card.remaining, label=f'Card {card.id}')
    return _decide(subject, ticket_type, gate, rule, usage, zone, direction,
        now, binding_ok)


def decide(credential, ticket_type, gate, rule=None, usage=None, zone=None,
        direction=IN, now=None, binding_ok=None):
    """PROTOCOL.md's ``decide``: a Verification goes to decide_ticket,
    a CardInfo (or None, an unknown UID) to decide_card."""
    if isinstance(credential, ticketcode.Verification):
        function = decide_ticket
    else:
        function = decide_card
    return function(credential, ticket_type, gate, rule, usage, zone,
        direction, now, binding_ok)


def usage_after(usage, decision, now, binding_ref=None):
    """The usage after an open ``decision`` (unchanged after a denial), as
    :func:`scenic_common.protocol.record_use` counts it: an entry counts
    one entry, sets last_entry_at and inside; an exit sets last_exit_at and
    clears inside.  ``binding_ref`` (the binding captured at a first entry)
    is kept when given.
    """
    usage = usage or NO_USAGE
    if not decision.opened:
        return usage
    return record_use(usage, decision.direction, now, binding_ref)


def zone_delta(decision, rule=None):
    """Change of the zone's headcount after ``decision``: +persons for an
    admitted entry, -persons for an exit when the rule counts exits."""
    rule = rule or DEFAULT_RULE
    if not decision.opened:
        return 0
    if decision.direction == IN:
        return decision.persons
    return -decision.persons if rule.exit_counts else 0
