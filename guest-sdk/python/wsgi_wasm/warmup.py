"""Requests made at build time: `wsgi-wasm build --warm-up PATH` to the app, and
always, through the SDK's own request path, to an app of the SDK's.

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


# Runs of each `--warm-up` path. CPython specializes an instruction only after it
# has run a few times, so after a single request the app's own code was left
# unspecialized in the snapshot, and every fresh instance (every request under
# --isolation request) specialized it again. Flask's hello in request isolation
# (in-process, examples/isolation_cost): one run ~490-520 us per request, 3 runs
# ~443, 8 runs 435-450, 32 runs 430-435; without --warm-up ~710. Eight takes
# nearly all of it and keeps the build's extra time small.
APP_WARM_UP_RUNS = 8


def request(application, path):
    """GETs `path` APP_WARM_UP_RUNS times, stopping at the first failure; returns
    the last status line ("200 OK") or "error: ..."."""
    for _ in range(APP_WARM_UP_RUNS):
        status = _request_once(application, path)
        if status.startswith("error: "):
            break
    return status


def _request_once(application, path):
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


# Runs of the SDK's request path at build time (see sdk_path): CPython specializes
# a function's bytecode after a few calls, so a few dozen leave every line of the
# common path specialized.
SDK_WARM_UP_RUNS = 32

# Requests as the host packs them (guest-sdk/rules/src/packed.rs; a host test
# checks these against its packer): the flags, a context (SCRIPT_NAME,
# SERVER_NAME, SERVER_PORT, SERVER_PROTOCOL, SERVER_SOFTWARE, GATEWAY_INTERFACE,
# wsgi.url_scheme), then the codes and values of REQUEST_METHOD, PATH_INFO,
# QUERY_STRING, REMOTE_ADDR, REMOTE_PORT, HTTP_HOST, HTTP_USER_AGENT and
# HTTP_ACCEPT, and one header without a code. The second differs only in its
# QUERY_STRING, "q", for which _sdk_app answers with an iterator.
_PACKED_REQUEST = (
    "2BGHIJKO\x01\x01localhost\x0180\x01HTTP/1.1\x01wsgi-wasm\x01CGI/1.1\x01http\x00"
    "ACDLMPQR\x00GET\x00/\x00\x00127.0.0.1\x0040000\x00localhost\x00warm-up\x00*/*\x00"
    "HTTP_X_WARM_UP\x001\x00"
)
_PACKED_ITERABLE_REQUEST = (
    "2BGHIJKO\x01\x01localhost\x0180\x01HTTP/1.1\x01wsgi-wasm\x01CGI/1.1\x01http\x00"
    "ACDLMPQR\x00GET\x00/\x00q\x00127.0.0.1\x0040000\x00localhost\x00warm-up\x00*/*\x00"
    "HTTP_X_WARM_UP\x001\x00"
)
_BODY = b"warm"
_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(_BODY)))]


def _sdk_app(environ, start_response):
    """Answers like the common apps do: a one-item list, or (frameworks) an
    iterable whose one block is the body its Content-Length declares."""
    start_response("200 OK", _HEADERS)
    if environ["QUERY_STRING"]:
        return iter([_BODY])
    return [_BODY]


def sdk_path():
    """Runs the SDK's request path (environ decoding, start_response, the packed
    response) at build time with an app of its own, no import call and none of
    the user's code, so the snapshot holds it warmed up: a fresh instance's first
    request, which is every request in request isolation, then starts from
    specialized bytecode (the Python hello: ~8% less CPU per fresh instance,
    examples/isolation_cost). What it leaves behind is reset. A run that does not
    end in a packed response would have called the host, which a build cannot:
    that fails the build rather than leave a warm-up that warms nothing."""
    from . import adapter, environ

    for i in range(SDK_WARM_UP_RUNS):
        packed = _PACKED_ITERABLE_REQUEST if i % 2 else _PACKED_REQUEST
        if not adapter._run(_sdk_app, packed):
            raise AssertionError("the SDK's warm-up request did not end in a packed response")
    environ._templates.clear()
