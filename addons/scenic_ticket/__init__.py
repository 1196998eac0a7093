from scenic_common import logscrub

from .vault import check_pii_configuration

# No ID number or phone in trytond's RPC argument log, request lines or
# gunicorn's access log, whatever the logging configuration says.
logscrub.install()

# A server with the demo's published key refuses to start unless its
# configuration says it is a demo.
check_pii_configuration()

# Importing the routes registers them with trytond's WSGI application.
from . import api  # noqa: F401
from . import booking_page  # noqa: F401
