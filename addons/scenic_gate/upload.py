"""Scans the boxes upload: stored once by nonce, applied to usage and
headcount, and checked again with the gates' own decision function.

A box that was cut off decided on what it had synced; another box may have
admitted the same ticket meanwhile. Nothing a box uploads is dropped: every
scan is stored, admitted ones count (the people went through), and the ones
the ERP would have refused are flagged as conflicts with the reason
`scenic_common.gate` gives against the ERP's usage, e.g. the second entry
on a single-entry ticket is `already_used`.

Set-based SQL (see bulk.py): a batch of 1000 scans takes a handful of
statements. Every upload takes its locks in one order (cards, usages, the
scans' nonces, new usages, orders, tickets, headcounts), so concurrent
uploads wait for each other instead of deadlocking, and under READ
COMMITTED the later one decides on the usage the earlier one wrote. When
two uploads race on a nonce or on a first usage of a ticket, the later
fails on the unique index, is rolled back and retried by the endpoint.
"""
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sql import Conflict

from scenic_common import gate as rules_engine
from scenic_common import protocol
from scenic_common import ticketcode
from scenic_ticket import reservation
from scenic_ticket.dbtools import aware, lock, naive, now_utc
from scenic_ticket.errors import ApiError
from scenic_ticket.slot import area_timezone
from scenic_ticket.workflow import sql_transition

from trytond.pool import Pool
from trytond.transaction import Transaction

from . import bulk, rollup


DECISIONS = {'open', 'deny'}
UTC = dt.timezone.utc


@dataclass
class ScanIn:
    index: int
    nonce: str
    at: dt.datetime           # aware
    gate: int
    lane: int | None
    medium: str
    ticket: int | None
    card: int | None
    decision: str
    reason: str | None
    persons: int
    direction: str
    offline: bool
    binding_method: str | None
    binding_ref: str | None
    binding_score: float | None


# --- parsing -----------------------------------------------------------------

def _invalid(message, field):
    return ApiError('invalid_request', message, field)


def _int(raw, name, where, required=True, low=1):
    value = raw.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _invalid(f"'{name}' must be an integer of at least {low}.",
            f'{where}.{name}')
    return value


def _str(raw, name, where, allowed=None, required=True, max_length=100):
    value = raw.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise _invalid(f"'{name}' must be a string of 1 to {max_length} "
            "characters.", f'{where}.{name}')
    if allowed is not None and value not in allowed:
        raise _invalid(f"'{name}' must be one of "
            f"{', '.join(sorted(allowed))}.", f'{where}.{name}')
    return value


def parse_scans(data):
    scans = data.get('scans')
    if not isinstance(scans, list):
        raise _invalid("'scans' must be a list.", 'scans')
    if len(scans) > protocol.BATCH_SIZE:
        raise _invalid(f"A batch takes at most {protocol.BATCH_SIZE} scans.", 'scans')
    parsed = []
    for i, raw in enumerate(scans):
        where = f'scans[{i}]'
        if not isinstance(raw, dict):
            raise _invalid("Each scan must be an object.", where)
        at = _str(raw, 'at', where, max_length=40)
        try:
            at = dt.datetime.fromisoformat(at)
        except ValueError:
            at = None
        if at is None or at.utcoffset() is None:
            raise _invalid("'at' must be an ISO 8601 time with its offset.",
                f'{where}.at')
        binding = raw.get('binding')
        if binding is not None and not isinstance(binding, dict):
            raise _invalid("'binding' must be an object or null.",
                f'{where}.binding')
        binding = binding or {}
        score = binding.get('score')
        if score is not None and (isinstance(score, bool)
                or not isinstance(score, (int, float, Decimal))):
            raise _invalid("'score' must be a number.",
                f'{where}.binding.score')
        offline = raw.get('offline', False)
        if not isinstance(offline, bool):
            raise _invalid("'offline' must be true or false.",
                f'{where}.offline')
        scan = ScanIn(
            index=i,
            nonce=_str(raw, 'nonce', where),
            at=at,
            gate=_int(raw, 'gate', where),
            lane=_int(raw, 'lane', where, required=False),
            medium=_str(raw, 'medium', where, protocol.MEDIA),
            ticket=_int(raw, 'ticket', where, required=False),
            card=_int(raw, 'card', where, required=False),
            decision=_str(raw, 'decision', where, DECISIONS),
            reason=_str(raw, 'reason', where, required=False, max_length=40),
            persons=(_int(raw, 'persons', where, low=0)
                if raw.get('persons') is not None else 1),
            direction=_str(raw, 'direction', where, {'in', 'out'}),
            offline=offline,
            binding_method=_str(binding, 'method', f'{where}.binding',
                required=False, max_length=40),
            binding_ref=_str(binding, 'ref', f'{where}.binding',
                required=False, max_length=255),
            binding_score=float(score) if score is not None else None)
        parsed.append(scan)
    return parsed


