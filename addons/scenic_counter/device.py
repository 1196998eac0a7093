"""The IoT box of a ticket window's PC or a kiosk, in the device registry.

A window or kiosk (`sale.point`) names its box (`scenic.gate.box`, enrolled
like a gate box); the box says where its local API answers on that PC, so
the counter and kiosk pages find the ID card reader and the printer from
the registry rather than from each browser's settings.
"""
from urllib.parse import urlsplit

from trytond.i18n import gettext
from trytond.model import fields
from trytond.model.exceptions import ValidationError
from trytond.pool import PoolMeta

# What the pages' Content-Security-Policy lets them reach (counter_page.CSP):
# the box runs on the counter PC or kiosk itself.
LOCAL_HOSTS = {'127.0.0.1', 'localhost'}


def check_local_url(url):
    "The normalised URL, or ValueError when the pages cannot reach it."
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    if (parts.scheme != 'http' or parts.hostname not in LOCAL_HOSTS
            or not port or parts.path not in ('', '/') or parts.query
            or parts.fragment or parts.username or parts.password):
        raise ValueError(url)
    return f'http://{parts.hostname}:{port}'


class Box(metaclass=PoolMeta):
    __name__ = 'scenic.gate.box'
    local_url = fields.Char(
        "Local Address",
        help="Where the box's API answers on the counter PC or kiosk it "
        "serves, e.g. http://127.0.0.1:8100 (its api.listen).")
    sale_points = fields.One2Many(
        'sale.point', 'box', "Windows and Kiosks", readonly=True)
    sale_point_names = fields.Function(
        fields.Char("Window or Kiosk"), 'get_sale_point_names')

    def get_sale_point_names(self, name):
        return ', '.join(p.name for p in self.sale_points)

    @classmethod
    def validate_fields(cls, boxes, field_names):
        super().validate_fields(boxes, field_names)
        if field_names and 'local_url' not in field_names:
            return
        for box in boxes:
            if not box.local_url:
                continue
            try:
                check_local_url(box.local_url)
            except ValueError:
                raise ValidationError(gettext(
                        'scenic_counter.msg_box_local_url',
                        box=box.rec_name, url=box.local_url))
