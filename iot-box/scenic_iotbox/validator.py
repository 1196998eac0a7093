"""The offline decision path.

scan (gate, lane, medium, data, direction) → the credential and what the
store knows of it → :mod:`scenic_common.gate` → if it opens, the new usage
and the scan in the outbox, in ONE SQLite transaction (``BEGIN IMMEDIATE``,
``synchronous=FULL``): the scan is durable before the gate opens, and two
lanes scanning the same single-entry code at once open once (the
transaction is taken before the usage is read).

Media
    qr       a signed ticket code: verified with the synced keys, the
             revocation list and the area.  A code sold after the last sync
             is admitted on its signature and validity alone.
             A string that is no signed code may be a code a partner
             issued: its gate hash (scenic_common.partnercode, under the
             current generation) is looked up in the synced partner codes,
             and a match is decided like a signed code; no match keeps the
             codec's refusal (malformed).
    rfid     a card UID → the synced card.
    id_card  an ID number read from a card: its keyed hash (the look-up key
             from enrolment) finds today's real-name tickets; the first one
             that opens wins, else no_ticket_today.

Re-entry binding (types with a binding and more than one entry)
    first entry   the box keeps what binds the holder: for ``id_card`` the
                  keyed hash of the ID presented; for ``face``,
                  ``fingerprint`` and ``photo`` the captured image (shown to
                  staff) and, when a biometric matcher for that method is
                  configured, its template (``matcher.enrol(image)``).
    re-entry      ``binding_confirmed`` from staff wins (they compared the
                  bound photo); else the box compares (ID hash, or
                  ``matcher.match(template, image)``); with nothing to
                  compare the decision is binding_required and the staff
                  screen gets ``bound_photo_url``.

The biometric matcher is any object with ``enrol(image) -> template`` and
``match(template, image) -> result`` where result is a bool, an
``(ok, score)`` pair, or an object with ``ok``/``matched`` and ``score``.
"""

import logging
import os
import pickle
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scenic_common import gate as gatelib, partnercode, protocol, ticketcode

from . import idhash
from .store import normalize_uid

__all__ = ['Validator', 'ScanRequest', 'ScanResult', 'MEDIA']

logger = logging.getLogger(__name__)

MEDIA = protocol.MEDIA
IMAGE_METHODS = ('face', 'fingerprint', 'photo')


@dataclass(frozen=True)
class ScanRequest:
    gate: str | int                 # gate code (or ERP id)
    lane: int
    medium: str                     # qr | id_card | rfid
    data: str
    direction: str | None = None    # in | out (default: the gate's)
    image: bytes | None = None      # for face/photo/fingerprint bindings
    id_number: str | None = None    # an ID presented for an id_card binding
    id_type: str | None = None      # when the reader knows the document
    binding_confirmed: bool | None = None   # staff compared the holder


@dataclass(frozen=True)
class ScanResult:
    decision: gatelib.Decision
    gate: gatelib.GateInfo | None
    lane: int
    medium: str
    nonce: str | None = None
    summary: dict = field(default_factory=dict)
    bound_photo_url: str | None = None
    binding: dict | None = None

    def as_json(self):
        body = {'decision': self.decision.action,
            'reason': self.decision.reason,
            'persons': self.decision.persons,
            'message': self.decision.message,
            'direction': self.decision.direction,
            'ticket': self.summary or None}
        if self.decision.binding_check:
            body['binding_check'] = self.decision.binding_check
        if self.bound_photo_url:
            body['bound_photo_url'] = self.bound_photo_url
        if self.nonce:
            body['scan'] = self.nonce
        return body


def _match_outcome(result):
    """(ok, score) from whatever a matcher returned: a bool, an (ok, score)
    pair, or an object with ``matched``/``ok`` and ``score`` (the drivers'
    MatchResult).  No match *and* no score means nothing could be compared
    (no face in the picture, a bad image): ok is None then, so the decision
    is binding_required (staff check) rather than binding_mismatch."""
    if isinstance(result, bool):
        return result, None
    ok = score = None
    for name in ('matched', 'ok', 'match', 'is_match'):
        if hasattr(result, name):
            ok = bool(getattr(result, name))
            score = next((getattr(result, s) for s in ('score', 'distance',
                'similarity') if hasattr(result, s)), None)
            break
    else:
        if isinstance(result, (tuple, list)) and len(result) == 2:
            ok, score = bool(result[0]), result[1]
        else:
            return None, None
    score = _score(score)
    if not ok and score is None:
        return None, None
    return ok, score