# --- what the ERP knows ------------------------------------------------------

class AreaData:
    "Gates, ticket types and rules of an area, as the decision needs them."

    def __init__(self, company_id):
        pool = Pool()
        cursor = Transaction().connection.cursor()
        self.company_id = company_id
        rule = pool.get('scenic.gate.rule').__table__()
        cursor.execute(*rule.select(
                rule.id, rule.early_minutes, rule.late_minutes,
                rule.min_interval_minutes, rule.anti_passback,
                rule.exit_counts, rule.default,
                where=rule.company == company_id))
        self.rules = {}
        self.default_rule = None
        for id_, early, late, interval, passback, exits, default in cursor:
            self.rules[id_] = rules_engine.AccessRule(
                id=id_, early_minutes=early or 0, late_minutes=late or 0,
                min_interval_minutes=interval or 0,
                anti_passback=bool(passback), exit_counts=bool(exits))
            if default:
                self.default_rule = self.rules[id_]

        ttype = pool.get('scenic.ticket.type').__table__()
        type_zone = pool.get('scenic.ticket.type-scenic.zone').__table__()
        cursor.execute(*type_zone.join(
                ttype, condition=type_zone.ticket_type == ttype.id).select(
                type_zone.ticket_type, type_zone.zone,
                where=ttype.company == company_id))
        zones = {}
        for type_id, zone in cursor:
            zones.setdefault(type_id, set()).add(zone)
        cursor.execute(*ttype.select(
                ttype.id, ttype.code, ttype.persons, ttype.entry_mode,
                ttype.entries_allowed, ttype.reentry_binding, ttype.gate_rule,
                ttype.category, where=ttype.company == company_id))
        self.types = {}
        self.type_rules = {}
        for (id_, code, persons, mode, allowed, binding, rule_id,
                category) in cursor:
            self.types[id_] = rules_engine.TicketTypeInfo(
                id=id_, zones=zones.get(id_, ()), persons=persons or 1,
                entries=protocol.entries_for(mode, allowed),
                binding=binding or 'none', rule=rule_id, code=code)
            self.type_rules[id_] = rule_id

        gate = pool.get('scenic.gate').__table__()
        gate_type = pool.get('scenic.gate-scenic.ticket.type').__table__()
        cursor.execute(*gate_type.join(
                gate, condition=gate_type.gate == gate.id).select(
                gate_type.gate, gate_type.ticket_type,
                where=gate.company == company_id))
        gate_types = {}
        for gate_id, type_id in cursor:
            gate_types.setdefault(gate_id, set()).add(type_id)
        cursor.execute(*gate.select(
                gate.id, gate.code, gate.zone, gate.direction, gate.active,
                gate.rule, where=gate.company == company_id))
        self.gates = {}
        self.gate_rules = {}
        for id_, code, zone, direction, active, rule_id in cursor:
            self.gates[id_] = rules_engine.GateInfo(
                id=id_, zone=zone, direction=direction,
                ticket_types=gate_types.get(id_, ()),
                active=bool(active), code=code)
            self.gate_rules[id_] = rule_id

    def rule(self, gate_id, type_id):
        "The gate's rule, else the ticket type's, else the area's default."
        rule_id = protocol.rule_id_for(self.gate_rules.get(gate_id),
            self.type_rules.get(type_id),
            self.default_rule.id if self.default_rule else None,
            known=self.rules.__contains__)
        return self.rules.get(rule_id)


