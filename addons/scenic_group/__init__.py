# Importing the routes registers them with trytond's WSGI application.
from . import api  # noqa: F401
