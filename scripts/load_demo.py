#!/usr/bin/env python3
"""Load the Scenic demo: one scenic area with zones, ticket types, time slots,
price rules, visitors, a chart of accounts, fiscal years, one user per role,
the main gate (MAIN-IN, MAIN-OUT) with its IoT box, the kiosk's desk box,
and two demo cards.

Idempotent: if the demo area exists, only what is missing of the gates is
added (a demo loaded before scenic_gate gets them).

    python scripts/load_demo.py -c var/trytond.conf -d demo
    python scripts/load_demo.py -c var/trytond.conf -d demo \
        --enrol-box var/iotbox/credentials.json [--box "Kiosk 1 box"]

--enrol-box enrols the demo's gate box, or --box the named one (a new
secret each time) and writes its credentials for `scenic-iotbox run`
({"box", "secret", "area", "gate_generations"}, mode 0600); nothing else
is loaded then.
"""
import argparse
import datetime as dt
import json
import os
import socket
import sys
from decimal import Decimal
from pathlib import Path

from load_demo_counter import load_counter

AREA_NAME = "Cloud Mountain Scenic Area"

# login, name, role, language; the password is the login + '-demo'
DEMO_USERS = [
    ('supervisor', "Wang Fang (Supervisor)", 'supervisor', 'zh_CN'),
    ('cashier', "Zhang Wei (Cashier)", 'cashier', 'zh_CN'),
    ('finance', "Liu Yang (Finance)", 'finance', 'zh_CN'),
    ('marketing', "Chen Jing (Marketing)", 'marketing', 'en'),
    ('gate', "Li Na (Gate Staff)", 'gate', 'zh_CN'),
    ]

ZONES = [
    # code, name, parent code, daily max, instantaneous max
    ('MAIN', "Main Park", None, 10080, 5600),
    ('CABLE', "Cable Car", 'MAIN', 3000, 400),
    ('MUSEUM', "Mountain Museum", 'MAIN', 2000, 300),
    ('SUMMIT', "Summit Trail", 'MAIN', 4000, 1200),
    ]

# Names in Simplified Chinese, by code, for what the visitors see.
ZH_NAMES = {
    'scenic.zone': {
        'MAIN': "景区主园", 'CABLE': "索道", 'MUSEUM': "山岳博物馆",
        'SUMMIT': "登顶步道"},
    'scenic.ticket.type': {
        'ADULT': "成人票", 'CHILD': "儿童票（1.2–1.5米）",
        'SENIOR': "老人票（60岁以上）", 'STUDENT': "学生票",
        'FREE': "政策免票", 'COMBO': "门票+索道联票", 'GROUP10': "10人团队票",
        'REENTRY2': "两日二次入园票", 'ANNUAL': "年卡", 'COUNT10': "10次卡"},
    'scenic.channel': {
        'box_office': "售票窗口", 'kiosk': "自助售票机", 'web': "网上预约",
        'ota': "OTA渠道", 'agency': "旅行社"},
    'scenic.gate': {'MAIN-IN': "南门入口", 'MAIN-OUT': "南门出口"},
    }

CHANNELS = [
    ('box_office', "Box Office", 'box_office'),
    ('kiosk', "Self-Service Kiosk", 'kiosk'),
    ('web', "Web Booking", 'online'),
    ('ota', "OTA Partners", 'ota'),
    ('agency', "Travel Agencies", 'agency'),
    ]

