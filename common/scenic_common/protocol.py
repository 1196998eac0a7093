"""The gate protocol's rules that the ERP and the box both apply.

iot-box/PROTOCOL.md describes the messages; this module holds what both
ends must compute the same way, so that an offline decision at the box and
the ERP's re-check of the uploaded scan agree:

- the protocol's constants: scan media, device kinds, the upload batch size;
- ``entries_for``: the entries a ticket type gives from its entry mode;
- ``rule_id_for``: which access rule applies to a scan (the gate's, else the
  ticket type's, else the area's default);
- ``record_use``: a ticket's or card's usage after an admitted scan, the
  same whatever order the scans arrive in (boxes upload late, retry, and
  several boxes serve one area);
- ``merge_usage``: the box's usage merged with the ERP's view at sync;
- ``candidate_hashes``: the look-up hashes of an ID number read at a gate,
  under every document type it is valid for;
- ``gate_pepper``, ``gate_hash``, ``parse_generations``: the slow, salted
  gate hashes of ID numbers (per area and generation) that boxes match
  ID cards with (iot-box/PROTOCOL.md, "Threat model").

Pure Python: no Tryton, no drivers, no clock.
"""
import base64
import hashlib
import hmac
from dataclasses import replace

from . import idnumber

__all__ = [
    'IN', 'OUT', 'BOTH', 'MEDIA', 'DEVICE_KINDS', 'PAPER_STATES',
    'DEVICE_ERROR_LENGTH', 'BATCH_SIZE',
    'ENTRY_MODES', 'entries_for', 'rule_id_for', 'record_use', 'merge_usage',
    'candidate_hashes', 'GATE_LOG2_N', 'gate_pepper', 'gate_hash',
    'parse_generations', 'generation_answer', 'gate_hashes']

# Directions of a scan; a gate may serve both.
IN = 'in'
OUT = 'out'
BOTH = 'both'

# How a scan reached the gate.
MEDIA = ('qr', 'id_card', 'rfid')
# What a box reports in its heartbeat.
DEVICE_KINDS = (
    'turnstile', 'qr_reader', 'id_reader', 'rfid_reader', 'camera', 'kiosk',
    'printer')
# A ticket printer's paper, as its heartbeat reports it.
PAPER_STATES = ('ok', 'low', 'out')
# The longest device error a heartbeat carries (the ERP's column).
DEVICE_ERROR_LENGTH = 200
# Scans in one upload (the ERP refuses more; the box sends at most this).
BATCH_SIZE = 1000
ENTRY_MODES = ('single', 'multiple', 'unlimited')


def entries_for(entry_mode, entries_allowed=None):
    """Entries a ticket of this entry mode gives: 0 means unlimited within
    validity; 'multiple' gives entries_allowed."""
    if entry_mode == 'single':
        return 1
    if entry_mode == 'unlimited':
        return 0
    return entries_allowed or 0


def rule_id_for(gate_rule, type_rule, default_rule, known=None):
    """The id of the access rule that applies: the gate's, else the ticket
    type's, else the area's default. ``known(rule_id)`` (optional) says
    whether a rule exists where it is looked up: a rule the reader does not
    have (not synced yet, deleted) is skipped."""
    for rule_id in (gate_rule, type_rule):
        if rule_id is not None and (known is None or known(rule_id)):
            return rule_id
    return default_rule