# --- the upload --------------------------------------------------------------

def upload(box_id, company, scans, now=None):
    """Store and apply a batch; return the protocol's answer."""
    pool = Pool()
    Scan = pool.get('scenic.gate.scan')
    transaction = Transaction()
    now = now or now_utc()
    user = transaction.user
    stamp = naive(now)
    cid = company.id

    # 1. duplicates: in the batch, then already stored
    first, duplicates = {}, []
    for scan in scans:
        if scan.nonce in first:
            duplicates.append(scan.nonce)
        else:
            first[scan.nonce] = scan
    stored = {}
    if first:
        table = Scan.__table__()
        stored = {r['nonce']: r['reason'] for r in bulk.rows(table.select(
                    table.nonce.as_('nonce'),
                    table.conflict_reason.as_('reason'),
                    where=bulk.in_(table.nonce, first)))}
    new = [s for s in first.values() if s.nonce not in stored]
    duplicates.extend(s.nonce for s in first.values() if s.nonce in stored)

    area = AreaData(cid)
    for scan in new:
        if scan.gate not in area.gates:
            raise ApiError('invalid_request',
                f"Gate {scan.gate} is not a gate of this area.",
                f'scans[{scan.index}].gate')

    # 2. the credentials the scans name, of this area only, and their use
    tickets = _tickets(cid, {s.ticket for s in new if s.ticket})
    cards = _cards(cid, {s.card for s in new if s.card})
    admitted = sorted((s for s in new if s.decision == 'open'),
        key=lambda s: (s.at, s.index))
    usages = _lock_usages(cid, admitted, tickets, cards)

    # 3. re-decide admitted scans in time order and apply them
    conflicts = {}
    headcounts = {}
    used_tickets = set()
    card_remaining = {}
    tz = area_timezone(company)
    for scan in admitted:
        reason, message, key = _check(scan, area, tickets, cards, usages,
            card_remaining)
        if reason:
            conflicts[scan.nonce] = (reason, message)
        if key is None:
            continue
        type_id = (tickets[scan.ticket]['type'] if key[0] == 'ticket'
            else cards[scan.card]['type'])
        rule = area.rule(scan.gate, type_id)
        decision = rules_engine.Decision(
            rules_engine.OPEN, rules_engine.OK, scan.persons,
            direction=scan.direction)
        before = usages[key]
        usages[key] = protocol.record_use(before, decision.direction, scan.at,
            scan.binding_ref)
        if usages[key].binding_ref and not before.binding_ref:
            usages.rows.setdefault(key, [None, 0, None])[2] = (
                scan.binding_method)
        delta = rules_engine.zone_delta(decision, rule)
        zone = area.gates[scan.gate].zone
        if zone and delta:
            day = scan.at.astimezone(tz).date()
            ins, outs = headcounts.get((zone, day), (0, 0))
            if delta > 0:
                ins += delta
            else:
                outs -= delta
            headcounts[(zone, day)] = (ins, outs)
        if scan.direction == 'in':
            if key[0] == 'ticket':
                used_tickets.add(scan.ticket)
            elif cards[scan.card]['remaining'] is not None:
                left = card_remaining.get(
                    scan.card, cards[scan.card]['remaining'])
                card_remaining[scan.card] = max(left - 1, 0)

    # 4. store every new scan, flagged: a concurrent upload of the same
    # nonces fails here on the unique nonce, is rolled back and retried,
    # and finds them stored.
    no_conflict = (None, None)
    bulk.insert(Scan, ['company', 'time', 'gate', 'lane', 'medium',
            'ticket', 'card', 'decision', 'reason', 'persons', 'direction',
            'offline', 'box', 'nonce', 'binding_method', 'binding_ref',
            'binding_score', 'conflict', 'conflict_reason',
            'conflict_note', 'create_uid', 'create_date'],
        [[cid, naive(s.at), s.gate, s.lane, s.medium,
                s.ticket if s.ticket in tickets else None,
                s.card if s.card in cards else None,
                s.decision, s.reason, s.persons, s.direction, s.offline,
                box_id, s.nonce, s.binding_method, s.binding_ref,
                s.binding_score, s.nonce in conflicts,
                *conflicts.get(s.nonce, no_conflict), user, stamp]
            for s in new])
    _write_usages(cid, usages, stamp, user)
    _mark_tickets_used(used_tickets, tickets, stamp, user)
    _write_cards(card_remaining, stamp, user)
    _write_headcounts(cid, headcounts, stamp, user)
    rollup.add_scans(cid, new, area.gates, stamp)

    reported = [{'nonce': s.nonce, 'reason': conflicts[s.nonce][0]}
        for s in new if s.nonce in conflicts]
    reported += [{'nonce': nonce, 'reason': stored[nonce]}
        for nonce in dict.fromkeys(duplicates)
        if stored.get(nonce)]
    return {
        'accepted': [s.nonce for s in new],
        'duplicates': duplicates,
        'conflicts': reported,
        }