TICKET_TYPES = [
    dict(code='ADULT', name="Adult", category='adult', base_price='120',
        zones=['MAIN']),
    dict(code='CHILD', name="Child (1.2–1.5 m)", category='child',
        base_price='60', zones=['MAIN']),
    dict(code='SENIOR', name="Senior (60+)", category='senior',
        base_price='60', zones=['MAIN']),
    dict(code='STUDENT', name="Student", category='student',
        base_price='60', zones=['MAIN']),
    dict(code='FREE', name="Free by Policy", category='free',
        base_price='0', zones=['MAIN'],
        channels=['box_office', 'web']),
    dict(code='COMBO', name="Park + Cable Car", category='combo',
        base_price='220', zones=['MAIN', 'CABLE']),
    dict(code='GROUP10', name="Group of 10", category='group',
        base_price='960', persons=10, real_name=False, id_limit=0,
        zones=['MAIN'], channels=['box_office', 'agency', 'ota']),
    dict(code='REENTRY2', name="Two-Day Re-entry Pass", category='adult',
        base_price='180', validity='days_from_first_use', validity_days=2,
        entry_mode='multiple', entries_allowed=4, reentry_binding='photo',
        zones=['MAIN', 'MUSEUM', 'SUMMIT']),
    dict(code='ANNUAL', name="Annual Card", category='annual_card',
        base_price='360', validity='days_from_first_use', validity_days=365,
        entry_mode='unlimited', reentry_binding='face', id_limit=0,
        zones=['MAIN', 'MUSEUM', 'SUMMIT'], channels=['box_office']),
    dict(code='COUNT10', name="10-Visit Card", category='count_card',
        base_price='800', validity='days_from_first_use', validity_days=365,
        entry_mode='multiple', entries_allowed=10, reentry_binding='id_card',
        id_limit=0, zones=['MAIN'], channels=['box_office']),
    ]

PRICE_RULES = [
    # name, priority, method, value, extra conditions
    ("Public holiday adult price", 10, 'fixed', '150',
        dict(day_kind='holiday', ticket_types=['ADULT'], final=True)),
    ("Weekend", 20, 'percentage', '20', dict(weekdays=['5', '6'])),
    ("Winter season", 30, 'percentage', '-20',
        dict(date_from=dt.date(2026, 12, 1), date_to=dt.date(2027, 2, 28))),
    ("Early bird (before 09:00)", 40, 'amount', '-10',
        dict(time_to=dt.time(9, 0))),
    ("High demand (80 % sold)", 50, 'percentage', '10',
        dict(min_fill_ratio=Decimal('0.80'))),
    ("OTA commission", 60, 'amount', '-5', dict(channels=['ota'])),
    ]

HOLIDAYS = [
    (dt.date(2027, 1, 1), "New Year's Day"),
    (dt.date(2027, 2, 6), "Spring Festival"),
    (dt.date(2027, 2, 7), "Spring Festival"),
    (dt.date(2027, 2, 8), "Spring Festival"),
    ]

DEMO_VISITORS = [
    ("Li Lei", '110105', dt.date(1985, 6, 15), 123),
    ("Han Meimei", '310104', dt.date(1990, 3, 8), 246),
    ("Zhao Qiang", '440305', dt.date(1978, 11, 30), 357),
    ]

# The main gate: code, name, zone, direction, lanes. The demo's box serves
# both (scripts/demo.py runs it on 127.0.0.1:8100 with a simulated
# turnstile: lanes 1-2 in, 3-4 out).
GATES = [
    ('MAIN-IN', "Main Entrance", 'MAIN', 'in', 2),
    ('MAIN-OUT', "Main Exit", 'MAIN', 'out', 2),
    ]
DEMO_BOX = "Main gate box"
# The kiosk's desk box (scripts/demo.py runs it on 127.0.0.1:8101 with a
# simulated ID card reader and printer): no gate, its devices' health in
# the registry (Gates > Boxes).
KIOSK_BOX = "Kiosk 1 box"

# Cards with known RFID UIDs, so that anyone can tap one at the demo box:
# UID, card type, holder (index in DEMO_VISITORS), entries left.
DEMO_CARDS = [
    ('04A1B2C3D4E5F6', 'ANNUAL', 0, None),
    ('04C0FFEE100001', 'COUNT10', 1, 10),
    ]

SLOT_DAYS = 14
DEMO_WEB_KEY = 'demo-web-key'
AREA_DAILY_MAX = 10080
AREA_INSTANT_MAX = 5600


