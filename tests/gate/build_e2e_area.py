#!/usr/bin/env python3
"""Build the scenic area of the end-to-end gate tests in a new database.

    python tests/gate/build_e2e_area.py -c trytond.conf -d gate_e2e --out site.json

The database must be initialised with scenic_gate activated
(`trytond-admin -u scenic_gate --activate-dependencies`).  One area with:

- zones MAIN (instantaneous maximum 40) and MUSEUM inside it (2: the
  capacity test fills it);
- the default access rule with anti-passback;
- gates MAIN-IN (in, 2 lanes), MAIN-OUT (out, 2 lanes), MUSEUM (both);
- one slot today covering the whole local day, and paid tickets on it:
  real-name ADULT, GROUP5 (one code, five people), REENTRY (three entries,
  photo binding) and MUSEUM;
- an annual card, a count card with two entries left and a lost card;
- two boxes with one-time enrolment tokens.

What the tests need (codes, ids, ID numbers, the token) is written to --out
as JSON.  Tickets are sold through the booking code (reservation.book and
pay) as a channel would; the codes are the ERP's real signed codes.
"""
import argparse
import datetime as dt
import json
import sys
import uuid
from zoneinfo import ZoneInfo

TIMEZONE = ZoneInfo('Asia/Shanghai')
CHANNEL_KEY = 'e2e-web-key'
CARDS = {
    'annual': '04E2E0000001',
    'count': '04E2E0000002',
    'lost': '04E2E0000003',
    }
TICKETS = [
    # key, ticket type, how many orders; ADULT is real-name
    ('adult', 'ADULT', 4),
    ('group', 'GROUP5', 1),
    ('reentry', 'REENTRY', 1),
    ('museum', 'MUSEUM', 3),
    ]


def _ticket_types(company, main, museum):
    from scenic_ticket.tests.tools import create_ticket_type
    main_only = {'zones': [('add', [main.id])]}
    no_name = {'real_name': False, 'id_limit': 0}
    types = {
        'ADULT': create_ticket_type(company, 'ADULT', '120', **main_only),
        'GROUP5': create_ticket_type(company, 'GROUP5', '500',
            category='group', persons=5, **no_name, **main_only),
        'REENTRY': create_ticket_type(company, 'REENTRY', '180',
            entry_mode='multiple', entries_allowed=3,
            reentry_binding='photo', **no_name, **main_only),
        'MUSEUM': create_ticket_type(company, 'MUSEUM', '40',
            zones=[('add', [museum.id])], **no_name),
        'ANNUAL': create_ticket_type(company, 'ANNUAL', '360',
            category='annual_card', validity='days_from_first_use',
            validity_days=365, entry_mode='unlimited', **no_name,
            **main_only),
        'COUNT3': create_ticket_type(company, 'COUNT3', '150',
            category='count_card', validity='days_from_first_use',
            validity_days=365, entry_mode='multiple', entries_allowed=3,
            **no_name, **main_only),
        }
    return types


def _sell(channel, slot, code, n):
    "One paid order of `code` on `slot`; its tickets as dicts."
    from scenic_common.idnumber import RESIDENT_ID, make_resident_id
    from scenic_ticket import reservation
    from trytond.pool import Pool
    Order = Pool().get('scenic.order')
    booked_at = slot.aware(slot.start_time) - dt.timedelta(hours=1)
    id_number = None
    if code == 'ADULT':
        id_number = make_resident_id('110105',
            dt.date(1980, 1, 1) + dt.timedelta(days=97 * n), 100 + n)
        item = reservation.Item(ticket_type=code, visitors=[
                reservation.Visitor(name=f"Visitor {n}",
                    id_type=RESIDENT_ID, id_number=id_number, field='v')])
    else:
        item = reservation.Item(ticket_type=code)
    request = reservation.BookingRequest(slot=slot.id, items=[item],
        contact_name="Wang Fang", contact_phone='13800138000')
    order_id, _ = reservation.book(channel, request, str(uuid.uuid4()),
        now=booked_at)
    reservation.pay(order_id, 'simulated', Order(order_id).total,
        now=booked_at)
    return [{'id': t.id, 'order': order_id, 'code': t.code,
            'persons': t.persons, 'id_number': id_number}
        for t in Order(order_id).tickets]