def _tickets(company_id, ids):
    if not ids:
        return {}
    table = Pool().get('scenic.ticket').__table__()
    return {r['id']: {
            'type': r['type'], 'persons': r['persons'],
            'entries': r['entries'],
            'valid_from': aware(r['valid_from']),
            'valid_until': aware(r['valid_until']),
            'state': r['state'], 'revoked_at': aware(r['revoked_at']),
            'key_id': r['key_id'] or 0, 'holder_hash': r['holder_hash'],
            'order': r['order'],
            } for r in bulk.rows(table.select(
                table.id.as_('id'), table.ticket_type.as_('type'),
                table.persons.as_('persons'),
                table.entries_allowed.as_('entries'),
                table.valid_from.as_('valid_from'),
                table.valid_until.as_('valid_until'),
                table.state.as_('state'), table.revoked_at.as_('revoked_at'),
                table.key_id.as_('key_id'),
                table.holder_hash.as_('holder_hash'),
                table.order.as_('order'),
                where=bulk.in_(table.id, sorted(ids))
                & (table.company == company_id)))}


def _cards(company_id, ids):
    if not ids:
        return {}
    table = Pool().get('scenic.card').__table__()
    return {r['id']: {
            'number': r['number'], 'type': r['type'], 'state': r['state'],
            'state_changed_at': aware(r['state_changed_at']),
            'valid_from': aware(r['valid_from']),
            'valid_until': aware(r['valid_until']),
            'remaining': r['remaining'], 'holder_hash': r['holder_hash'],
            } for r in bulk.rows(lock(table.select(
                    table.id.as_('id'), table.number.as_('number'),
                    table.ticket_type.as_('type'), table.state.as_('state'),
                    table.state_changed_at.as_('state_changed_at'),
                    table.valid_from.as_('valid_from'),
                    table.valid_until.as_('valid_until'),
                    table.remaining.as_('remaining'),
                    table.holder_hash.as_('holder_hash'),
                    where=bulk.in_(table.id, sorted(ids))
                    & (table.company == company_id),
                    order_by=[table.id])))}


def usage_key(scan):
    "Whose usage a scan counts on: its ticket, else its card."
    if scan.ticket is not None:
        return ('ticket', scan.ticket)
    if scan.card is not None:
        return ('card', scan.card)
    return (None, None)


class _Usages(dict):
    "{('ticket'|'card', id): gate.Usage}, with their rows as read."

    def __init__(self):
        super().__init__()
        self.rows = {}     # key -> [row id, exits, binding method]
        # (keys without a row yet have none)
        self.initial = {}