def activate_modules(names):
    from proteus import Model, Wizard
    Module = Model.get('ir.module')
    modules = Module.find([
            ('name', 'in', names),
            ('state', '!=', 'activated'),
            ])
    if modules:
        Module.click(modules, 'activate')
        Wizard('ir.module.activate_upgrade').execute('upgrade')


def create_cny():
    from proteus import Model
    Currency = Model.get('currency.currency')
    found = Currency.find([('code', '=', 'CNY')])
    if found:
        return found[0]
    currency = Currency(
        name="Chinese Yuan Renminbi", code='CNY', numeric_code='156',
        symbol='¥', digits=2, rounding=Decimal('0.01'))
    currency.save()
    return currency


def create_area(currency):
    from proteus import Model
    from trytond.modules.company.tests.tools import create_company
    Party = Model.get('party.party')
    party = Party(name=AREA_NAME)
    party.save()
    create_company(party=party, currency=currency)
    Company = Model.get('company.company')
    company, = Company.find([('party', '=', party.id)])
    company.timezone = 'Asia/Shanghai'
    company.scenic_daily_max = AREA_DAILY_MAX
    company.scenic_instant_max = AREA_INSTANT_MAX
    company.save()
    return company


def create_accounting(company, today):
    "The Chinese chart, fiscal years and posting rule (scenic_finance)."
    from proteus.config import get_config
    from scenic_finance import demo
    demo.accounting(get_config().database_name, company.id,
        {(today - dt.timedelta(40)).year, today.year,
            (today + dt.timedelta(SLOT_DAYS)).year})


def set_channel_key(channel_id, key):
    "A known key, so that anyone can try the booking API on the demo."
    from proteus.config import get_config
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    with Transaction().start(get_config().database_name, 0) as transaction:
        Pool().get('scenic.channel')(channel_id).set_api_key(key)
        transaction.commit()


def create_catalogue(company, today):
    from proteus import Model
    Zone = Model.get('scenic.zone')
    Channel = Model.get('scenic.channel')
    TicketType = Model.get('scenic.ticket.type')
    CalendarDay = Model.get('scenic.calendar.day')
    PriceRule = Model.get('scenic.price.rule')

    zones = {}
    for code, name, parent, daily, instant in ZONES:
        zone = Zone(company=company, code=code, name=name,
            daily_max=daily, instant_max=instant,
            parent=zones.get(parent))
        zone.save()
        zones[code] = zone

    channels = {}
    for code, name, kind in CHANNELS:
        channel = Channel(company=company, code=code, name=name, kind=kind,
            booking_page=(code == 'web'))
        channel.save()
        channels[code] = channel
    set_channel_key(channels['web'].id, DEMO_WEB_KEY)

    types = {}
    for values in TICKET_TYPES:
        values = values.copy()
        zone_codes = values.pop('zones', [])
        channel_codes = values.pop('channels', [])
        values['base_price'] = Decimal(values['base_price'])
        ttype = TicketType(company=company, **values)
        ttype.zones.extend([Zone(zones[c].id) for c in zone_codes])
        ttype.channels.extend([Channel(channels[c].id) for c in channel_codes])
        ttype.save()
        types[ttype.code] = ttype

    for date, name in HOLIDAYS:
        CalendarDay(company=company, date=date, kind='holiday',
            name=name).save()

    for name, priority, method, value, extra in PRICE_RULES:
        extra = extra.copy()
        type_codes = extra.pop('ticket_types', [])
        channel_codes = extra.pop('channels', [])
        rule = PriceRule(company=company, name=name, priority=priority,
            method=method, value=Decimal(value), **extra)
        rule.ticket_types.extend([TicketType(types[c].id) for c in type_codes])
        rule.channels.extend([Channel(channels[c].id) for c in channel_codes])
        rule.save()

    # Area-wide entry slots; the cable car runs hourly slots of its own.
    generate_slots(today, dt.time(8, 0), dt.time(17, 0), 30, 500)
    generate_slots(today, dt.time(8, 30), dt.time(16, 30), 60, 300,
        zone=zones['CABLE'])