def _score(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


class _Candidate:
    """One credential the scan may stand for."""
    __slots__ = ('kind', 'ref', 'verification', 'card', 'card_row',
        'ticket_type', 'entries', 'valid_until', 'binding_ok', 'capture',
        'binding_info', 'files')

    def __init__(self, kind, ref, verification=None, card=None,
            card_row=None):
        self.kind = kind
        self.ref = ref
        self.verification = verification
        self.card = card
        self.card_row = card_row
        self.ticket_type = None
        self.entries = None
        self.valid_until = None
        self.binding_ok = None
        self.capture = None         # binding to keep at a first entry
        self.binding_info = None    # for the upload
        self.files = []             # written ahead, removed if unused


class Validator:
    """Decides scans offline from the store; thread-safe."""

    def __init__(self, store, data_dir, biometrics=None, camera=None,
            clock=None, online=None, on_scan=None, timezone_name=None):
        self.store = store
        self.data_dir = os.fspath(data_dir)
        self.biometrics = biometrics or {}   # method -> matcher
        self.camera = camera
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.online = online or (lambda: False)
        self.on_scan = on_scan
        self.default_timezone = timezone_name or 'Asia/Shanghai'
        self._keyring = None
        self._keyring_generation = None
        self._keyring_lock = threading.Lock()
        self.errors = 0
        self._last_derivation = None    # ((generation, number, type), hashes)

    # --- cached synced data ----------------------------------------------

    def keyring(self):
        # the watermark too: another process (`scenic-iotbox sync`) may
        # have synced the same file
        generation = (self.store.generation,
            self.store.get_meta('watermark'),
            self.store.get_meta('revoked'))
        with self._keyring_lock:
            if self._keyring_generation != generation \
                    or self._keyring is None:
                ring = ticketcode.Keyring()
                for key_id, raw, retired in self.store.keys():
                    try:
                        ring.add(key_id, raw, retired)
                    except ValueError:
                        logger.warning('Ignoring bad key %s', key_id)
                self._keyring = ring
                self._keyring_generation = generation
            return self._keyring

    def area_id(self):
        value = self.store.get_meta('area_id')
        return int(value) if value is not None else None

    def timezone(self):
        name = self.store.get_meta('timezone') or self.default_timezone
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(self.default_timezone)

    # --- the scan ----------------------------------------------------------

    def scan(self, request, now=None):
        """Decide ``request`` (a ScanRequest) → ScanResult.  Raises only
        for programming errors; every scanned input gets an answer."""
        now = now or self.clock()
        if isinstance(request.gate, int) and not isinstance(
                request.gate, bool):
            gate, lanes = self.store.gate(id=request.gate)
        else:
            gate, lanes = self.store.gate(code=str(request.gate))
        direction = request.direction
        if direction is None:
            direction = (gate.direction if gate is not None
                and gate.direction in gatelib.DIRECTIONS else gatelib.IN)
        if self.store.get_meta('revoked'):
            # its synced data is gone: say why, in the medium's terms
            reason = {'qr': gatelib.UNKNOWN_KEY, 'rfid': gatelib.UNKNOWN_CARD
                }.get(request.medium, gatelib.NO_TICKET_TODAY)
            return ScanResult(self._deny(reason, 'This box has been revoked '
                'by the ERP: it admits nobody until it is enrolled again.',
                direction), gate, request.lane, request.medium)
        if gate is None:
            return ScanResult(self._deny(gatelib.WRONG_GATE,
                f'Gate {request.gate} is not known to this box (not synced '
                'yet?).', direction), None, request.lane, request.medium)

        candidates, early = self._candidates(request, direction, now)
        if early is not None:
            return self._record(gate, request, direction, now, None, early)
        for candidate in candidates:
            self._prepare_binding(candidate, request, gate, now)
        try:
            return self._decide_and_record(gate, request, direction, now,
                candidates)
        finally:
            for candidate in candidates:
                for path in candidate.files:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass

    def _deny(self, reason, message, direction, ticket=None, card=None):
        return gatelib.Decision(gatelib.DENY, reason, 0, ticket, card, None,
            direction, False, None, message)

    def _candidates(self, request, direction, now):
        """-> ([_Candidate], early denial or None)."""
        medium = request.medium
        if medium == 'qr':
            verification = ticketcode.verify(request.data, self.keyring(),
                now=now, revoked=self.store.revoked, area_id=self.area_id())
            if verification.reason == gatelib.MALFORMED:
                verification = self._partner_code(request.data) \
                    or verification
            payload = verification.payload
            ref = payload.ticket_id if payload is not None else None
            return [_Candidate('ticket', ref, verification=verification)], None
        if medium == 'rfid':
            uid = normalize_uid(request.data)
            card, row = self.store.card(uid) if uid else (None, None)
            if card is None:
                return [], self._deny(gatelib.UNKNOWN_CARD,
                    'Unknown card.', direction)
            return [_Candidate('card', card.id, card=card,
                card_row=row)], None
        if medium == 'id_card':
            generations = self.store.gate_generations()
            if not generations:
                return [], self._deny(gatelib.NO_TICKET_TODAY, 'This box '
                    'is not enrolled: it cannot match ID cards.', direction)
            hashes = self._gate_hashes(generations[0], request.data,
                request.id_type)
            if not hashes:
                return [], self._deny(gatelib.MALFORMED,
                    'Not a valid ID number.', direction)
            zone = self.timezone()
            local = now.astimezone(zone)
            start = datetime.combine(local.date(), datetime.min.time(), zone)
            end = start + timedelta(days=1)
            found = self.store.tickets_for_holder(hashes, start, end)
            if not found:
                return [], self._deny(gatelib.NO_TICKET_TODAY,
                    'No ticket today for this ID.', direction)
            candidates = []
            for ticket_id, code in found:
                partner = None if code else self.store.partner_ticket([],
                    self.area_id(), ticket_id=ticket_id)
                if partner is not None:
                    # its code is a partner's: what the box synced of it
                    verification = partnercode.verification(partner,
                        revoked=self.store.revoked, area_id=self.area_id())
                else:
                    verification = ticketcode.verify(code, self.keyring(),
                        now=now, revoked=self.store.revoked,
                        area_id=self.area_id())
                candidates.append(_Candidate('ticket', ticket_id,
                    verification=verification))
            return candidates, None
        return [], self._deny(gatelib.MALFORMED,
            f'Unknown medium {medium!r}.', direction)

    def _partner_code(self, text):
        """The verification of a partner's code matching ``text``, or
        None.  The hash costs what an ID card's does (about 40 ms): only
        paid for strings some contract's rule allows, on a box that holds
        partner codes."""
        generations = self.store.gate_generations()
        if (not generations or not partnercode.could_be_code(text)
                or not self.store.has_partner_codes()):
            return None
        generation = generations[0]
        code_hash = partnercode.code_hash(generation['pepper'], text,
            generation['log2_n'], generation['r'], generation['p'])
        ticket = self.store.partner_ticket([code_hash], self.area_id())
        if ticket is None:
            return None
        return partnercode.verification(ticket, revoked=self.store.revoked,
            area_id=self.area_id())

    # --- binding -----------------------------------------------------------

    def _type_of(self, candidate):
        if candidate.kind == 'ticket':
            payload = candidate.verification.payload
            if payload is None:
                return None, None
            candidate.valid_until = payload.valid_until
            return (self.store.ticket_type(payload.ticket_type_id),
                payload.entries)
        ttype = self.store.ticket_type(candidate.card.ticket_type)
        candidate.valid_until = candidate.card.valid_until
        return ttype, ttype.entries if ttype else None

    def _prepare_binding(self, candidate, request, gate, now):
        """Outside the lock (matching takes time): compare with the bound
        holder at a re-entry, or get ready to bind at a first entry."""
        ttype, entries = self._type_of(candidate)
        candidate.ticket_type = ttype
        candidate.entries = entries
        if (ttype is None or ttype.binding == 'none' or entries == 1
                or candidate.ref is None):
            return
        method = ttype.binding
        usage, row = self.store.usage(candidate.kind, candidate.ref)
        id_number = request.id_number or (
            request.data if request.medium == 'id_card' else None)
        if usage.binding_ref is not None or usage.entries > 0:
            # re-entry: compare
            if request.binding_confirmed is not None:
                candidate.binding_ok = bool(request.binding_confirmed)
                candidate.binding_info = {'method': method,
                    'ref': usage.binding_ref, 'score': None,
                    'by': 'staff'}
                return
            if usage.binding_ref is None:
                return
            if method == 'id_card':
                if id_number:
                    ref = self._id_ref(id_number, request.id_type,
                        under=usage.binding_ref)
                    candidate.binding_ok = ref is not None and (
                        ref == usage.binding_ref)
                    candidate.binding_info = {'method': method,
                        'ref': usage.binding_ref, 'score': None}
                return
            matcher = self.biometrics.get(method)
            template_path = row['template_path'] if row else None
            if matcher is None or not template_path:
                return
            image = self._image(request, gate)
            if image is None:
                return
            try:
                template = _load_template(template_path)
                ok, score = _match_outcome(matcher.match(template, image))
            except Exception:
                logger.exception('Biometric match failed')
                self.errors += 1
                return
            candidate.binding_ok = ok
            candidate.binding_info = {'method': method,
                'ref': usage.binding_ref, 'score': score}
            return
        # first entry: prepare what binds the holder
        if method == 'id_card':
            if id_number:
                ref = self._id_ref(id_number, request.id_type)
                if ref:
                    candidate.capture = {'ref': ref,
                        'binding_method': method}
            return
        image = self._image(request, gate)
        if image is None:
            return
        ref = uuid.uuid4().hex
        photo_path = os.path.join(self.data_dir, 'photos', ref + '.img')
        capture = {'ref': ref, 'binding_method': method,
            'photo_path': photo_path}
        _write_private(photo_path, image)
        candidate.files.append(photo_path)
        matcher = self.biometrics.get(method)
        if matcher is not None:
            try:
                template = matcher.enrol(image)
            except Exception:
                logger.exception('Biometric enrolment failed')
                self.errors += 1
                template = None
            if template is not None:
                if isinstance(template, (bytes, bytearray)):
                    path = os.path.join(self.data_dir, 'templates',
                        ref + '.bin')
                    data = bytes(template)
                else:
                    path = os.path.join(self.data_dir, 'templates',
                        ref + '.pkl')
                    data = pickle.dumps(template)
                _write_private(path, data)
                candidate.files.append(path)
                capture['template_path'] = path
        candidate.capture = capture

    def _gate_hashes(self, generation, number, id_type=None):
        """Gate hashes of a read number under a generation; the last
        derivation is kept for the same request's binding (one scrypt
        for a look-up and its binding, not two)."""
        key = (generation['generation'], number, id_type)
        last = self._last_derivation
        if last is not None and last[0] == key:
            return last[1]
        hashes = idhash.candidate_hashes(generation, number, id_type)
        self._last_derivation = (key, hashes)
        return hashes

    def _id_ref(self, number, id_type=None, under=None):
        """The ID-card binding reference of a read number: under the
        current generation, or the generation of reference `under` (the
        one to compare with), None when that generation is gone."""
        generations = self.store.gate_generations()
        if not generations:
            return None
        generation = generations[0]
        if under is not None:
            wanted = idhash.ref_generation(under)
            generation = next((g for g in generations
                    if g['generation'] == wanted), None)
            if generation is None:
                return None
        hashes = self._gate_hashes(generation, number, id_type)
        return idhash.binding_ref(generation, hashes[0]) if hashes else None

    def _image(self, request, gate):
        if request.image:
            return request.image
        if self.camera is None:
            return None
        try:
            return self.camera.capture(gate.code, request.lane)
        except Exception:
            logger.exception('Camera capture failed')
            self.errors += 1
            return None

    # --- decide + record, atomically -------------------------------------

    def _decide_one(self, conn, candidate, gate, direction, now):
        store = self.store
        ttype = candidate.ticket_type
        rule = store.rule_for(gate.id, ttype.rule if ttype else None, conn)
        zone = store.zone_load(gate.zone, conn) if gate.zone else None
        if candidate.ref is not None:
            usage, _ = store.usage(candidate.kind, candidate.ref, conn)
        else:
            usage = gatelib.Usage()
        if candidate.kind == 'ticket':
            decision = gatelib.decide_ticket(candidate.verification, ttype,
                gate, rule, usage, zone, direction, now,
                candidate.binding_ok)
        else:
            # re-read the card inside the transaction: its balance counts
            # scans committed since
            card, _ = store.card(candidate.card.uid, conn)
            candidate.card = card or candidate.card
            decision = gatelib.decide_card(candidate.card, ttype, gate, rule,
                usage, zone, direction, now, candidate.binding_ok)
        return decision, usage, rule

    def _decide_and_record(self, gate, request, direction, now, candidates):
        with self.store.transaction() as conn:
            chosen = None
            for candidate in candidates:
                decision, usage, rule = self._decide_one(conn, candidate,
                    gate, direction, now)
                if chosen is None or (decision.opened
                        and not chosen[1].opened):
                    chosen = (candidate, decision, usage, rule)
                if decision.opened:
                    break
            candidate, decision, usage, rule = chosen
            binding = candidate.binding_info
            binding_fields = None
            binding_ref = None
            if decision.opened and decision.needs_binding \
                    and candidate.capture:
                binding_ref = candidate.capture['ref']
                binding_fields = candidate.capture
                binding = {'method': candidate.capture['binding_method'],
                    'ref': binding_ref, 'score': None}
                candidate.files = []       # keep them: they are bound now
            if decision.opened:
                new_usage = gatelib.usage_after(usage, decision, now,
                    binding_ref)
                self.store.save_usage(conn, candidate.kind, candidate.ref,
                    new_usage, now, valid_until=candidate.valid_until,
                    binding=binding_fields)
            else:
                new_usage = usage
            result = self._append(conn, gate, request, direction, now,
                candidate, decision, rule, binding)
        summary = self._summary(candidate, new_usage, decision)
        photo = self._bound_photo(candidate, new_usage)
        if self.on_scan is not None:
            try:
                self.on_scan()
            except Exception:
                logger.exception('on_scan callback failed')
        return ScanResult(decision, gate, request.lane, request.medium,
            result, summary, photo, binding)

    def _append(self, conn, gate, request, direction, now, candidate,
            decision, rule, binding):
        nonce = str(uuid.uuid4())
        is_card = candidate is not None and candidate.kind == 'card'
        ticket = (decision.ticket if decision.ticket is not None
            else (candidate.ref if candidate is not None and not is_card
                else None))
        card = decision.card
        payload = {'nonce': nonce, 'at': now.astimezone(
                timezone.utc).isoformat(), 'gate': gate.id,
            'lane': request.lane, 'medium': request.medium,
            'ticket': ticket, 'card': card,
            'decision': decision.action, 'reason': decision.reason,
            'persons': decision.persons, 'direction': direction,
            'offline': not self._online(), 'binding': binding}
        opened = decision.opened
        card_use = (opened and direction == gatelib.IN and is_card
            and candidate.card is not None
            and candidate.card.remaining is not None)
        self.store.append_scan(conn, nonce, now, payload,
            ticket=ticket, card=card, zone=gate.zone,
            zone_delta=gatelib.zone_delta(decision, rule),
            card_use=card_use,
            entry_use=opened and direction == gatelib.IN)
        return nonce

    def _record(self, gate, request, direction, now, candidate, decision):
        """A denial decided before the transaction: upload it too."""
        with self.store.transaction() as conn:
            nonce = self._append(conn, gate, request, direction, now,
                candidate, decision, None, None)
        return ScanResult(decision, gate, request.lane, request.medium,
            nonce, {}, None, None)

    def _online(self):
        try:
            return bool(self.online())
        except Exception:
            return False

    # --- answers for the staff screen --------------------------------------

    def _summary(self, candidate, usage, decision):
        if candidate is None:
            return {}
        ttype = candidate.ticket_type
        summary = {'kind': candidate.kind, 'id': candidate.ref,
            'ticket_type': ttype.id if ttype else None,
            'ticket_type_code': ttype.code if ttype else None,
            'entries_used': usage.entries, 'inside': usage.inside}
        if candidate.kind == 'ticket':
            payload = candidate.verification.payload
            if payload is not None:
                summary.update(persons=payload.persons,
                    entries_allowed=payload.entries,
                    valid_from=payload.valid_from.isoformat(),
                    valid_until=payload.valid_until.isoformat(),
                    real_name=bool(payload.holder_hash))
        else:
            card = candidate.card
            row = candidate.card_row
            summary.update(card=card.id, uid=card.uid, state=card.state,
                persons=ttype.persons if ttype else None,
                entries_allowed=ttype.entries if ttype else None,
                remaining=(card.remaining - 1 if card.remaining is not None
                    and decision.opened and decision.direction == 'in'
                    else card.remaining),
                valid_from=card.valid_from.isoformat()
                if card.valid_from else None,
                valid_until=card.valid_until.isoformat()
                if card.valid_until else None,
                holder_masked=row['holder_masked'] if row else None)
        return summary

    def _bound_photo(self, candidate, usage):
        if candidate is None or candidate.ref is None:
            return None
        if usage.binding_ref:
            files = self.store.binding_files(usage.binding_ref)
            if files and files.get('photo_path'):
                return f'/photos/{usage.binding_ref}'
        if candidate.kind == 'card' and self.store.card_photo_url(
                candidate.ref):
            return (f'/photos/card-{candidate.ref}-'
                f'{self.store.photo_token(candidate.ref)}')
        return None


def _write_private(path, data):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'wb') as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _load_template(path):
    with open(path, 'rb') as file:
        data = file.read()
    if path.endswith('.pkl'):
        return pickle.loads(data)
    return data
