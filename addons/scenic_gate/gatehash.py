"""Gate hashes: what boxes match ID cards with, stored before any box asks.

A gate hash is scrypt of a holder's ID number salted with the area's
pepper of a generation (``scenic_common.protocol.gate_hash``, about 40 ms
of CPU each): a box's store then costs whoever copies it that much per
candidate ID number (iot-box/PROTOCOL.md, "Threat model"). The ERP pays
the same per holder, so the hashes are derived here, in batches by a cron
(``fill``), for the real-name holders of today's and tomorrow's tickets,
and ``GET /sync`` only reads them: never derived on the booking path nor
inside a sync.

Generations (``[scenic_gate] gate_generations``, current first, e.g.
``2:14, 1:14`` = generation:log2 of scrypt's N) rotate the peppers: set
``gate_generation_next`` first, let the cron fill it, then make it
current. Boxes get every live generation's pepper (enrolment and sync);
tickets are matched under the current one, and ID-card bindings under the
generation they were made in (their reference says which).
"""
import datetime as dt
import time

from sql import Conflict, Null
from sql.operators import Exists, NotIn

from scenic_common import protocol
from scenic_ticket.dbtools import naive, now_utc
from scenic_ticket.slot import area_timezone
from scenic_ticket.vault import pii_vault

from trytond import config
from trytond.i18n import gettext
from trytond.model import ModelSQL, Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction

from .exceptions import GateConfigurationError


def ticket_window(tz, now):
    """(start, end), aware: today and tomorrow in the area, the tickets a
    box can match to an ID card (and whose gate hashes are derived)."""
    today = now.astimezone(tz).date()
    start = dt.datetime.combine(today, dt.time(), tz)
    end = dt.datetime.combine(today + dt.timedelta(days=2), dt.time(), tz)
    return start, end


BATCH = 500


def _parse(text, option):
    generations = []
    for item in (text or '').split(','):
        item = item.strip()
        if not item:
            continue
        gen, _, log2_n = item.partition(':')
        try:
            gen = int(gen)
            log2_n = int(log2_n) if log2_n else protocol.GATE_LOG2_N
        except ValueError:
            gen = log2_n = 0
        if gen < 1 or not 10 <= log2_n <= 20 or gen in dict(generations):
            raise GateConfigurationError(gettext(
                    'scenic_gate.msg_gate_generations_invalid',
                    option=option, value=text))
        generations.append((gen, log2_n))
    return generations


def live_generations():
    """[(generation, log2_n)] boxes get, current first
    ([scenic_gate] gate_generations, default "1")."""
    return _parse(config.get('scenic_gate', 'gate_generations',
            default='') or '1', 'gate_generations')


def filled_generations():
    """[(generation, log2_n)] whose hashes the cron derives: the current
    one, then the next one being prepared (gate_generation_next)."""
    current = live_generations()[0]
    following = _parse(config.get('scenic_gate', 'gate_generation_next',
            default=''), 'gate_generation_next')
    return [current] + [g for g in following[:1] if g[0] != current[0]]


def generation_answer(company_id):
    "The live generations with their peppers, for enrolment and sync."
    return protocol.generation_answer(pii_vault().gate_secret(), company_id,
        live_generations())


class GenerationHashes:
    """What the stored hash models share: the cron's derivation, `batch`
    rows at a time, of the hashes missing for each filled generation.
    A model using it defines `missing(company, generation, now, limit)`
    (the rows without a hash), `_hashes(pepper, log2_n, rows)` ((key id,
    hash) per row) and `_key` (the column the hash belongs to, unique
    with the generation)."""
    __slots__ = ()

    @classmethod
    def fill(cls, now=None, batch=BATCH, budget=None, commit=False,
            companies=None):
        """Derive the missing hashes (about 40 ms of CPU each, off the
        booking path) until none is missing or `budget` seconds have
        passed; each batch committed when `commit`. Only the areas with
        ids in `companies` when given. Returns how many were stored."""
        Company = Pool().get('company.company')
        now = now or now_utc()
        started = time.monotonic()
        secret = pii_vault().gate_secret()
        table = cls.__table__()
        key = getattr(table, cls._key)
        cursor = Transaction().connection.cursor()
        stored = 0
        for generation, log2_n in filled_generations():
            for company in (Company.browse(companies)
                    if companies else Company.search([])):
                pepper = protocol.gate_pepper(secret, company.id, generation)
                while True:
                    rows = cls.missing(company, generation, now, batch)
                    if not rows:
                        break
                    values = [[company.id, id_, generation, hash_, 0,
                            naive(now_utc())]
                        for id_, hash_ in cls._hashes(pepper, log2_n, rows)]
                    cursor.execute(*table.insert([table.company, key,
                                table.generation, table.hash,
                                table.create_uid, table.create_date],
                            values, on_conflict=Conflict(table,
                                indexed_columns=cls._conflict_columns(
                                    table))))
                    stored += len(values)
                    if commit:
                        Transaction().commit()
                    if budget is not None \
                            and time.monotonic() - started > budget:
                        return stored
        return stored


