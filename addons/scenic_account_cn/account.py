"""The Chinese small-enterprise chart (小企业会计准则) as Tryton templates.

The template names are translatable so that "Create Chart of Accounts" run
in Chinese creates the accounts with their Chinese names (locale/zh_CN.po)
and run in English with the English ones (the XML).
"""
import copy

from trytond.pool import PoolMeta


class _TranslatedNames:
    __slots__ = ()
    _translated = ('name',)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        for name in cls._translated:
            field = copy.copy(getattr(cls, name))
            field.translate = True
            setattr(cls, name, field)


class AccountTypeTemplate(_TranslatedNames, metaclass=PoolMeta):
    __name__ = 'account.account.type.template'


class AccountTemplate(_TranslatedNames, metaclass=PoolMeta):
    __name__ = 'account.account.template'


class TaxGroup(_TranslatedNames, metaclass=PoolMeta):
    __name__ = 'account.tax.group'


class TaxTemplate(_TranslatedNames, metaclass=PoolMeta):
    __name__ = 'account.tax.template'
    _translated = ('name', 'description')


class TaxCodeTemplate(_TranslatedNames, metaclass=PoolMeta):
    __name__ = 'account.tax.code.template'