def _lock_usages(company_id, admitted, tickets, cards):
    """Lock and read the usage rows of the admitted scans: concurrent
    uploads of one ticket take turns. Missing rows are inserted at the end
    (_write_usages); a concurrent upload that inserted one first makes that
    insert fail on the unique ticket or card, and the batch is retried."""
    Usage = Pool().get('scenic.ticket.usage')
    table = Usage.__table__()
    result = _Usages()
    keys = {usage_key(s) for s in admitted}
    for kind, known in [('ticket', tickets), ('card', cards)]:
        ids = sorted(id_ for k, id_ in keys if k == kind and id_ in known)
        if not ids:
            continue
        for id_ in ids:
            result[(kind, id_)] = rules_engine.NO_USAGE
        column = getattr(table, kind)
        for r in bulk.rows(lock(table.select(
                        table.id.as_('id'), column.as_('owner'),
                        table.entries.as_('entries'),
                        table.exits.as_('exits'),
                        table.last_entry.as_('last_entry'),
                        table.last_exit.as_('last_exit'),
                        table.inside.as_('inside'),
                        table.binding_method.as_('binding_method'),
                        table.binding_ref.as_('binding_ref'),
                        where=bulk.in_(column, ids),
                        order_by=[table.id]))):
            key = (kind, r['owner'])
            result[key] = rules_engine.Usage(
                entries=r['entries'] or 0,
                last_entry_at=aware(r['last_entry']),
                last_exit_at=aware(r['last_exit']),
                inside=bool(r['inside']), binding_ref=r['binding_ref'])
            result.rows[key] = [r['id'], r['exits'] or 0,
                r['binding_method']]
    result.initial = dict(result)
    return result


def _conflict(table, columns, update=None):
    if update:
        return Conflict(table, indexed_columns=columns,
            columns=list(update), values=list(update.values()))
    return Conflict(table, indexed_columns=columns)


class _Payload:
    """What decide_ticket reads of a code's payload, taken from the ERP's
    own ticket (it needs no signature check, and is built 1000 times a
    batch)."""
    __slots__ = ('ticket_id', 'area_id', 'ticket_type_id', 'valid_from',
        'valid_until', 'persons', 'entries', 'key_id', 'holder_hash')

    def __init__(self, ticket_id, company_id, ticket):
        self.ticket_id = ticket_id
        self.area_id = company_id
        self.ticket_type_id = ticket['type']
        self.valid_from = ticket['valid_from']
        self.valid_until = ticket['valid_until']
        self.persons = ticket['persons'] or 1
        self.entries = ticket['entries'] or 0
        self.key_id = ticket['key_id']
        self.holder_hash = ticket['holder_hash']


def _check(scan, area, tickets, cards, usages, card_remaining):
    """(conflict reason, message, usage key) of an admitted scan.

    Exits are never conflicts: whoever is inside may leave. Capacity is not
    re-judged (the headcount shows it) and a binding the box compared is
    taken as it judged it.
    """
    gate = area.gates[scan.gate]
    if scan.ticket is None and scan.card is None:
        return ('unknown_ticket', "The scan names no ticket or card.", None)
    if scan.ticket is not None:
        ticket = tickets.get(scan.ticket)
        if ticket is None:
            return ('unknown_ticket',
                f"Ticket {scan.ticket} is not a ticket of this area.", None)
        key = ('ticket', scan.ticket)
        if scan.direction != 'in':
            return None, None, key
        if ticket['state'] not in {'valid', 'used', 'revoked'}:
            return ('unknown_ticket', f"Ticket {scan.ticket} is "
                f"{ticket['state']}: it was never valid.", key)
        payload = _Payload(scan.ticket, area.company_id, ticket)
        revoked = (ticket['state'] == 'revoked'
            and (ticket['revoked_at'] is None
                or ticket['revoked_at'] <= scan.at))
        if revoked:
            verification = ticketcode.Verification(
                False, ticketcode.REVOKED, payload,
                f"Ticket {scan.ticket} was revoked at "
                f"{ticket['revoked_at']}.")
        else:
            verification = ticketcode.Verification(
                True, ticketcode.OK, payload, '')
        decision = rules_engine.decide_ticket(
            verification, area.types.get(ticket['type']), gate,
            rule=area.rule(scan.gate, ticket['type']), usage=usages[key],
            zone=None, direction='in', now=scan.at, binding_ok=True)
    else:
        card = cards.get(scan.card)
        if card is None:
            return ('unknown_card',
                f"Card {scan.card} is not a card of this area.", None)
        key = ('card', scan.card)
        if scan.direction != 'in':
            return None, None, key
        state = card['state']
        if (state != 'active' and card['state_changed_at']
                and card['state_changed_at'] > scan.at):
            state = 'active'  # it was, when the box admitted it
        info = rules_engine.CardInfo(
            uid=card['number'], id=scan.card, ticket_type=card['type'],
            state=state, valid_from=card['valid_from'],
            valid_until=card['valid_until'],
            remaining=card_remaining.get(scan.card, card['remaining']),
            holder_hash=card['holder_hash'])
        decision = rules_engine.decide_card(
            info, area.types.get(card['type']), gate,
            rule=area.rule(scan.gate, card['type']), usage=usages[key],
            zone=None, direction='in', now=scan.at, binding_ok=True)
    if decision.opened:
        if (scan.ticket is not None and ticket['state'] == 'revoked'
                and ticket['revoked_at'] is not None):
            # admitted offline before the refund, uploaded after it: the
            # refund went through without knowing; flag it for review
            return ('refunded_after_entry', f"Ticket {scan.ticket} was "
                f"refunded at {ticket['revoked_at']}, after an offline box "
                f"admitted it at {scan.at}: review the refund.", key)
        return None, None, key
    return decision.reason, decision.message, key


