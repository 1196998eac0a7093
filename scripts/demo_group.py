"""Demo data of scenic_group, loaded by scripts/load_demo.py (idempotent):

- the OTA partner "Demo OTA" on the `ota` channel: key id `demo-ota`,
  secret `demo-ota-secret`, notice secret `demo-ota-notice-secret`, notices
  to the simulated partner (SCENIC_DEMO_PARTNER_LISTEN, default
  127.0.0.1:8200), a monthly contract at net prices and allotments of 50
  places on the 10:00 slots of the coming week;
- two agencies: "Sunshine Travel" on credit (limit 20,000, billed for the
  persons admitted) and "Blue Sky Tours" against a deposit of 10,000 (on
  the ledger: 1002 → 220301, drawn down by its orders, so its party shows
  the deposit left);
- a month of group history for the three of them (booked and paid through
  the partner booking path at past times, mostly admitted, one no-show),
  and "ticket used" notices of the OTA's recent visits, which trytond-cron
  delivers to the simulated partner.
"""
import datetime as dt
import os
from decimal import Decimal

OTA_KEY = 'demo-ota'
OTA_SECRET = 'demo-ota-secret'
OTA_NOTICE_SECRET = 'demo-ota-notice-secret'
DEFAULT_PARTNER_LISTEN = '127.0.0.1:8200'
HISTORY_DAYS = 30


def partner_notice_url():
    listen = os.environ.get('SCENIC_DEMO_PARTNER_LISTEN',
        DEFAULT_PARTNER_LISTEN)
    return f'http://{listen}/notices'


def load_group_demo(database):
    "Load the demo's partners and history once; return whether it did."
    from trytond.pool import Pool
    from trytond.transaction import Transaction, TransactionError

    from scenic_finance.demo import _run

    def load():
        pool = Pool()
        Module = pool.get('ir.module')
        if not Module.search([('name', '=', 'scenic_group'),
                    ('state', '=', 'activated')]):
            return False
        Partner = pool.get('scenic.group.partner')
        if Partner.search([('key_id', '=', OTA_KEY)]):
            return False
        Company = pool.get('company.company')
        company, = Company.search([], limit=1)
        with Transaction().set_context(company=company.id,
                companies=[company.id]):
            _load(company)
        return True
    # Posting moves (deposits on the ledger, invoices) locks sequences: each
    # part runs in a transaction started again with the locks it asks for.
    extras = {}
    while True:
        try:
            with Transaction().start(database, 0, **extras) as transaction:
                if not load():
                    return False
                transaction.commit()
                break
        except TransactionError as error:
            error.fix(extras)
    _run(database, _invoicing)
    return True


