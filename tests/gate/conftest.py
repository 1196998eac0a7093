"""Fixtures of the end-to-end gate tests: the ERP and a box, for real.

- ``site`` (module): a fresh SQLite database initialised with scenic_gate
  and filled by ``build_e2e_area.py`` (zones, gates, paid tickets of every kind,
  cards, a box's enrolment token), served by trytond on a free port.
  ``site.erp.stop()`` / ``start()`` cut it off and bring it back.
- ``box`` (module): the IoT box of that site, in this process, built from a
  box.toml like any other: it enrols with the token over HTTP, syncs, and
  drives the ``sim`` turnstile (the pty controller simulator, spoken to by
  the real serial driver).  ``box.scan(...)`` posts to its local API.

Every test takes its own tickets from the site: no test relies on another
having run.
"""
import pytest

from e2e_harness import build_site, start_box


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    site = build_site(tmp_path_factory.mktemp('gate-erp'))
    try:
        yield site
    finally:
        site.erp.stop()


@pytest.fixture(scope='module')
def box(site, tmp_path_factory):
    box = start_box(site, tmp_path_factory.mktemp('box') / 'box',
        site.data['enrolment_token'], 'e2e-box')
    try:
        yield box
    finally:
        box.service.stop()
