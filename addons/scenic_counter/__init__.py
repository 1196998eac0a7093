# Box office and self-service kiosks on Tryton's sale_point.
# Importing the routes registers them with trytond's WSGI application.
from . import counter_api  # noqa: F401
from . import counter_page  # noqa: F401
from . import kiosk_api  # noqa: F401
from . import notify  # noqa: F401
