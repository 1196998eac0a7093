"""Every user-visible string of every Scenic module has its Simplified
Chinese translation in the module's locale/zh_CN.po.

The strings are taken the way Tryton takes them: all the modules (with their
optional dependencies) activated, then the "Set Translations" wizard (view
and report strings) and, per module, what ir.translation exports as its
English .po template.  A failure lists the module and the missing
msgctxt/msgid pairs.
"""
import pathlib
import re
import unittest

import polib

from trytond.modules import get_modules
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction

ADDONS = pathlib.Path(__file__).resolve().parents[2]
MODULES = [
    'scenic_ticket', 'scenic_gate', 'scenic_finance', 'scenic_group',
    'scenic_counter', 'scenic_account_cn']
# The optional dependencies (extras_depend) that register more models, as
# far as they are installed.
EXTRAS = ['account_invoice', 'account_dunning', 'sale_advance_payment']
LANG = 'zh_CN'
# The named placeholders gettext fills in (a bare "3%" in a tax name is
# just text).
PLACEHOLDER = re.compile(r'%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[sdifr]')


def po_entries(module):
    "{(msgctxt, msgid): entry} of a module's locale/zh_CN.po"
    path = ADDONS / module / 'locale' / f'{LANG}.po'
    if not path.exists():
        return {}
    return {(e.msgctxt, e.msgid): e for e in polib.pofile(str(path))}


def placeholders(text):
    return sorted(PLACEHOLDER.findall(text))


class TranslationTestCase(unittest.TestCase):
    "Test the zh_CN translations of the Scenic modules"

    @classmethod
    def setUpClass(cls):
        activate_module(MODULES + [
                m for m in EXTRAS if m in get_modules()])

    def source_strings(self):
        "{module: {(msgctxt, msgid)}} as Tryton would export them"
        pool = Pool()
        Translation = pool.get('ir.translation')
        TranslationSet = pool.get('ir.translation.set', type='wizard')

        session_id, _, _ = TranslationSet.create()
        set_ = TranslationSet(session_id)
        set_.set_report()
        set_.set_view()

        result = {}
        for module in MODULES:
            content = Translation.translation_export('en', module)
            entries = polib.pofile(content.decode('utf-8')) if content else []
            result[module] = {
                (e.msgctxt, e.msgid) for e in entries if e.msgid.strip()}
        return result

    @with_transaction()
    def test_no_missing_translation(self):
        "Every module's zh_CN.po translates all its strings"
        missing = []
        for module, strings in self.source_strings().items():
            translated = {
                k for k, e in po_entries(module).items()
                if e.msgstr.strip() and 'fuzzy' not in e.flags}
            lacking = sorted(strings - translated)
            if lacking:
                missing.append(f'{module}/locale/{LANG}.po lacks '
                    f'{len(lacking)}:')
                missing.extend(
                    f'    msgctxt "{c}"  msgid {m!r}' for c, m in lacking)
        self.assertFalse(missing, '\n' + '\n'.join(missing))

    def test_placeholders_kept(self):
        "A translation keeps the %(name)s placeholders of its English"
        wrong = []
        for module in MODULES:
            for (ctxt, msgid), entry in po_entries(module).items():
                if not entry.msgstr:
                    continue
                if placeholders(msgid) != placeholders(entry.msgstr):
                    wrong.append(f'{module}: "{ctxt}" {msgid!r} -> '
                        f'{entry.msgstr!r}')
        self.assertFalse(wrong, '\n' + '\n'.join(wrong))

    def test_no_duplicate_entry(self):
        "No msgctxt/msgid pair is twice in a zh_CN.po"
        twice = []
        for module in MODULES:
            path = ADDONS / module / 'locale' / f'{LANG}.po'
            seen = set()
            for entry in polib.pofile(str(path)):
                key = (entry.msgctxt, entry.msgid)
                if key in seen:
                    twice.append(f'{module}: "{key[0]}" {key[1]!r}')
                seen.add(key)
        self.assertFalse(twice, '\n' + '\n'.join(twice))
