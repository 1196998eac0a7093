"""The demo's box office (scenic_counter): two ticket windows and a kiosk
on sale_point, their payment methods and cash transfer types, and a shift
open on window 1 for the demo cashier (`cashier` / `cashier-demo`).

Called by scripts/load_demo.py once the area is loaded; idempotent.
"""
from decimal import Decimal

WINDOWS = [
    # name, kind, channel code, sequence prefix
    ("售票窗口 1 Window 1", 'window', 'box_office', 'W1-'),
    ("售票窗口 2 Window 2", 'window', 'box_office', 'W2-'),
    ("自助机 1 Kiosk 1", 'kiosk', 'kiosk', 'K1-'),
    ]
METHODS = [
    # name, provider
    ("现金 Cash", 'cash'),
    ("银联卡 UnionPay", 'unionpay'),
    ("微信支付 WeChat Pay", 'wechat'),
    ("支付宝 Alipay", 'alipay'),
    ("模拟支付 Simulated", 'simulated'),
    ]
FLOAT = Decimal('500')
KIOSK_BOX = "Kiosk 1 box"   # load_demo.KIOSK_BOX
# The kiosk's channel key: the kiosk page keeps it in the kiosk PC's local
# storage (README: /demo/scenic/kiosk#key=demo-kiosk-key).
KIOSK_KEY = 'demo-kiosk-key'


def load_counter(database, company_id, cashier_login='cashier'):
    "Add the box office to the demo area (once)."
    from proteus import Model, Wizard
    Module = Model.get('ir.module')
    modules = Module.find([('name', '=', 'scenic_counter'),
            ('state', '!=', 'activated')])
    if modules:
        Module.click(modules, 'activate')
        Wizard('ir.module.activate_upgrade').execute('upgrade')

    from scenic_counter import txn
    from trytond.pool import Pool
    from trytond.transaction import Transaction

    def work():
        pool = Pool()
        Point = pool.get('sale.point')
        if Point.search([('company', '=', company_id),
                    ('scenic_kind', '!=', None)]):
            return False
        with Transaction().set_context(company=company_id,
                companies=[company_id]):
            _create(pool, company_id, cashier_login)
        return True
    if txn.run(database, 0, work):
        print("Demo box office loaded: 2 windows, 1 kiosk, a shift open "
            f"for {cashier_login!r} on window 1.")


def _create(pool, company_id, cashier_login):
    from trytond.transaction import Transaction
    Account = pool.get('account.account')
    Channel = pool.get('scenic.channel')
    Journal = pool.get('account.journal')
    Location = pool.get('stock.location')
    Method = pool.get('sale.point.payment.method')
    ModelData = pool.get('ir.model.data')
    Point = pool.get('sale.point')
    Sequence = pool.get('ir.sequence.strict')
    Session = pool.get('sale.point.cash.session')
    Template = pool.get('product.template')
    TicketType = pool.get('scenic.ticket.type')
    TransferType = pool.get('sale.point.cash.transfer.type')
    User = pool.get('res.user')

    # Ticket types made before scenic_counter was active: salable now.
    templates = [t.product.template for t in TicketType.search(
            [('company', '=', company_id)]) if t.product]
    for template in templates:
        Template.write([template], {'salable': True,
                'sale_uom': template.default_uom.id})

    def account(kind):
        accounts = Account.search([('company', '=', company_id),
                ('type.' + kind, '=', True), ('closed', '!=', True)],
            limit=1)
        return accounts[0]
    cash_account = account('receivable')
    loss_account = account('expense')
    revenue, = Journal.search([('type', '=', 'revenue')], limit=1)
    cash_journal, = Journal.search([('type', '=', 'cash')], limit=1)
    storage, = Location.search([('code', '=', 'STO')])
    customer, = Location.search([('code', '=', 'CUS')])
    difference, float_type = TransferType.create([{
                'company': company_id, 'name': "长短款 Shortage/overage",
                'journal': cash_journal.id, 'account': loss_account.id,
                }, {
                'company': company_id, 'name': "备用金 Float from safe",
                'journal': cash_journal.id, 'account': cash_account.id,
                }])
    channels = {c.code: c for c in Channel.search(
            [('company', '=', company_id)])}
    sequence_type = ModelData.get_id('sale_point', 'sequence_type_sale')
    points = []
    for name, kind, channel, prefix in WINDOWS:
        sequence, = Sequence.create([{'name': name, 'company': company_id,
                    'sequence_type': sequence_type, 'prefix': prefix}])
        points.extend(Point.create([{
                        'name': name, 'company': company_id,
                        'journal': revenue.id, 'sequence': sequence.id,
                        'storage_location': storage.id,
                        'customer_location': customer.id,
                        'scenic_kind': kind,
                        'scenic_channel': channels[channel].id,
                        'cash_tolerance': Decimal('5'),
                        'difference_transfer_type': difference.id,
                        'float_transfer_type': float_type.id,
                        }]))
    # The kiosk's desk box (load_demo.KIOSK_BOX) in the device registry:
    # its health shows on the kiosk. Its local address stays unset, as the
    # demo chooses the box's port when it starts (the kiosk URL's
    # fragment gives it to the page).
    Box = pool.get('scenic.gate.box')
    boxes = Box.search([('company', '=', company_id),
            ('name', '=', KIOSK_BOX)], limit=1)
    if boxes:
        Point.write([p for p in points if p.scenic_kind == 'kiosk'],
            {'box': boxes[0].id})
    Method.create([{'company': company_id, 'name': name,
                'account': cash_account.id, 'cash': provider == 'cash',
                'scenic_provider': provider} for name, provider in METHODS])
    channels['kiosk'].set_api_key(KIOSK_KEY)
    cashier, = User.search([('login', '=', cashier_login)])
    with Transaction().set_user(cashier.id):
        Session.open_shift(points[0], FLOAT)
