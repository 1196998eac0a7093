"""HTTP plumbing of Scenic's JSON APIs (booking, gate, and what later
modules add): routes as Tryton WSGI routes, one transaction per call,
retries on races, JSON bodies and answers, errors as errors.ApiError.
"""
import functools
import json
import logging
import zlib
from decimal import Decimal

from trytond import backend
from trytond.model.modelsql import SQLConstraintError
from trytond.pool import Pool
from trytond.protocols.wrappers import Response
from trytond.transaction import Transaction, TransactionError
from trytond.wsgi import app

from .dbtools import use_read_committed
from .errors import ApiError, Unavailable

logger = logging.getLogger(__name__)

RETRIES = 3
# A failover under Patroni takes about its ttl (20 s); a restart in place a
# few seconds: clients come back after this many seconds.
RETRY_AFTER_UNAVAILABLE = 5
# PostgreSQL's: admin shutdown, crash shutdown, cannot connect now, read-
# only transaction (a connection that landed on a standby), serialization
# failure, deadlock.
UNAVAILABLE_SQLSTATES = frozenset({
        '57P01', '57P02', '57P03', '25006', '40001', '40P01'})


def json_text(data):
    "An answer's JSON, as every API route sends it."
    return json.dumps(data, ensure_ascii=False, separators=(',', ':'))


def json_response(data, status=200, headers=None):
    return Response(json_text(data), status=status, headers=headers,
        content_type='application/json')


def error_response(error, respond=json_response):
    """The answer to an ApiError (`respond(data, status, headers)`: the
    booking engine passes its own)."""
    headers = None
    if getattr(error, 'retry_after', None):      # 429: when to come back
        headers = {'Retry-After': str(error.retry_after)}
    return respond(error.as_json(), status=error.status, headers=headers)


def _database_errors():
    "The driver's errors that say the database went away or is busy."
    errors = (backend.DatabaseOperationalError,)
    if backend.name == 'postgresql':
        import psycopg
        # "the connection is closed": cut by a failover before this use
        errors += (psycopg.InterfaceError,)
    return errors


def database_unavailable(error):
    """True when `error` says the database was cut away or refused the
    work for now, not that the request is wrong: a lost connection (a
    failover, a restart; SQLSTATE class 08 or none), a shutdown, a read-
    only standby, or a serialization failure or lock wait left after the
    retries."""
    if not isinstance(error, _database_errors()):
        return False
    state = getattr(error, 'sqlstate', None) or getattr(error, 'pgcode',
        None)
    if state is None:
        # psycopg gives none when the server closed the connection, and
        # SQLite's OperationalError is "database is locked"
        return True
    return state.startswith('08') or state in UNAVAILABLE_SQLSTATES


def unavailable_response(prefix, path, error):
    """503 + Retry-After: the outcome of a write cut at commit is
    unknown, so the message says how to retry safely."""
    logger.warning("%s%s: database unavailable (%s: %s)", prefix, path,
        type(error).__name__, str(error).splitlines()[0] if str(error)
        else '')
    return error_response(Unavailable(
            "The database is unavailable for a moment (a failover or a "
            "restart). Retry after the time in Retry-After; a booking "
            "retried with the same Idempotency-Key returns the same order.",
            RETRY_AFTER_UNAVAILABLE))


def database_pool(database_name):
    "The database's pool, or None when there is no such database."
    if database_name not in Pool.database_list():
        with Transaction().start(None, 0, readonly=True) as transaction:
            if database_name not in transaction.database.list():
                return None
        with Transaction().start(database_name, 0, readonly=True):
            Pool(database_name).init()
    return Pool(database_name)


MAX_BODY = 1024 * 1024    # a booking, a 1000-scan gate batch fit


def _gunzip(data):
    "Inflate a gzip body, at most MAX_BODY bytes of it (no gzip bomb)."
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_BODY + 1)
    except zlib.error:
        raise ApiError('invalid_request',
            "The body is not valid gzip.", 'body') from None
    if len(out) > MAX_BODY or inflater.unconsumed_tail:
        raise ApiError('payload_too_large', "The inflated body is larger "
            f"than {MAX_BODY // 1024} KiB.", 'body')
    if not inflater.eof:
        raise ApiError('invalid_request',
            "The gzip body is cut short.", 'body')
    return out


