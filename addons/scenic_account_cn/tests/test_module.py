import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

from trytond.modules.company.tests import (
    CompanyTestMixin, create_company, set_company)
from trytond.modules.currency.tests import create_currency
from trytond.pool import Pool
from trytond.tests.test_tryton import ModuleTestCase, with_transaction

from ..chart import accounts_by_code, create_chart

MODULE = Path(__file__).resolve().parent.parent
LISTED = {
    '1001': "库存现金", '1002': "银行存款", '1012': "其他货币资金",
    '101201': "微信", '101202': "支付宝", '101203': "银联",
    '1122': "应收账款", '1123': "预付账款", '1221': "其他应收款",
    '1405': "库存商品", '1601': "固定资产", '1602': "累计折旧",
    '1801': "长期待摊费用", '1901': "待处理财产损溢",
    '2202': "应付账款", '2203': "预收账款", '2211': "应付职工薪酬",
    '2221': "应交税费", '222101': "应交增值税", '22210101': "销项税额",
    '222105': "待转销项税额", '222106': "简易计税", '2241': "其他应付款",
    '2401': "递延收益", '3001': "实收资本", '3101': "盈余公积",
    '3103': "本年利润", '3104': "利润分配", '5001': "主营业务收入",
    '5051': "其他业务收入", '5301': "营业外收入", '5401': "主营业务成本",
    '5402': "其他业务成本", '5403': "税金及附加", '5601': "销售费用",
    '5602': "管理费用", '5603': "财务费用", '5711': "营业外支出",
    '5801': "所得税费用",
    }


def load_chinese():
    "Make zh_CN translatable and load this module's translations."
    pool = Pool()
    Lang = pool.get('ir.lang')
    Translation = pool.get('ir.translation')
    lang, = Lang.search([('code', '=', 'zh_CN')])
    Lang.write([lang], {'translatable': True})
    Translation.translation_import(
        'zh_CN', 'scenic_account_cn', str(MODULE / 'locale' / 'zh_CN.po'))


class ScenicAccountCnTestCase(CompanyTestMixin, ModuleTestCase):
    "Test the Chinese small-enterprise chart"
    module = 'scenic_account_cn'

    def test_translations_cover_every_record(self):
        "Every template record of the XML has its Chinese name"
        xml = (MODULE / 'account_cn.xml').read_text()
        po = (MODULE / 'locale' / 'zh_CN.po').read_text()
        ids = set(re.findall(
                r'<record id="(\w+)" model="account\.(?:account\.type\.'
                r'template|account\.template|tax\.template|tax\.code\.'
                r'template|tax\.group)"', xml))
        translated = set(re.findall(r'msgctxt "model:[\w.]+,name:(\w+)"', po))
        self.assertTrue(ids)
        self.assertEqual(ids - translated, set())

    @with_transaction()
    def test_chart_created_by_wizard_in_chinese(self):
        "The wizard creates the listed codes with their Chinese names"
        pool = Pool()
        Tax = pool.get('account.tax')
        TaxCode = pool.get('account.tax.code')
        load_chinese()
        company = create_company(currency=create_currency('CNY'))
        with set_company(company):
            create_chart(company, language='zh_CN')
            accounts = accounts_by_code(company)
            for code, name in LISTED.items():
                self.assertEqual(accounts[code].name, name, code)
            self.assertEqual(accounts['101201'].parent, accounts['1012'])
            self.assertEqual(accounts['22210101'].parent, accounts['222101'])
            self.assertEqual(accounts['222101'].parent, accounts['2221'])
            self.assertTrue(accounts['1122'].party_required)
            self.assertTrue(accounts['1122'].reconcile)
            self.assertEqual(accounts['2203'].type.statement, 'balance')
            self.assertFalse(accounts['2203'].type.revenue)
            self.assertTrue(accounts['5001'].type.revenue)
            self.assertEqual(accounts['5001'].type.statement, 'income')
            self.assertTrue(accounts['5603'].type.expense)
            self.assertEqual(company.party.account_receivable_used,
                accounts['1122'])

            taxes = {t.rate: t for t in Tax.search([
                        ('company', '=', company.id)])}
            self.assertEqual(set(taxes), {
                    Decimal('0.06'), Decimal('0.03'), Decimal('0.01')})
            self.assertEqual(taxes[Decimal('0.06')].invoice_account,
                accounts['22210101'])
            self.assertEqual(taxes[Decimal('0.03')].invoice_account,
                accounts['222106'])
            small = taxes[Decimal('0.01')]
            self.assertEqual(small.end_date, dt.date(2027, 12, 31))
            self.assertEqual(small.name, "增值税 1% 小规模")
            self.assertIsNone(taxes[Decimal('0.06')].end_date)
            codes = TaxCode.search([('company', '=', company.id)])
            by_tax = {}
            for code in codes:
                for line in code.lines:
                    by_tax.setdefault(line.tax.rate, set()).add(line.amount)
            self.assertEqual(by_tax, {r: {'base', 'tax'} for r in taxes})

    @with_transaction()
    def test_chart_in_english(self):
        "Run in English the wizard gives the English names"
        company = create_company(currency=create_currency('CNY'))
        with set_company(company):
            create_chart(company, language='en')
            accounts = accounts_by_code(company)
            self.assertEqual(accounts['2203'].name, "Advances from Customers")
            self.assertEqual(accounts['101202'].name, "Alipay")


del ModuleTestCase
