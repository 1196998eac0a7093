from trytond.pool import PoolMeta


class Cron(metaclass=PoolMeta):
    __name__ = 'ir.cron'

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.method.selection.append(
            ('scenic.order|expire_holds', "Release Expired Booking Holds"))
        cls.method.selection.append(
            ('scenic.ticket|expire_tickets', "Expire Unused Tickets"))
