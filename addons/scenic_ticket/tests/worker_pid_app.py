"""trytond's WSGI application (`app`) and the booking engine in front of it
(`engine_app()`), answering with the worker's process id in `X-Worker-Pid`:
test_cache_sync.py sees which server worker answered. Served from this
directory (gunicorn --pythonpath, granian --working-dir), not imported by
the module."""
import os

from trytond.application import app as trytond_app


def with_pid(application):
    def wrapped(environ, start_response):
        def start(status, headers, exc_info=None):
            return start_response(status,
                list(headers) + [('X-Worker-Pid', str(os.getpid()))],
                exc_info)
        return application(environ, start)
    return wrapped


app = with_pid(trytond_app)


def engine_app():
    from scenic_ticket.engine import make_app
    return with_pid(make_app())