def _latest(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def record_use(usage, direction, at, binding_ref=None):
    """The usage (a :class:`scenic_common.gate.Usage`) after an admitted
    scan at ``at`` in ``direction``.

    Order-independent, as uploads arrive out of order: entries count up,
    the latest entry and the latest exit are kept, and whether the holder
    is inside follows from which of the two is later (an exit at the same
    instant as an entry wins). ``binding_ref`` is kept when none is known
    yet (only a first entry captures one).
    """
    last_entry, last_exit = usage.last_entry_at, usage.last_exit_at
    entries = usage.entries
    if direction == IN:
        entries += 1
        last_entry = _latest(last_entry, at)
    else:
        last_exit = _latest(last_exit, at)
    return replace(usage, entries=entries, last_entry_at=last_entry,
        last_exit_at=last_exit,
        inside=bool(last_entry and (not last_exit or last_entry > last_exit)),
        binding_ref=usage.binding_ref or binding_ref)


def merge_usage(local, erp, unseen_entries=0, local_known=True):
    """The box's usage (``local``) merged with the ERP's view (``erp``),
    both :class:`~scenic_common.gate.Usage`.

    ``unseen_entries``: entries of the box's scans the ERP has not counted
    yet. Entries are the larger of the box's and the ERP's plus those; the
    latest entry and exit are kept; inside comes from whichever side saw
    the latest event (the ERP's when the box knew nothing of it,
    ``local_known`` False); the box's binding reference wins.
    """
    local_last = _latest(local.last_entry_at, local.last_exit_at)
    erp_last = _latest(erp.last_entry_at, erp.last_exit_at)
    inside = local.inside
    if not local_known or (erp_last is not None and (
            local_last is None or erp_last > local_last)):
        inside = erp.inside
    return replace(local,
        entries=max(local.entries, erp.entries + unseen_entries),
        last_entry_at=_latest(local.last_entry_at, erp.last_entry_at),
        last_exit_at=_latest(local.last_exit_at, erp.last_exit_at),
        inside=inside, binding_ref=local.binding_ref or erp.binding_ref)


def candidate_hashes(lookup_hash, number, id_type=None):
    """Look-up hashes of an ID number: under ``id_type`` when the reader
    knows it, else under every document type the number is valid for.
    ``lookup_hash(id_type, normalized)`` is the keyed hash (the ERP's
    ``PIIVault.lookup_hash``, the box's with its look-up key). Invalid
    numbers give []."""
    types = (id_type,) if id_type else idnumber.ID_TYPES
    hashes = []
    for kind in types:
        try:
            normalized = idnumber.validate(kind, number)
        except (idnumber.InvalidIDNumber, TypeError):
            continue
        hashes.append(lookup_hash(kind, normalized))
    return hashes


# scrypt cost of a gate hash (N = 2**GATE_LOG2_N, r = 8, p = 1, 32 bytes):
# about 40 ms of CPU and 16 MiB per derivation, at the box (an ID-card
# scan) and at the ERP (one per holder, area and generation), and for
# whoever tests candidate ID numbers against a copied box store.
GATE_LOG2_N = 14
GATE_R = 8
GATE_P = 1
_GATE_MAXMEM = 64 * 1024 * 1024


def gate_pepper(gate_secret, area, generation):
    """An area's pepper for one generation (32 bytes): the scrypt salt of
    its gate hashes. ``gate_secret`` never leaves the ERP; one pepper says
    nothing about another area's or generation's."""
    return hmac.new(gate_secret,
        f'scenic-gate pepper v1 {int(area)} {int(generation)}'.encode(),
        hashlib.sha256).digest()


def gate_hash(pepper, id_type, number, log2_n=GATE_LOG2_N, r=GATE_R,
        p=GATE_P):
    """The gate hash of a document (hex): scrypt of "<type>:<normalised
    number>" salted with the generation's pepper."""
    if not isinstance(pepper, bytes) or len(pepper) < 16:
        raise ValueError('the pepper must be raw bytes (32)')
    if not 10 <= int(log2_n) <= 20:
        raise ValueError('log2_n must be from 10 to 20')
    message = f'{id_type}:{idnumber.normalize(id_type, number)}'
    return hashlib.scrypt(message.encode('utf-8'), salt=pepper,
        n=2 ** int(log2_n), r=int(r), p=int(p), maxmem=_GATE_MAXMEM,
        dklen=32).hex()


def generation_answer(gate_secret, area, generations):
    """What enrolment and sync send of an area's live generations
    (``[(generation, log2_n)]``, current first)."""
    return [{'generation': gen, 'log2_n': log2_n, 'r': GATE_R,
            'p': GATE_P, 'pepper': base64.b64encode(
                gate_pepper(gate_secret, area, gen)).decode()}
        for gen, log2_n in generations]


def parse_generations(items):
    """The live generations of an enrolment or sync answer, checked:
    ``[{'generation', 'log2_n', 'r', 'p', 'pepper' (bytes)}]``, current
    first. ValueError when malformed."""
    if not isinstance(items, list) or not items or len(items) > 8:
        raise ValueError('gate_generations must be a list of 1 to 8')
    parsed = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError('a gate generation must be an object')
        try:
            gen = item['generation']
            log2_n, r, p = item['log2_n'], item['r'], item['p']
            pepper = base64.b64decode(item['pepper'], validate=True)
        except (KeyError, TypeError, ValueError):
            raise ValueError('a gate generation needs generation, '
                'log2_n, r, p and a base64 pepper') from None
        for value in (gen, log2_n, r, p):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError('gate generation numbers must be integers')
        if not (gen >= 1 and 10 <= log2_n <= 20 and 1 <= r <= 32
                and 1 <= p <= 4 and len(pepper) >= 16):
            raise ValueError('gate generation out of range')
        parsed.append({'generation': gen, 'log2_n': log2_n, 'r': r,
                'p': p, 'pepper': pepper})
    return parsed


def gate_hashes(generation, number, id_type=None):
    """``candidate_hashes`` under one parsed generation (the box's)."""
    return candidate_hashes(lambda kind, normalized: gate_hash(
            generation['pepper'], kind, normalized, generation['log2_n'],
            generation['r'], generation['p']), number, id_type)