def generate_slots(today, first, last, minutes, capacity, zone=None):
    from proteus import Wizard
    generate = Wizard('scenic.time_slot.generate')
    generate.form.zone = zone
    generate.form.start_date = today
    generate.form.end_date = today + dt.timedelta(days=SLOT_DAYS - 1)
    generate.form.first_start = first
    generate.form.last_end = last
    generate.form.interval = minutes
    generate.form.capacity = capacity
    generate.execute('generate')


def translate_names(models=None):
    "Give the catalogue its Chinese names (the master names are English)."
    from proteus import Model
    from proteus.config import get_config
    with get_config().set_context(language='zh_CN'):
        for model, names in ZH_NAMES.items():
            if models is not None and model not in models:
                continue
            Model_ = Model.get(model)
            for record in Model_.find([('code', 'in', list(names))]):
                record.name = names[record.code]
                record.save()


def create_visitors(company):
    from proteus import Model
    from scenic_common.idnumber import make_resident_id
    Visitor = Model.get('scenic.visitor')
    for name, area, birth, sequence in DEMO_VISITORS:
        Visitor(company=company, name=name, id_type='resident_id',
            id_number=make_resident_id(area, birth, sequence)).save()
    Visitor(company=company, name="Emma Schmidt", id_type='passport',
        id_number='C01X00T47').save()


def create_users(company):
    from proteus import Model
    User = Model.get('res.user')
    Role = Model.get('res.role')
    Lang = Model.get('ir.lang')
    ModelData = Model.get('ir.model.data')
    langs = {l.code: l for l in Lang.find([('code', 'in', ['en', 'zh_CN'])])}
    for login, name, role, lang in DEMO_USERS:
        user = User(login=login, name=name, password=f'{login}-demo',
            language=langs.get(lang))
        user.companies.append(type(company)(company.id))
        user.company = type(company)(company.id)
        user_role = user.roles.new()
        user_role.role = Role(
            ModelData.get_id('scenic_ticket', f'role_{role}', {}))
        user.save()


def create_gates(company):
    """The main gate, its box and the demo cards; only what is missing
    (a demo loaded before scenic_gate existed gets them on update)."""
    from proteus import Model
    Gate = Model.get('scenic.gate')
    Box = Model.get('scenic.gate.box')
    Zone = Model.get('scenic.zone')
    Card = Model.get('scenic.card')
    TicketType = Model.get('scenic.ticket.type')
    Visitor = Model.get('scenic.visitor')
    if Gate.find([('code', 'in', [g[0] for g in GATES])]):
        return False
    boxes = Box.find([('name', '=', DEMO_BOX)])
    box = boxes[0] if boxes else Box(company=company, name=DEMO_BOX)
    box.save()
    zones = {z.code: z for z in Zone.find([])}
    for code, name, zone, direction, lanes in GATES:
        Gate(company=company, code=code, name=name, zone=zones[zone],
            direction=direction, lanes=lanes, box=box).save()
    translate_names(['scenic.gate'])

    types = {t.code: t for t in TicketType.find([
                ('code', 'in', [c[1] for c in DEMO_CARDS])])}
    visitors = Visitor.find([], order=[('id', 'ASC')])
    now = dt.datetime.now(dt.timezone.utc).replace(
        tzinfo=None, microsecond=0)
    for uid, type_code, holder, remaining in DEMO_CARDS:
        ttype = types[type_code]
        Card(company=company, number=uid, ticket_type=ttype,
            holder=visitors[holder], valid_from=now,
            valid_until=now + dt.timedelta(days=ttype.validity_days),
            remaining=remaining).save()
    return True


def create_kiosk_box(company):
    "The kiosk's desk box in the device registry, if missing."
    from proteus import Model
    Box = Model.get('scenic.gate.box')
    if Box.find([('name', '=', KIOSK_BOX)]):
        return False
    Box(company=company, name=KIOSK_BOX).save()
    return True


