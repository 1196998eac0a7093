"""Keep ID numbers and phone numbers out of log lines (PIPL; GUIDE.md:
"ID numbers and phones never reach a log or a URL").

Loggers that can carry what a caller sent (trytond's RPC dispatcher logs
every call's arguments, truncated to 17 characters: 17 of an ID's 18;
request lines carry query strings; gunicorn's access log) get
:class:`ScrubFilter`, which rewrites the formatted message and traceback
of each record before any handler sees it. What it removes: runs of 11 or
more digits (resident IDs of 15/18 characters, truncated ones, phones,
bank cards), mainland mobile numbers written with separators or +86, and
passport/permit-like numbers (one or two letters and 7-9 digits).
"""
import logging
import re

__all__ = ['scrub', 'ScrubFilter', 'install', 'LOGGERS', 'MASK']

MASK = '[redacted]'
# the loggers of the servers Scenic runs under
LOGGERS = ('trytond.protocols.dispatcher', 'trytond.wsgi', 'werkzeug',
    'gunicorn.access', 'gunicorn.error', 'trytond.application')

_PATTERNS = [
    # +86 138-0013-8000, 138 0013 8000, 8613800138000
    re.compile(r'(?<![0-9])(?:\+?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}'
        r'(?![0-9])'),
    # 11+ digits, maybe an X check character: IDs (whole or truncated),
    # phones, card numbers
    re.compile(r'(?<![0-9A-Za-z])[0-9]{11,}[Xx]?(?![0-9A-Za-z])'),
    # passports and permits: E12345678, HA1234567, C12345678
    re.compile(r'(?<![0-9A-Za-z])[A-Za-z]{1,2}[0-9]{7,9}(?![0-9A-Za-z])'),
]


def scrub(text):
    "text without ID numbers or phones."
    for pattern in _PATTERNS:
        text = pattern.sub(MASK, text)
    return text


class ScrubFilter(logging.Filter):
    """Rewrites a record's message (and traceback) scrubbed; never drops
    a record."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:               # a bad format: keep what we have
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(
                record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


_FILTER = ScrubFilter()


def install(names=LOGGERS):
    "Put the filter on these loggers (idempotent)."
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