def _load(company):
    from scenic_group import booking, money
    from scenic_group.money import record_charge
    from scenic_group.notice import enqueue_used
    from scenic_group.tests.tools import create_partner
    from scenic_ticket.slot import area_timezone
    from trytond.pool import Pool
    pool = Pool()
    Channel = pool.get('scenic.channel')
    TicketType = pool.get('scenic.ticket.type')
    TimeSlot = pool.get('scenic.time_slot')
    Allotment = pool.get('scenic.group.allotment')
    Entry = pool.get('scenic.group.entry')
    Order = pool.get('scenic.order')
    types = {t.code: t for t in TicketType.search([])}
    channels = {c.code: c for c in Channel.search([])}

    def partner(code, name, kind, channel, **kw):
        created, contract = create_partner(company, code, kind=kind,
            start=dt.date.today() - dt.timedelta(days=HISTORY_DAYS + 5),
            **kw)
        old = created.channel
        created.party.name = name
        created.party.save()
        Partner = created.__class__
        Partner.write([created], {'channel': channel.id})
        Channel.delete([old])
        contract.number = f'2026-{code.upper()}'
        contract.__class__.write([contract], {'number': contract.number})
        return Partner(created.id), contract

    ota, _ = partner('demo-ota-partner', "Demo OTA (演示旅游平台)", 'ota',
        channels['ota'], term='monthly', key_id=OTA_KEY, secret=OTA_SECRET,
        free_sale=True,
        prices=[(types['ADULT'], '100'), (types['CHILD'], '50'),
            (types['STUDENT'], '50')])
    ota.set_notice_secret(OTA_NOTICE_SECRET)
    ota.__class__.write([ota], {'notice_url': partner_notice_url()})
    sunshine, _ = partner('sunshine', "Sunshine Travel (阳光旅行社)",
        'agency', channels['agency'], term='credit', credit_limit='20000',
        bill_admitted=True, free_sale=True,
        prices=[(types['ADULT'], '90'), (types['GROUP10'], '800'),
            (types['STUDENT'], '45')])
    bluesky_channel, = Channel.create([{'company': company.id,
                'code': 'agency-bluesky', 'name': "Blue Sky Tours",
                'kind': 'agency'}])
    TicketType.write([types['GROUP10']],
        {'channels': [('add', [bluesky_channel.id])]})
    bluesky, _ = partner('bluesky', "Blue Sky Tours (蓝天国旅)", 'agency',
        bluesky_channel, term='deposit', free_sale=True,
        prices=[(types['ADULT'], '90'), (types['GROUP10'], '800')])

    tz = area_timezone(company)
    now = dt.datetime.now(tz)
    # The demo's slots start at the machine's today (load_demo.py), which
    # may be the area's yesterday or tomorrow.
    today = min(now.date(), dt.date.today())
    # Allotments of the OTA: the 10:00 slots of the coming week.
    for slot in TimeSlot.search([('zone', '=', None),
                ('date', '>', today),
                ('date', '<=', today + dt.timedelta(days=7)),
                ('start_time', '=', dt.time(10, 0))]):
        Allotment.allot(ota, slot, 50)

    # A month of history, on past slots of their own.
    start = today - dt.timedelta(days=HISTORY_DAYS)
    if money.on_ledger():
        # On the ledger: the bank receives it, 220301 holds it for Blue Sky.
        bank, = pool.get('account.account').search([
                ('company', '=', company.id), ('code', '=', '1002')])
        money.top_up_deposit(bluesky, Decimal('10000'), bank, date=start,
            description="Deposit")
    else:
        Entry.record(bluesky, 'deposit', Decimal('-10000'), date=start,
            description="Deposit")
    past = TimeSlot.create([{'company': company.id, 'date': day,
                'start_time': dt.time(10, 0), 'end_time': dt.time(10, 30),
                'capacity': 300}
            for day in (start + dt.timedelta(days=n)
                for n in range(HISTORY_DAYS))])
    people = iter(range(1, 100000))
    ota_tickets = []
    from scenic_common.idnumber import make_resident_id
    from scenic_ticket.reservation import BookingRequest, Item, Visitor

    def visitors(count):
        result = []
        for _ in range(count):
            n = next(people)
            result.append(Visitor(f"游客{n}", 'resident_id', make_resident_id(
                        '330106', dt.date(1970, 1, 1) + dt.timedelta(n * 7),
                        n % 999 + 1), 'demo'))
        return result

    for n, slot in enumerate(past):
        booked_at = dt.datetime.combine(slot.date, dt.time(8, 0),
            tzinfo=tz) - dt.timedelta(days=1)
        plans = []
        if n % 3 == 0:
            plans.append((sunshine, Item('GROUP10', persons=20,
                        field='items[0]')))
        if n % 4 == 1:
            plans.append((bluesky, Item('ADULT', visitors=visitors(5),
                        field='items[0]')))
        if n % 2 == 0:
            plans.append((ota, Item('ADULT', visitors=visitors(2),
                        field='items[0]')))
        for who, item in plans:
            request = BookingRequest(slot=slot.id, items=[item],
                contact_name="导游王", contact_phone='13800000000')
            poid = f'H-{who.id}-{slot.date:%Y%m%d}'
            order_id, _ = booking.book(who, request, poid,
                leader={'name': "导游王", 'phone': '13800000000'},
                now=booked_at)
            order = booking.pay(who, Order(order_id), Order(order_id).total,
                now=booked_at)
            record_charge(who, order, date=slot.date)
            tickets = sorted(order.tickets, key=lambda t: t.id)
            # Sunshine's group of the 4th day: one of its tickets no-show.
            used = tickets[:-1] if (who == sunshine and n == 3) else tickets
            _mark_used(used, slot)
            if who == ota and slot.date >= today - dt.timedelta(days=3):
                ota_tickets.extend(t.id for t in used)
        if n in (10, 25):
            Entry.record(sunshine, 'payment',
                -Entry.balance(sunshine, until=slot.date), date=slot.date,
                description="Bank transfer")
    Order.settle_arrivals(date=today)
    enqueue_used(ota_tickets)


def _invoicing():
    """Invoice sequences, 30-day terms and the dunning procedure; last
    month's invoice of the partners that had orders then."""
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    Partner = Pool().get('scenic.group.partner')
    company, = Pool().get('company.company').search([], limit=1)
    with Transaction().set_context(company=company.id,
            companies=[company.id]):
        _invoice_partners(company, Partner.search(
                [('company', '=', company.id)]))


def _invoice_partners(company, partners):
    from scenic_group.invoice import (
        invoice_month, setup_dunning, setup_invoicing)
    from trytond.pool import Pool
    Term = Pool().get('account.invoice.payment_term')
    Party = Pool().get('party.party')
    today = dt.date.today()
    setup_invoicing(company)
    setup_dunning(company)
    term, = Term.create([{'name': "30 days", 'lines': [('create', [{
                        'type': 'remainder',
                        'relativedeltas': [('create', [{'days': 30}])],
                        }])]}])
    Party.write([p.party for p in partners],
        {'customer_payment_term': term.id})
    last = today.replace(day=1) - dt.timedelta(days=1)
    Entry = Pool().get('scenic.group.entry')
    for partner in partners:
        if Entry.search([('partner', '=', partner.id),
                    ('kind', 'in', ['charge', 'refund', 'no_show']),
                    ('date', '>=', last.replace(day=1)),
                    ('date', '<=', last)], limit=1):
            invoice_month(partner, last.year, last.month)


def _mark_used(tickets, slot):
    "Admissions of the history, as the gates would have recorded them."
    from scenic_ticket import reservation
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    table = Pool().get('scenic.ticket').__table__()
    cursor = Transaction().connection.cursor()
    if tickets:
        cursor.execute(*table.update([table.state], ['used'],
                where=table.id.in_([t.id for t in tickets])))
        reservation.mark_orders_used([tickets[0].order.id])
