"""Code shared by the Tryton modules and the gate-side IoT box.

Nothing here may import Tryton: the gate box runs without it.  Import the
submodules you need (``idnumber``, ``pii``, ``ticketcode``, ``base45``);
this package file stays empty so that the gate only pays for what it uses.
"""

__version__ = '0.1.0'