class GateHash(GenerationHashes, ModelSQL):
    "The gate hash of a real-name holder in an area, for one generation."
    __name__ = 'scenic.gate.hash'
    company = fields.Many2One(
        'company.company', "Company", required=True, ondelete='CASCADE')
    visitor = fields.Many2One(
        'scenic.visitor', "Visitor", required=True, ondelete='CASCADE')
    generation = fields.Integer("Generation", required=True)
    hash = fields.Char("Hash", required=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('visitor_generation_unique',
                Unique(t, t.company, t.visitor, t.generation),
                'scenic_gate.msg_gate_hash_unique'),
            ]

    @classmethod
    def missing(cls, company, generation, now, limit=BATCH):
        """(visitor, id_type, id_encrypted) of holders of the area's
        tickets of today and tomorrow without a hash of `generation`."""
        pool = Pool()
        ticket = pool.get('scenic.ticket').__table__()
        visitor = pool.get('scenic.visitor').__table__()
        stored = cls.__table__()
        start, end = ticket_window(area_timezone(company), now)
        has = stored.select(stored.id, where=(stored.visitor == visitor.id)
            & (stored.company == company.id)
            & (stored.generation == generation))
        cursor = Transaction().connection.cursor()
        cursor.execute(*ticket.join(visitor,
                condition=visitor.id == ticket.visitor).select(
                visitor.id, visitor.id_type, visitor.id_encrypted,
                where=(ticket.company == company.id)
                & ticket.state.in_(['valid', 'used'])
                & (ticket.holder_hash != Null)
                & (visitor.id_encrypted != Null)
                & (ticket.valid_from < naive(end))
                & (ticket.valid_until > naive(start))
                & ~Exists(has),
                distinct=True, order_by=[visitor.id], limit=limit))
        return cursor.fetchall()

    _key = 'visitor'

    @classmethod
    def _conflict_columns(cls, table):
        return [table.company, table.visitor, table.generation]

    @classmethod
    def _hashes(cls, pepper, log2_n, rows):
        vault = pii_vault()
        return [(visitor_id, protocol.gate_hash(pepper, id_type,
                    vault.decrypt(encrypted), log2_n))
            for visitor_id, id_type, encrypted in rows]

    @classmethod
    def fill_cron(cls):
        "Cron, every minute: derive what is missing, for up to 50 s."
        cls.fill(budget=config.getfloat('scenic_gate', 'gate_hash_budget',
                default=50.0), commit=True)
        cls.purge()

    @classmethod
    def purge(cls):
        "Drop the hashes of generations that are no longer filled."
        table = cls.__table__()
        kept = [g for g, _ in filled_generations()]
        Transaction().connection.cursor().execute(*table.delete(
                where=NotIn(table.generation, kept)))


class Visitor(metaclass=PoolMeta):
    __name__ = 'scenic.visitor'

    @classmethod
    def write(cls, *args):
        """A corrected ID number drops the holder's gate hashes: the cron
        derives them again, and the next sync sends the tickets anew."""
        changed = [v.id for visitors, values in zip(args[::2], args[1::2])
            if 'id_number' in values for v in visitors]
        super().write(*args)
        if changed:
            table = Pool().get('scenic.gate.hash').__table__()
            cursor = Transaction().connection.cursor()
            for i in range(0, len(changed), 1000):
                cursor.execute(*table.delete(
                        where=table.visitor.in_(changed[i:i + 1000])))


class Cron(metaclass=PoolMeta):
    __name__ = 'ir.cron'

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.method.selection.append(
            ('scenic.gate.hash|fill_cron', "Derive Gate Hashes"))
