"""The site role's window (issue 12): sells from the allotment only, signs
with the delegated key, keeps every sale in its outbox; the local API."""
import pytest

from box_fakes import AREA, NOW, SLOT_END, full_answer
from site_day import SITE_KEY, SLOT, TICKET_TYPE, site_section
from scenic_common import ticketcode
from scenic_iotbox.api import BoxApp, RequestError
from scenic_iotbox.site import SiteDesk, SiteError
from scenic_iotbox.store import StoreError


@pytest.fixture
def desk(store, clock):
    store.apply_sync(full_answer(), NOW)
    desk = SiteDesk(store, clock=clock)
    desk.apply(site_section(3))
    return desk


def test_sells_within_the_allotment(desk, store, clock):
    sales = [desk.sell(TICKET_TYPE, SLOT) for _ in range(3)]
    assert [s['ticket'] for s in sales] == [500000, 500001, 500002]
    keyring = ticketcode.Keyring()
    keyring.add(SITE_KEY.key_id, SITE_KEY.public_bytes())
    verified = ticketcode.verify(sales[0]['code'], keyring, now=NOW,
        area_id=AREA)
    assert verified.ok and verified.payload.key_id == SITE_KEY.key_id
    with pytest.raises(SiteError) as error:
        desk.sell(TICKET_TYPE, SLOT)
    assert error.value.code == 'allotment_exhausted'
    assert desk.outbox_size() == 3
    assert desk.allotments()[0]['left'] == 0
    # a new sync answer does not give the sold places back
    desk.apply(site_section(3))
    with pytest.raises(SiteError):
        desk.sell(TICKET_TYPE, SLOT)


def test_refusals(desk, clock):
    for args, code in [((TICKET_TYPE, 999), 'no_allotment'),
            ((77, SLOT), 'unknown_ticket_type')]:
        with pytest.raises(SiteError) as error:
            desk.sell(*args)
        assert error.value.code == code
    clock.now = SLOT_END
    with pytest.raises(SiteError) as error:
        desk.sell(TICKET_TYPE, SLOT)
    assert error.value.code == 'allotment_released'


def test_bad_section_changes_nothing(desk):
    section = site_section(3)
    section['keys'][0]['private_key'] = 'not base64!'
    with pytest.raises(StoreError):
        desk.apply(section)
    assert desk.sell(TICKET_TYPE, SLOT)['ticket'] == 500000
    desk.apply(None)        # no longer a site
    assert not desk.active


def test_local_api(desk, store):
    app = BoxApp(validator=None, store=store, gates=[], site=desk,
        staff_token='staff-secret')
    with pytest.raises(RequestError) as error:
        app.sell({'ticket_type': TICKET_TYPE, 'slot': SLOT}, role='device')
    assert error.value.status == 403
    status, sale = app.sell({'ticket_type': TICKET_TYPE, 'slot': SLOT},
        role='staff')
    assert status == 201 and sale['code'].startswith('SC1:')
    with pytest.raises(RequestError) as error:
        app.sell({'ticket_type': 'x', 'slot': SLOT}, role='staff')
    assert error.value.field == 'ticket_type'
    assert app.site_status()['outbox'] == 1
    plain = BoxApp(validator=None, store=store, gates=[])
    with pytest.raises(RequestError) as error:
        plain.site_status()
    assert error.value.code == 'not_a_site'