def _cards(company, types, now):
    from trytond.pool import Pool
    pool = Pool()
    Card = pool.get('scenic.card')
    Visitor = pool.get('scenic.visitor')
    holder, = Visitor.create([{'company': company.id, 'name': "Zhao Lei",
                'id_type': 'resident_id', 'id_number': '11010519491231002X'}])
    common = {'company': company.id, 'holder': holder.id,
        'valid_from': now - dt.timedelta(days=1),
        'valid_until': now + dt.timedelta(days=364)}
    annual, count, lost = Card.create([
            dict(common, number=CARDS['annual'],
                ticket_type=types['ANNUAL'].id),
            dict(common, number=CARDS['count'],
                ticket_type=types['COUNT3'].id, remaining=2),
            dict(common, number=CARDS['lost'],
                ticket_type=types['ANNUAL'].id),
            ])
    Card.report_lost([lost])
    return {k: {'id': c.id, 'uid': c.number}
        for k, c in zip(['annual', 'count', 'lost'], [annual, count, lost])}


def build(database, config_file):
    from proteus import config
    config.set_trytond(database=database, config_file=config_file)
    from scenic_ticket.tests.tools import create_area, create_slot, \
        create_zone
    from trytond.modules.company.tests import set_company
    from trytond.pool import Pool
    from trytond.transaction import Transaction

    with Transaction().start(database, 0) as transaction:
        pool = Pool()
        Gate = pool.get('scenic.gate')
        Rule = pool.get('scenic.gate.rule')
        Box = pool.get('scenic.gate.box')
        Channel = pool.get('scenic.channel')
        company = create_area("E2E Gate Area")
        # The back office (admin over RPC) works in this area.
        User = pool.get('res.user')
        admin, = User.search([('login', '=', 'admin')])
        User.write([admin], {'companies': [('add', [company.id])],
                'company': company.id})
        with set_company(company), \
                Transaction().set_context(company=company.id):
            main = create_zone(company, 'MAIN', daily_max=10080,
                instant_max=40)
            museum = create_zone(company, 'MUSEUM', daily_max=800,
                instant_max=2, parent=main)
            types = _ticket_types(company, main, museum)
            gates = Gate.create([{
                        'company': company.id, 'code': code,
                        'name': name, 'zone': zone.id,
                        'direction': direction, 'lanes': lanes,
                        } for code, name, zone, direction, lanes in [
                        ('MAIN-IN', "Main Entrance", main, 'in', 2),
                        ('MAIN-OUT', "Main Exit", main, 'out', 2),
                        ('MUSEUM', "Museum Door", museum, 'both', 1)]])
            rule, = Rule.search([('company', '=', company.id),
                    ('default', '=', True)])
            Rule.write([rule], {'anti_passback': True})
            channel, = Channel.create([{'company': company.id,
                        'code': 'web', 'name': "Web", 'kind': 'online'}])
            channel.set_api_key(CHANNEL_KEY)
            today = dt.datetime.now(TIMEZONE).date()
            slot = create_slot(company, today, (0, 0), (23, 59),
                capacity=1000)
            tickets = {key: [t for n in range(count)
                    for t in _sell(channel, slot, code, n)]
                for key, code, count in TICKETS}
            now = dt.datetime.now(dt.timezone.utc).replace(
                tzinfo=None, microsecond=0)
            cards = _cards(company, types, now)
            # What the cron does within a minute of the sales: the holders'
            # gate hashes, which the boxes' syncs read.
            pool.get('scenic.gate.hash').fill()
            # The gates' box, and a second one at the same gates (two boxes
            # cut off together admit what one would refuse).
            box, box2 = Box.create([{'company': company.id, 'name': name}
                    for name in ["E2E box", "E2E box 2"]])
            Gate.write(gates, {'box': box.id})
            token, _ = box.new_enrolment_token()
            token2, _ = box2.new_enrolment_token()
        site = {
            'company': company.id, 'today': today.isoformat(),
            'zones': {'MAIN': main.id, 'MUSEUM': museum.id},
            'gates': {g.code: g.id for g in gates},
            'slot': slot.id, 'channel_key': CHANNEL_KEY,
            'tickets': tickets, 'cards': cards,
            'box': box.id, 'enrolment_token': token,
            'box2': box2.id, 'enrolment_token2': token2,
            }
        transaction.commit()
    return site


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-c', '--config', required=True)
    parser.add_argument('-d', '--database', required=True)
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    site = build(args.database, args.config)
    with open(args.out, 'w') as file:
        json.dump(site, file, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