def _write_usages(company_id, usages, stamp, user):
    "The usages after the batch: new rows inserted, locked rows updated."
    Usage = Pool().get('scenic.ticket.usage')
    new, changed = [], []
    for key in sorted(usages):
        usage, before = usages[key], usages.initial[key]
        if usage == before:
            continue
        row_id, exits, method = usages.rows.get(key, [None, 0, None])
        if usage.last_exit_at != before.last_exit_at:
            exits += 1
        values = [usage.entries, exits,
            naive(usage.last_entry_at) if usage.last_entry_at else None,
            naive(usage.last_exit_at) if usage.last_exit_at else None,
            usage.inside, method, usage.binding_ref, user, stamp]
        if row_id is None:
            kind, owner = key
            new.append([company_id, owner if kind == 'ticket' else None,
                    owner if kind == 'card' else None] + values)
        else:
            changed.append([row_id] + values)
    names = ['entries', 'exits', 'last_entry', 'last_exit', 'inside',
        'binding_method', 'binding_ref']
    bulk.insert(Usage, ['company', 'ticket', 'card'] + names
        + ['create_uid', 'create_date'], new)
    bulk.update(Usage, names + ['write_uid', 'write_date'], changed)


def _mark_tickets_used(ticket_ids, tickets, stamp, user):
    """A ticket admitted once is used: it cannot be refunded any more; its
    order is partly used, or used when all its tickets are."""
    ids = sorted(i for i in ticket_ids if tickets[i]['state'] == 'valid')
    if not ids:
        return
    pool = Pool()
    cursor = Transaction().connection.cursor()
    order = pool.get('scenic.order').__table__()
    table = pool.get('scenic.ticket').__table__()
    order_ids = sorted({tickets[i]['order'] for i in ids})
    # Lock the orders as the booking path does before a refund.
    cursor.execute(*lock(order.select(order.id,
                where=bulk.in_(order.id, order_ids), order_by=[order.id])))
    sql_transition(pool.get('scenic.ticket'), table, 'used',
        bulk.in_(table.id, ids))
    reservation.mark_orders_used(order_ids, now=aware(stamp))


def _write_cards(remaining, stamp, user):
    Card = Pool().get('scenic.card')
    bulk.update(Card, ['remaining', 'write_date', 'write_uid'],
        [[card_id, left, stamp, user]
            for card_id, left in sorted(remaining.items())])


def _write_headcounts(company_id, headcounts, stamp, user):
    if not headcounts:
        return
    table = Pool().get('scenic.zone.headcount').__table__()
    cursor = Transaction().connection.cursor()
    for (zone, day), (ins, outs) in sorted(headcounts.items()):
        cursor.execute(*table.insert(
                [table.company, table.zone, table.date, table.entries,
                    table.exits, table.create_uid, table.create_date],
                [[company_id, zone, day, ins, outs, user, stamp]],
                on_conflict=_conflict(table, [table.zone, table.date], {
                        table.entries: table.entries + ins,
                        table.exits: table.exits + outs,
                        table.write_date: stamp,
                        table.write_uid: user,
                        })))
