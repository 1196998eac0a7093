"""Codes partners issue for their tickets, and what boxes match them with.

A partner whose contract says it issues codes (scenic_group) sends its own
code strings when it pays; they are kept on the tickets (``partner_code``,
unique per area) and a box admits a scanned string that matches one. Boxes
never get the codes: they get each code's gate hash
(``scenic_common.partnercode.code_hash``, scrypt under the area's pepper
of the current generation, as ID numbers' gate hashes), derived here by
the gate-hash cron for the tickets of today and tomorrow and only read by
``GET /sync`` (iot-box/PROTOCOL.md, "Partner codes").
"""
import datetime as dt
import time

from sql import Null
from sql.operators import Exists, NotIn

from scenic_common import partnercode
from scenic_ticket.dbtools import naive, now_utc
from scenic_ticket.slot import area_timezone

from trytond import config
from trytond.model import ModelSQL, Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction

from .gatehash import (
    BATCH, GenerationHashes, filled_generations, ticket_window)


class Ticket(metaclass=PoolMeta):
    __name__ = 'scenic.ticket'
    partner_code = fields.Char(
        "Partner Code", readonly=True,
        help="The code the partner issued for this ticket, when its "
        "contract lets it issue codes; the gates admit it.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('partner_code_unique', Unique(t, t.company, t.partner_code),
                'scenic_gate.msg_partner_code_unique'),
            ]


class CodeHash(GenerationHashes, ModelSQL):
    "The gate hash of a partner's code, for one generation."
    __name__ = 'scenic.gate.code_hash'
    company = fields.Many2One(
        'company.company', "Company", required=True, ondelete='CASCADE')
    ticket = fields.Many2One(
        'scenic.ticket', "Ticket", required=True, ondelete='CASCADE')
    generation = fields.Integer("Generation", required=True)
    hash = fields.Char("Hash", required=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('ticket_generation_unique',
                Unique(t, t.ticket, t.generation),
                'scenic_gate.msg_code_hash_unique'),
            ]

    @classmethod
    def missing(cls, company, generation, now, limit=BATCH):
        """(ticket, code) of the area's partner-coded tickets of today and
        tomorrow without a hash of `generation`."""
        ticket = Pool().get('scenic.ticket').__table__()
        stored = cls.__table__()
        start, end = ticket_window(area_timezone(company), now)
        has = stored.select(stored.id, where=(stored.ticket == ticket.id)
            & (stored.generation == generation))
        cursor = Transaction().connection.cursor()
        cursor.execute(*ticket.select(ticket.id, ticket.partner_code,
                where=(ticket.company == company.id)
                & (ticket.partner_code != Null)
                & ticket.state.in_(['valid', 'used'])
                & (ticket.valid_from < naive(end))
                & (ticket.valid_until > naive(start))
                & ~Exists(has),
                order_by=[ticket.id], limit=limit))
        return cursor.fetchall()

    _key = 'ticket'

    @classmethod
    def _conflict_columns(cls, table):
        return [table.ticket, table.generation]

    @classmethod
    def _hashes(cls, pepper, log2_n, rows):
        return [(ticket_id, partnercode.code_hash(pepper, code, log2_n))
            for ticket_id, code in rows]

    @classmethod
    def purge(cls, now=None):
        """Drop the hashes of generations no longer filled and of tickets
        that ended more than a day ago."""
        table = cls.__table__()
        ticket = Pool().get('scenic.ticket').__table__()
        kept = [g for g, _ in filled_generations()]
        cutoff = naive((now or now_utc()) - dt.timedelta(days=1))
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.delete(where=NotIn(table.generation, kept)))
        cursor.execute(*table.delete(where=table.ticket.in_(ticket.select(
                        ticket.id, where=ticket.valid_until < cutoff))))


class GateHash(metaclass=PoolMeta):
    __name__ = 'scenic.gate.hash'

    @classmethod
    def fill_cron(cls):
        "The holders' hashes, then the partner codes' in what time is left."
        started = time.monotonic()
        super().fill_cron()
        budget = config.getfloat('scenic_gate', 'gate_hash_budget',
            default=50.0)
        CodeHash = Pool().get('scenic.gate.code_hash')
        CodeHash.fill(budget=max(budget - (time.monotonic() - started), 1),
            commit=True)
        CodeHash.purge()
