"""Scenic reporting layer: read-only queries returning pandas DataFrames.

    from scenic_analytics import connect, reports
    with connect('sqlite:////path/demo.sqlite') as db:
        reports.zone_headcount(db, company=1)

No Tryton import: the dashboards, notebooks and benchmarks run beside the
ERP on a read-only connection (see db.py and roles.py).
"""
from . import reports  # noqa: F401
from .db import Database, connect  # noqa: F401
