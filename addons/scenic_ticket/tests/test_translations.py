"""Every user-visible string of every Scenic module has its Simplified
Chinese translation in the module's locale/zh_CN.po, and every label of
the web pages (booking page, counter, kiosk) exists in both languages.

The strings are taken the way Tryton takes them: the modules (with their
installed optional dependencies) activated, then the "Set Translations"
wizard (view and report strings) and, per module, what ir.translation
exports as its English .po template.  A failure lists the module and the
missing msgctxt/msgid pairs.
"""
import pathlib
import re
import unittest

from trytond import backend

import polib

from trytond.modules import get_module_info, get_modules
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, drop_db, with_transaction

# Source checks give the same answer on every backend: they run in the
# SQLite tier only (the PostgreSQL tier is the suite's longest).
SOURCE_ONLY = unittest.skipIf(backend.name == 'postgresql',
    "source check, run on SQLite")


ADDONS = pathlib.Path(__file__).resolve().parents[2]
MODULES = [
    'scenic_ticket', 'scenic_gate', 'scenic_finance', 'scenic_group',
    'scenic_counter', 'scenic_account_cn']
LANG = 'zh_CN'
# The named placeholders gettext fills in (a bare "3%" in a tax name is
# just text).
PLACEHOLDER = re.compile(r'%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[sdifr]')


# The web pages' label tables: {file: name of the {zh: {...}, en: {...}}}.
PAGES = {
    'scenic_ticket/static/app.js': 'I18N',
    'scenic_counter/static/counter.js': 'T',
    'scenic_counter/static/kiosk.js': 'T',
    }