def enrol_box(database, config_file, path, name=DEMO_BOX):
    """Enrol the demo's box `name` (a new secret) and write its credentials
    to path for `scenic-iotbox run` (box.credentials)."""
    from proteus import config
    config.set_trytond(database=database, config_file=config_file)
    from scenic_gate.gatehash import generation_answer
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    with Transaction().start(database, 0) as transaction:
        Box = Pool().get('scenic.gate.box')
        boxes = Box.search([('name', '=', name)], limit=1)
        if not boxes:
            raise SystemExit(f"The demo box {name!r} is not in database "
                f"{database!r}: load the demo first.")
        token, _ = boxes[0].new_enrolment_token()
        box, secret = Box.enrol(token, hostname=socket.gethostname())
        credentials = {'box': box.id, 'secret': secret,
            'area': box.company.id,
            'gate_generations': generation_answer(box.company.id)}
        transaction.commit()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as file:
        json.dump(credentials, file)
    print(f"Demo box {box.id} enrolled: credentials in {path}.")


def finance_history(database, company_id):
    "A month of posted, settled and reconciled history (scenic_finance)."
    # Imported once proteus has configured trytond, like the other parts.
    from scenic_finance import demo as finance_demo
    finance_demo.history(database, company_id)


def load_group_demo(database):
    "Partners, contracts, allotments and group history (demo_group.py)."
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from demo_group import load_group_demo
    if load_group_demo(database):
        print(f"Demo partners and group history loaded in {database!r}.")


def load(database, config_file):
    from proteus import Model, config

    config.set_trytond(database=database, config_file=config_file)
    activate_modules(['scenic_ticket', 'scenic_gate', 'account', 'user_role',
            'scenic_group', 'scenic_finance', 'account_invoice',
            'account_dunning', 'account_credit_limit', 'account_deposit'])

    Company = Model.get('company.company')
    User = Model.get('res.user')
    if Company.find([('party.name', '=', AREA_NAME)]):
        # Users are created last: without them an earlier load stopped
        # half-way (proteus commits each call).
        logins = [u[0] for u in DEMO_USERS]
        if len(User.find([('login', 'in', logins)])) < len(logins):
            raise SystemExit(
                f"The demo data in database {database!r} are incomplete: "
                "an earlier load was interrupted. Delete that database "
                "(for SQLite, its .sqlite file) and run the demo again.")
        company, = Company.find([('party.name', '=', AREA_NAME)])
        if create_gates(company):
            print(f"Demo gates added to database {database!r}.")
        if create_kiosk_box(company):
            print(f"Demo kiosk box added to database {database!r}.")
        load_group_demo(database)
        load_counter(database, company.id)  # scenic_counter's box office
        print(f"Demo data already loaded in database {database!r}.")
        return False
    today = dt.date.today()
    company = create_area(create_cny())
    create_accounting(company, today)
    create_catalogue(company, today)
    translate_names()
    create_visitors(company)
    create_gates(company)
    create_kiosk_box(company)
    finance_history(database, company.id)
    create_users(company)
    load_group_demo(database)
    load_counter(database, company.id)  # scenic_counter's box office
    print(f"Demo data loaded in database {database!r}: {AREA_NAME}.")
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-c', '--config', required=True,
        help="trytond configuration file")
    parser.add_argument('-d', '--database', default='demo')
    parser.add_argument('--enrol-box', metavar='PATH',
        help="only enrol the demo's box and write its credentials to PATH")
    parser.add_argument('--box', default=DEMO_BOX,
        help="the box --enrol-box enrols (default: %(default)r; the "
        f"kiosk's: {KIOSK_BOX!r})")
    args = parser.parse_args(argv)
    if args.enrol_box:
        enrol_box(args.database, args.config, args.enrol_box, args.box)
    else:
        load(args.database, args.config)


if __name__ == '__main__':
    sys.exit(main())
