"""`wsgi-wasm build --warm-up PATH`: requests made to the app at build time.

A framework imports much of itself on the first request (URL routing tables,
template tag libraries, form renderers...). A GET of a representative page at build
time runs those code paths before the snapshot is taken, so the modules they import
are in the component and the first real request does not pay for them. The app's
state after these requests (caches, counters) is in the snapshot too.
"""

import io
import sys
from wsgiref.util import setup_testing_defaults


def _environ(path):
    path, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "HTTP_HOST": "localhost",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    setup_testing_defaults(environ)
    return environ


def request(application, path):
    """GETs `path`; returns the status line ("200 OK") or "error: ..."."""
    status = []

    def start_response(line, headers, exc_info=None):
        status[:] = [line]
        return lambda data: None

    try:
        result = application(_environ(path), start_response)
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception as e:  # noqa: BLE001 - reported by the build, not fatal
        return f"error: {type(e).__name__}: {e}"
    return status[0] if status else "error: start_response was not called"
