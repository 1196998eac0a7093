"""The ERP client (PROTOCOL.md) and the background sync loop.

:class:`ErpClient` speaks the protocol with urllib: JSON bodies, a timeout
on every call, ``Accept-Encoding: gzip``, ``Authorization: Box <id>:<secret>``.

:class:`SyncEngine` runs one round at a time — upload the outbox, sync,
heartbeat when due — and in a background thread repeats it every
``sync_interval`` seconds; after a failure it backs off exponentially (with
jitter) up to ``max_backoff`` and keeps trying for as long as it takes, so a
box cut off for hours catches up by itself: the outbox is uploaded oldest
first in batches of at most 1000.

Exactly once: a scan is marked sent only when the ERP's answer lists its
nonce as accepted, duplicate or conflict (conflicts are stored by the ERP
too: "nothing is dropped").  A lost answer makes the box send the batch
again; the ERP answers ``duplicates`` and the scans are marked sent then.
"""

import gzip
import json
import logging
import random
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

from scenic_common import protocol

from . import __version__
from .store import StoreError, ts

__all__ = ['ErpClient', 'SyncEngine', 'ErpError', 'ErpUnavailable',
    'ErpUnauthorized', 'BoxRevoked', 'ErpRejected', 'NotEnrolled',
    'BATCH_SIZE']

logger = logging.getLogger(__name__)

BATCH_SIZE = protocol.BATCH_SIZE
API_PATH = '/scenic/gate/v1'
# Device kinds as the ERP records them (scenic_gate DEVICE_KINDS), from the
# drivers' kinds.
HEARTBEAT_KINDS = {'turnstile': 'turnstile', 'qr': 'qr_reader',
    'qr_reader': 'qr_reader', 'qr_wedge': 'qr_reader',
    'qr_decoder': 'qr_reader', 'idcard': 'id_reader',
    'id_reader': 'id_reader', 'rfid': 'rfid_reader',
    'rfid_reader': 'rfid_reader', 'camera': 'camera', 'biometric': 'camera',
    'kiosk': 'kiosk', 'printer': 'printer'}
MAX_ANSWER = 256 * 1024 * 1024
GZIP_MIN_BODY = 1024