def json_body(request):
    """The request's JSON object; numbers with a fraction as Decimal.
    A body over MAX_BODY is refused before it is read (413), one nested
    too deep for the parser is not JSON (422), never a 500. A gzip body
    (`Content-Encoding: gzip`, what the boxes send over slow links) is
    inflated up to MAX_BODY, and refused (413) beyond it."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        raise ApiError('payload_too_large',
            f"The body is larger than {MAX_BODY // 1024} KiB.", 'body')
    data = request.get_data(cache=True)
    if len(data) > MAX_BODY:
        raise ApiError('payload_too_large',
            f"The body is larger than {MAX_BODY // 1024} KiB.", 'body')
    if (request.headers.get('Content-Encoding') or '').strip() == 'gzip':
        data = _gunzip(data)
    try:
        data = json.loads(data or b'null', parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError('invalid_request', "The body is not valid JSON.",
            'body')
    if not isinstance(data, dict):
        raise ApiError('invalid_request',
            "The body must be a JSON object.", 'body')
    return data


def endpoint(path, methods, prefix, authenticate=None, readonly=False,
        auth=True, check_signature=None, error_class=ApiError,
        log_refusals=None):
    """Route a handler(request, caller, **kwargs) -> Response.

    `authenticate(request)` returns the caller (a channel, a gate box…) and
    its area, or raises ApiError; with `auth=False` (or no authenticate)
    the handler gets None. Each call is one transaction; writes run READ
    COMMITTED (see dbtools.use_read_committed) and are retried when two
    requests raced on a unique key or the database asked for a retry.

    A signed API passes `check_signature(pool, request)` instead: it runs
    once, before the call and in a transaction of its own (it spends the
    request's nonce, which must stay spent when the call is refused or
    retried), and returns (caller's model, caller's id, area id).
    Refusals are answered as `error_class`; with `log_refusals` (a name)
    each is logged by its code and field only, never its message.
    """
    def decorator(func):
        @app.route(prefix + path, methods=methods)
        @functools.wraps(func)
        def wrapper(request, database_name, **kwargs):
            try:
                pool = database_pool(database_name)
                if pool is None:
                    raise error_class('not_found', "No such database.")
                signed = None
                if check_signature and auth:
                    signed = check_signature(pool, request)
                extras, attempt, locked = {}, 0, 0
                while True:
                    try:
                        return _call(pool, func, request, readonly,
                            authenticate if auth else None, signed, kwargs,
                            extras)
                    except TransactionError as error:
                        # Tryton asks for the transaction to be started
                        # again with a lock (e.g. posting a move takes a
                        # number from the ledger's strict sequence), as
                        # trytond's dispatcher does; each asks for more.
                        if locked == RETRIES:
                            raise
                        error.fix(extras)
                        locked += 1
                    except (backend.DatabaseIntegrityError,
                            backend.DatabaseOperationalError,
                            SQLConstraintError):
                        # Two requests raced on a unique key (e.g. one
                        # Idempotency-Key, an area's first signing key):
                        # again, the loser finds what the winner made.
                        if attempt == RETRIES:
                            raise
                        attempt += 1
            except ApiError as error:
                if log_refusals:
                    logger.info("%s %s %s refused: %s %s", log_refusals,
                        request.method, path, error.code, error.field or '')
                if not isinstance(error, error_class):
                    error = error_class(
                        error.code, error.message, error.field)
                return error_response(error)
            except Exception as error:
                if database_unavailable(error):
                    return unavailable_response(prefix, path, error)
                logger.exception("%s%s failed", prefix, path)
                return error_response(error_class('internal_error',
                        "The server could not handle this request; "
                        "nothing was changed."))
        return wrapper
    return decorator


def _call(pool, func, request, readonly, authenticate, signed, kwargs,
        extras):
    with Transaction().start(
            pool.database_name, 0, readonly=readonly, **extras):
        if not readonly:
            use_read_committed()
        caller, company = None, None
        if signed:
            model, caller_id, company = signed
            caller = pool.get(model)(caller_id)
        elif authenticate:
            caller, company = authenticate(request)
        context = {}
        if company:
            context = {'company': company, 'companies': [company]}
        with Transaction().set_context(context):
            return func(request, caller, **kwargs)


def release_claims():
    """Commit as soon as the writes are done.

    The claims lock the day's counter rows, which every booking of that day
    needs: rendering the answer must not keep them waiting. If rendering
    then fails, a retry with the same Idempotency-Key finds the order.
    """
    Transaction().commit()
