"Helpers of the scenic_group tests (and the demo)."
import datetime as dt
from decimal import Decimal

from trytond.pool import Pool


def create_partner(company, code, kind='agency', term='prepaid',
        credit_limit=None, prices=(), key_id=None, secret=None,
        bill_admitted=False, start=dt.date(2020, 1, 1), free_sale=False,
        ota_codes=False):
    """A partner with its own channel and an active contract.

    `prices`: [(ticket type, price)] of the contract."""
    pool = Pool()
    Channel = pool.get('scenic.channel')
    Party = pool.get('party.party')
    Partner = pool.get('scenic.group.partner')
    Contract = pool.get('scenic.group.contract')
    channel, = Channel.create([{'company': company.id, 'name': code,
                'code': code, 'kind': 'ota' if kind == 'ota' else 'agency'}])
    party, = Party.create([{'name': code.title()}])
    partner, = Partner.create([{'company': company.id, 'party': party.id,
                'kind': kind, 'channel': channel.id, 'key_id': key_id}])
    if secret:
        partner.set_secret(secret)
    contract, = Contract.create([{
                'company': company.id, 'partner': partner.id,
                'number': f'C-{code}', 'start_date': start,
                'payment_term': term,
                'credit_limit': (Decimal(credit_limit)
                    if credit_limit is not None else None),
                'bill_admitted': bill_admitted, 'free_sale': free_sale,
                'ota_codes': ota_codes,
                'prices': [('create', [{'ticket_type': t.id,
                                'price': Decimal(p)} for t, p in prices])],
                }])
    Contract.activate([contract])
    return partner, contract