class ErpError(Exception):
    """A failed ERP call; ``code`` from the answer's error body if any."""

    def __init__(self, message, status=None, code=None, field=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field


class ErpUnavailable(ErpError):
    """Network down, timeout, 5xx, or an answer that is not JSON: retry."""


class ErpUnauthorized(ErpError):
    """401: the credentials are not (or no longer) valid."""


class BoxRevoked(ErpError):
    """409 revoked: the ERP revoked this box."""


class ErpRejected(ErpError):
    """Another 4xx: the request itself was refused."""


class NotEnrolled(ErpError):
    """No credentials yet: enrol first."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    "A redirect could leave the pinned TLS line: refuse it."

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code,
            f'redirect to {newurl} refused', headers, fp)


def erp_opener(ca_file=None):
    """urllib opener for the ERP: with ``ca_file`` only that CA is trusted
    (pinned; the system's CAs are not loaded), host names are checked,
    TLS 1.2 at least; redirects are refused."""
    handlers = [_NoRedirect()]
    if ca_file is not None:
        context = ssl.create_default_context(cafile=str(ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


class ErpClient:

    def __init__(self, base_url, database, timeout=10.0, credentials=None,
            ca_file=None):
        self.base = f'{base_url.rstrip("/")}/{quote(database)}{API_PATH}'
        self.origin = base_url.rstrip('/')
        self.timeout = timeout
        self.credentials = credentials or (lambda: None)
        self.opener = erp_opener(ca_file)
        self.sent_bytes = 0         # request bodies, as sent (compressed)
        self.received_bytes = 0     # answer bodies, as received

    def _auth(self):
        creds = self.credentials()
        if not creds:
            raise NotEnrolled('This box is not enrolled.')
        return f'Box {creds["box"]}:{creds["secret"]}'

    def request(self, method, path, body=None, auth=True, raw=False,
            absolute=False, compress=False):
        url = path if absolute else self.base + path
        headers = {'Accept': 'application/json',
            'Accept-Encoding': 'gzip',
            'User-Agent': f'scenic-iotbox/{__version__}'}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(',', ':')).encode('utf-8')
            headers['Content-Type'] = 'application/json'
            if compress and len(data) >= GZIP_MIN_BODY:
                # uploads over a slow link: JSON of scans and sales
                # shrinks 5-10 times (the ERP inflates it, bounded)
                data = gzip.compress(data, compresslevel=6)
                headers['Content-Encoding'] = 'gzip'
        self.sent_bytes += len(data or b'')
        if auth:
            headers['Authorization'] = self._auth()
        request = urllib.request.Request(url, data=data, headers=headers,
            method=method)
        try:
            with self.opener.open(request, timeout=self.timeout) \
                    as response:
                status = response.status
                content = response.read(MAX_ANSWER + 1)
                encoding = response.headers.get('Content-Encoding', '')
        except urllib.error.HTTPError as error:
            try:
                content = error.read(1024 * 1024)
                if 'gzip' in (error.headers.get('Content-Encoding') or ''):
                    content = gzip.decompress(content)
                detail = json.loads(content).get('error') or {}
            except Exception:
                detail = {}
            message = detail.get('message') or f'HTTP {error.code}'
            kwargs = dict(status=error.code, code=detail.get('code'),
                field=detail.get('field'))
            if error.code == 401:
                raise ErpUnauthorized(message, **kwargs) from None
            if error.code == 409 and detail.get('code') == 'revoked':
                raise BoxRevoked(message, **kwargs) from None
            if error.code >= 500 or error.code in (408, 429):
                raise ErpUnavailable(message, **kwargs) from None
            raise ErpRejected(message, **kwargs) from None
        except (urllib.error.URLError, OSError, socket.timeout,
                ConnectionError) as error:
            raise ErpUnavailable(f'ERP unreachable: {error}') from None
        except Exception as error:      # http.client oddities
            raise ErpUnavailable(f'ERP call failed: {error!r}') from None
        self.received_bytes += len(content)
        if len(content) > MAX_ANSWER:
            raise ErpUnavailable('ERP answer too large')
        try:
            if 'gzip' in encoding:
                content = gzip.decompress(content)
        except (OSError, EOFError) as error:
            raise ErpUnavailable(f'Bad gzip answer: {error}') from None
        if raw:
            return content
        try:
            answer = json.loads(content) if content else {}
        except ValueError:
            raise ErpUnavailable(
                f'ERP answer is not JSON (HTTP {status})') from None
        return answer

    def enrol(self, token, name, hostname):
        answer = self.request('POST', '/enrol', {'token': token,
            'name': name, 'hostname': hostname}, auth=False)
        for key in ('box', 'secret', 'gate_generations'):
            if key not in answer:
                raise ErpRejected(f'Enrolment answer without "{key}".')
        return answer

    def sync(self, since=None):
        query = f'?{urlencode({"since": since})}' if since else ''
        return self.request('GET', '/sync' + query)

    def upload(self, scans):
        return self.request('POST', '/scans', {'scans': scans},
            compress=True)

    def upload_sales(self, sales, through=None):
        body = {'sales': sales}
        if through is not None:
            body['through'] = through.isoformat()
        return self.request('POST', '/sales', body, compress=True)

    def heartbeat(self, body):
        return self.request('POST', '/heartbeat', body)

    def fetch(self, url):
        """Bytes of a photo_url (a path on the ERP, same auth)."""
        if url.startswith('/'):
            url = self.origin + url
        elif not url.startswith(self.origin + '/'):
            raise ErpRejected('photo_url is not on the ERP')
        return self.request('GET', url, raw=True, absolute=True)


MAX_CLOCK_SKEW = 30.0           # seconds off the ERP before the alarm


class SyncEngine:
    """Upload, sync, heartbeat: once (``run_once``) or in a thread."""

    def __init__(self, store, client, name='scenic-iotbox', hostname=None,
            sync_interval=10.0, heartbeat_interval=60.0, max_backoff=300.0,
            devices=None, clock=None, enrolment_token=None,
            credentials_file=None, site=None):
        self.store = store
        # the site role (site.SiteDesk): active once the ERP sends a
        # "site" section
        self.site = site
        self.client = client
        self.name = name
        self.hostname = hostname or socket.gethostname()
        self.sync_interval = sync_interval
        self.heartbeat_interval = heartbeat_interval
        self.max_backoff = max_backoff
        self.devices = devices or (lambda: [])
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.enrolment_token = enrolment_token
        self.credentials_file = credentials_file
        self.online = False
        self.failures = 0
        self.last_error = None
        self.last_contact = None
        self.last_heartbeat = None
        self.uploaded = 0
        self.clock_skew = None          # s the box is ahead of the ERP
        self.clock_alarm = False
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread = None
        self._round = threading.Lock()

    # --- steps -------------------------------------------------------------

    def enrol(self, token):
        answer = self.client.enrol(token, self.name, self.hostname)
        self.store.save_credentials(answer['box'], answer['secret'],
            answer.get('area'), answer['gate_generations'], self.clock())
        logger.info('Enrolled as box %s', answer['box'])
        return answer

    def ensure_enrolled(self):
        if self.store.credentials():
            return True
        if self.credentials_file and self.credentials_file.exists():
            data = json.loads(self.credentials_file.read_text())
            self.store.save_credentials(data['box'], data['secret'],
                data.get('area'), data['gate_generations'], self.clock())
            return True
        if self.enrolment_token:
            token, self.enrolment_token = self.enrolment_token, None
            try:
                self.enrol(token)
            except ErpUnavailable:
                self.enrolment_token = token    # try again later
                raise
            return True
        return False

    def upload_pending(self):
        """Upload the outbox oldest first, ≤ BATCH_SIZE a call, until it
        is empty or the ERP stops acknowledging; returns how many scans
        were acknowledged."""
        total = 0
        while True:
            batch = self.store.pending_scans(BATCH_SIZE)
            if not batch:
                return total
            scans = [payload for _, _, payload in batch]
            try:
                answer = self.client.upload(scans)
            except ErpRejected as error:
                index = _scan_index(error.field)
                if index is None or index >= len(batch):
                    self.store.note_upload_error(
                        [s for s, _, _ in batch], str(error))
                    raise
                # one scan the ERP cannot read would block the outbox
                # forever: set it aside (kept, marked) and go on
                nonce = batch[index][1]
                logger.error('The ERP refused scan %s (%s: %s); it is kept '
                    'in the outbox as rejected.', nonce, error.field, error)
                self.store.mark_sent({nonce: f'rejected:{error.field}: '
                    f'{error}'[:300]}, self.clock())
                continue
            except ErpError as error:
                self.store.note_upload_error([s for s, _, _ in batch],
                    str(error))
                raise
            self._mark_contact()
            results = _acknowledged(answer)
            sent = {n: results[n] for _, n, _ in batch if n in results}
            failed = [n for _, n, _ in batch if n not in results]
            self.store.mark_sent(sent, self.clock(), failed)
            total += len(sent)
            self.uploaded += len(sent)
            for nonce, result in sent.items():
                if result.startswith('conflict'):
                    logger.warning('Scan %s: ERP flagged %s', nonce, result)
            if not sent:
                raise ErpUnavailable('The ERP acknowledged none of '
                    f'{len(batch)} scans.')
            if len(batch) < BATCH_SIZE:
                return total

    def upload_sales(self):
        """A site's sales outbox, as the scans' (site.SiteDesk.upload)."""
        if self.site is None:
            return 0
        total = self.site.upload(self.client, _acknowledged)
        if total:
            self._mark_contact()
        return total

    def sync(self):
        """One sync call, applied in one transaction."""
        since = self.store.get_meta('watermark')
        acked = self.store.ack_seq()
        answer = self.client.sync(since)
        self._mark_contact()
        try:
            result = self.store.apply_sync(answer, self.clock(),
                acked_before=acked)
            if self.site is not None and (
                    'site' in answer or self.site.active):
                self.site.apply(answer.get('site'))
        except StoreError as error:
            # keep the old data and watermark; the next round asks again
            raise ErpUnavailable(str(error)) from None
        return result

    def heartbeat(self, force=False):
        now = self.clock()
        if not force and self.last_heartbeat is not None and (
                now - self.last_heartbeat).total_seconds() \
                < self.heartbeat_interval:
            return None
        try:
            devices = list(self.devices())
        except Exception:
            logger.exception('Device status failed')
            devices = []
        body = {'at': now.isoformat(), 'version': __version__,
            'outbox': self.store.outbox_size(),
            'sync_lag_s': self.sync_lag(now),
            'devices': heartbeat_devices(devices)}
        sent = time.monotonic()
        answer = self.client.heartbeat(body)
        self._mark_contact()
        self.last_heartbeat = now
        self._check_clock(now, time.monotonic() - sent, answer)
        return answer

    def _check_clock(self, now, round_trip, answer):
        """The box decides ticket windows, intervals and expiry with its
        own clock: compare it with the ERP's ``server_time`` (allowing for
        the round trip) and raise the ``clock_skew`` alarm beyond
        MAX_CLOCK_SKEW (GET /status, the log)."""
        try:
            server = datetime.fromisoformat(answer['server_time'])
        except (KeyError, TypeError, ValueError):
            return
        if server.tzinfo is None:
            return
        skew = (now - server).total_seconds()
        if abs(skew) <= round_trip + 1:     # within what we can measure
            skew = 0.0
        self.clock_skew = round(skew, 1)
        alarm = abs(skew) > MAX_CLOCK_SKEW + round_trip
        if alarm and not self.clock_alarm:
            logger.warning('Box clock is %+.0f s off the ERP\'s: ticket '
                'windows are decided on a wrong time; fix NTP.', skew)
        self.clock_alarm = alarm

    def run_once(self):
        """One round; raises ErpError subclasses when the ERP fails."""
        with self._round:
            if self.store.get_meta('revoked') and not \
                    self.store.credentials():
                raise BoxRevoked('This box was revoked; enrol it again.')
            if not self.ensure_enrolled():
                raise NotEnrolled('Not enrolled: run "scenic-iotbox enrol '
                    '--token T" or set erp.enrolment_token.')
            try:
                # sales first: the ERP learns of a site's tickets before
                # their scans
                self.upload_sales()
                self.upload_pending()
                self.sync()
                try:
                    self.heartbeat()
                except ErpRejected as error:
                    # the ERP is there; a refused heartbeat must not make
                    # the box believe it is cut off
                    logger.warning('Heartbeat refused: %s (%s)', error,
                        error.field)
                    self.last_heartbeat = self.clock()
                # a second upload: scans made during the sync go out now
                self.upload_pending()
            except BoxRevoked:
                logger.error('The ERP revoked this box: forgetting synced '
                    'data and credentials.')
                self.store.revoke_box()
                self.online = False
                raise
            except ErpUnauthorized:
                self.online = False
                raise
            self.online = True
            self.failures = 0
            self.last_error = None
            if self._due_purge():
                self.store.purge(self.clock())

    def _due_purge(self):
        last = self.store.get_meta('last_purge_at')
        now = self.clock()
        if last and (now - datetime.fromisoformat(last)).total_seconds() \
                < 3600:
            return False
        self.store.set_meta('last_purge_at', ts(now))
        return True

    def _mark_contact(self):
        self.last_contact = self.clock()

    def sync_lag(self, now=None):
        last = self.store.get_meta('last_sync_at')
        if not last:
            return None
        now = now or self.clock()
        return max(0.0, round((now - datetime.fromisoformat(last))
            .total_seconds(), 3))

    # --- the loop ----------------------------------------------------------

    def next_delay(self):
        if not self.failures:
            return self.sync_interval
        delay = min(self.max_backoff,
            self.sync_interval * 2 ** min(self.failures, 16))
        return delay * random.uniform(0.5, 1.0)

    def step(self):
        """run_once, turning failures into backoff; never raises."""
        try:
            self.run_once()
        except ErpError as error:
            self.failures += 1
            self.online = False
            self.last_error = f'{type(error).__name__}: {error}'
            log = logger.info if self.failures > 1 else logger.warning
            log('ERP round failed (%d in a row): %s', self.failures, error)
        except Exception as error:
            self.failures += 1
            self.online = False
            self.last_error = f'{type(error).__name__}: {error}'
            logger.exception('Sync round failed')

    def kick(self):
        """Ask for an early round (after a scan: upload it now)."""
        self._kick.set()

    def _loop(self):
        while not self._stop.is_set():
            self.step()
            deadline = time.monotonic() + self.next_delay()
            while not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self._kick.wait(min(remaining, 1.0)):
                    self._kick.clear()
                    if not self.failures:   # online: upload right away
                        break

    def start(self):
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop,
            name='scenic-iotbox-sync', daemon=True)
        self._thread.start()

    def stop(self, timeout=None):
        self._stop.set()
        self._kick.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout if timeout is not None
                else self.client.timeout + 5)

    def status(self):
        return {'online': self.online, 'failures': self.failures,
            'last_error': self.last_error,
            'last_contact': self.last_contact.isoformat()
            if self.last_contact else None,
            'last_sync': self.store.get_meta('last_sync_at'),
            'sync_lag_s': self.sync_lag(),
            'uploaded': self.uploaded,
            'clock_skew_s': self.clock_skew,
            'alarms': ['clock_skew'] if self.clock_alarm else []}


def heartbeat_devices(devices):
    """Device statuses in the heartbeat's shape: ``{"kind", "name", "ok",
    "errors"}`` with the ERP's kinds, a printer's ``paper`` and a device's
    ``last_error`` when it has them; the drivers' other details stay local
    (GET /status)."""
    result = []
    for device in devices:
        if not isinstance(device, dict):
            continue
        kind = HEARTBEAT_KINDS.get(str(device.get('kind')))
        if kind is None:
            continue
        name = str(device.get('name') or device.get('kind'))[:100]
        errors = device.get('errors')
        if isinstance(errors, bool) or not isinstance(errors, int) \
                or errors < 0:
            errors = 0
        entry = {'kind': kind, 'name': name,
            'ok': device.get('ok') is True, 'errors': errors}
        if device.get('paper') in protocol.PAPER_STATES:
            entry['paper'] = device['paper']
        error = device.get('last_error') or device.get('error')
        if isinstance(error, str) and error:
            entry['last_error'] = error[:protocol.DEVICE_ERROR_LENGTH]
        result.append(entry)
    return result[:64]


def _scan_index(field):
    """3 for an error field such as 'scans[3].at', else None."""
    if not isinstance(field, str) or not field.startswith('scans['):
        return None
    number = field[len('scans['):].split(']', 1)[0]
    return int(number) if number.isdigit() else None


def _acknowledged(answer):
    """nonce -> 'accepted' | 'duplicate' | 'conflict:<reason>'."""
    if not isinstance(answer, dict):
        raise ErpUnavailable('The scans answer is not a JSON object.')
    results = {}
    for nonce in answer.get('accepted') or []:
        if isinstance(nonce, str):
            results[nonce] = 'accepted'
    for nonce in answer.get('duplicates') or []:
        if isinstance(nonce, str):
            results[nonce] = 'duplicate'
    for conflict in answer.get('conflicts') or []:
        if isinstance(conflict, dict) and isinstance(
                conflict.get('nonce'), str):
            results[conflict['nonce']] = 'conflict:' + str(
                conflict.get('reason') or '')
    return results
