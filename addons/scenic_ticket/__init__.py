# Importing the routes registers them with trytond's WSGI application.
from . import api  # noqa: F401
from . import booking_page  # noqa: F401