JS_STRING = re.compile(
    r"'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"|`(?:\\.|[^`\\])*`")
JS_COMMENT = re.compile(r'^\s*//.*$', re.MULTILINE)


def page_labels(path, name):
    """{language: {key}} of a page's label table, read without running the
    script: strings blanked, then the keys at the top of each language."""
    source = JS_STRING.sub("''", JS_COMMENT.sub('', path.read_text()))
    start = source.index('{', source.index(f'const {name} = {{'))
    labels, depth, language, expect_key = {}, 0, None, False
    for match in re.finditer(r"[{}(),\[\]]|(\w+)\s*:", source[start:]):
        token = match.group(0)
        if token in '{([':
            depth += 1
            expect_key = token == '{'
        elif token in '})]':
            depth -= 1
            if depth == 0:
                break
        elif token == ',':
            expect_key = True
        elif expect_key and depth == 1:
            language = match.group(1)
            labels[language] = set()
            expect_key = False
        elif expect_key and depth == 2:
            labels[language].add(match.group(1))
            expect_key = False
    return labels


def po_entries(module):
    "{(msgctxt, msgid): entry} of a module's locale/zh_CN.po"
    path = ADDONS / module / 'locale' / f'{LANG}.po'
    if not path.exists():
        return {}
    return {(e.msgctxt, e.msgid): e for e in polib.pofile(str(path))}


def placeholders(text):
    return sorted(PLACEHOLDER.findall(text))


def with_extras(modules, checked):
    """modules plus the installed optional dependencies (extras_depend) of
    the checked ones that modules do not already bring: they register
    more fields and views."""
    closure, todo = set(), list(modules)
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            todo.extend(get_module_info(name).get('depends', []))
    installed = get_modules()
    extras = sorted({
            e for m in checked for e in get_module_info(m).get('extras_depend', [])
            if e in installed and e not in closure})
    return list(modules) + extras


@SOURCE_ONLY
class ModuleStringsMixin:
    """The strings of the checked modules, taken from a database with the
    modules of `activation`: the same list (and order) as another test of
    the suite, so the activated database is reused from DB_CACHE."""
    activation = []
    checked = []

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        drop_db()
        activate_module(with_extras(cls.activation, cls.checked))

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        drop_db()

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
        for module in self.checked:
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

    @with_transaction()
    def test_no_stale_entry(self):
        "Every zh_CN.po entry is of a string the module still has"
        stale = []
        for module, strings in self.source_strings().items():
            stale.extend(f'{module}: "{c}" {m!r}'
                for c, m in sorted(set(po_entries(module)) - strings))
        self.assertFalse(stale, '\n' + '\n'.join(stale))

    @with_transaction()
    def test_translations_load(self):
        "Tryton loads each zh_CN.po entry onto its string (as -l zh_CN does)"
        Translation = Pool().get('ir.translation')
        sources = self.source_strings()
        unloaded = []
        for module in self.checked:
            Translation.translation_import(
                LANG, module, [str(ADDONS / module / 'locale' / f'{LANG}.po')])
            content = Translation.translation_export(LANG, module)
            loaded = {
                (e.msgctxt, e.msgid) for e in polib.pofile(
                    content.decode('utf-8') if content else '')
                if e.msgstr.strip()}
            unloaded.extend(f'{module}: "{c}" {m!r}'
                for c, m in sorted(sources[module] - loaded))
        self.assertFalse(unloaded, '\n' + '\n'.join(unloaded))


class ErpStringsTestCase(ModuleStringsMixin, unittest.TestCase):
    "Test the zh_CN translations of the modules but scenic_group"
    # scenic_finance's ModuleTestCase with the box office (test_counter.py)
    activation = ['scenic_finance', 'scenic_account_cn', 'scenic_counter']
    checked = [
        'scenic_ticket', 'scenic_gate', 'scenic_finance', 'scenic_counter',
        'scenic_account_cn']


class GroupStringsTestCase(ModuleStringsMixin, unittest.TestCase):
    "Test the zh_CN translations of scenic_group"
    # scenic_group's ModuleTestCase (test_module.py, test_invoice.py)
    activation = [
        'scenic_group', 'scenic_finance', 'account_invoice', 'account_dunning']
    checked = ['scenic_group']


@SOURCE_ONLY
class PoFileTestCase(unittest.TestCase):
    "Test the zh_CN.po files themselves"

    def test_every_module_checked(self):
        "Every module under addons/ is checked, each by one test case"
        self.assertEqual(
            sorted(p.parent.name for p in ADDONS.glob('*/tryton.cfg')),
            sorted(MODULES))
        self.assertEqual(
            sorted(ErpStringsTestCase.checked + GroupStringsTestCase.checked),
            sorted(MODULES))

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


@SOURCE_ONLY
class PageLabelsTestCase(unittest.TestCase):
    "Test the labels of the web pages"

    def test_page_labels_both_languages(self):
        "Each page label is in Chinese and English, and each one used exists"
        gaps = []
        for name, table in PAGES.items():
            path = ADDONS / name
            labels = page_labels(path, table)
            self.assertEqual(set(labels), {'zh', 'en'}, name)
            used = set(re.findall(r"\bt\(\s*'(\w+)'", path.read_text()))
            for language, other in [('zh', 'en'), ('en', 'zh')]:
                for key in sorted(labels[other] - labels[language]):
                    gaps.append(f'{name}: {key!r} has no {language} label')
                for key in sorted(used - labels[language]):
                    gaps.append(f'{name}: t({key!r}) has no {language} label')
        self.assertFalse(gaps, '\n' + '\n'.join(gaps))

    def test_page_labels_parsed(self):
        "The label tables are read whole (a key of each end is found)"
        labels = page_labels(ADDONS / 'scenic_counter/static/counter.js', 'T')
        self.assertIn('login', labels['zh'])
        self.assertIn('keys', labels['en'])
        labels = page_labels(ADDONS / 'scenic_ticket/static/app.js', 'I18N')
        self.assertIn('html_lang', labels['zh'])
        self.assertIn('err_unknown', labels['en'])
        self.assertGreater(len(labels['en']), 100)
