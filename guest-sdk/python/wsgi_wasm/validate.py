"""`serve --validate`: PEP 3333 checks around one call, switched on by the host.

Covers what `wsgiref.validate` checks (the environ the app gets, start_response's
arguments, write(), the result iterable, wsgi.input and wsgi.errors) with a name
for each rule, plus the host's own checks (response head, Content-Length), which
the host reports as errors and this module names too.

Strict mode raises `Violation` where the rule is broken, and again when the call
ends if the app swallowed it, so the request fails with a 500 and the traceback
points at the app's line. Warn mode logs the rule and the stack and lets the call
go on as it would without validation. Either way the lines reach the server log
through wsgi.errors' host import.
"""

import re
import traceback

from .streams import FileWrapper

# The environ keys PEP 3333 says every server provides.
REQUIRED_KEYS = (
    "REQUEST_METHOD",
    "SERVER_NAME",
    "SERVER_PORT",
    "wsgi.version",
    "wsgi.input",
    "wsgi.errors",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
)
# As wsgiref: three digits, a space, a reason phrase.
STATUS_RE = re.compile(r"^[1-9][0-9][0-9] ")
# Control characters are never allowed in a header value (wsgiref's bad_header_value_re).
BAD_HEADER_VALUE = re.compile(r"[\000-\037]")
# Statuses that must not carry a body, hence no Content-Type (RFC 9110; wsgiref checks the same).
NO_BODY_STATUSES = (204, 304)


class Violation(AssertionError):
    """A broken PEP 3333 rule; `rule` names it (README.md lists them)."""

    def __init__(self, rule, message):
        super().__init__(f"PEP 3333 violation [{rule}]: {message}")
        self.rule = rule


class Checker:
    """The checks for one request."""

    def __init__(self, mode, log):
        self.strict = mode != "warn"
        self._log = log
        self.first = None
        self.started = False
        self.status_code = None
        self.declared_length = None
        self.sent = 0

    def fail(self, rule, message):
        violation = Violation(rule, message)
        if self.first is None:
            self.first = violation
        if self.strict:
            raise violation
        self._log(f"PEP 3333 violation [{rule}] (--validate=warn: not stopped): {message}")
        # The app's frames show where; the checker's own frames would only add noise.
        for line in traceback.format_list(_app_frames()):
            for part in line.rstrip("\n").split("\n"):
                self._log(part)

    def check(self, ok, rule, message):
        if not ok:
            self.fail(rule, message)

    def end(self):
        """When the call is over: in strict mode, a violation the app caught still fails it."""
        if self.strict and self.first is not None:
            raise self.first

    # --- the environ (the host's side) ---

    def environ(self, environ):
        check = self.check
        check(type(environ) is dict, "environ.type", f"environ is a {type(environ).__name__}, not a dict")
        for key in REQUIRED_KEYS:
            check(key in environ, "environ.required-key", f"environ has no {key!r}")
        for key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            check(key not in environ, "environ.http-content", f"environ has {key!r}; it must be {key[5:]!r}")
        for key, value in environ.items():
            check(type(key) is str, "environ.native-string", f"environ key {key!r} is not a str")
            if "." not in key:
                check(
                    type(value) is str,
                    "environ.native-string",
                    f"environ[{key!r}] is a {type(value).__name__}, not a str",
                )
        check(environ.get("wsgi.version") == (1, 0), "environ.wsgi-version", "wsgi.version is not (1, 0)")
        check(
            environ.get("wsgi.url_scheme") in ("http", "https"),
            "environ.url-scheme",
            f"wsgi.url_scheme is {environ.get('wsgi.url_scheme')!r}",
        )
        script, path = environ.get("SCRIPT_NAME"), environ.get("PATH_INFO")
        check(script is not None or path is not None, "environ.path", "neither SCRIPT_NAME nor PATH_INFO is set")
        check(not script or script.startswith("/"), "environ.path", f"SCRIPT_NAME {script!r} must start with /")
        check(script != "/", "environ.path", "SCRIPT_NAME is '/'; the root is ''")
        check(not path or path.startswith("/"), "environ.path", f"PATH_INFO {path!r} must start with /")
        length = environ.get("CONTENT_LENGTH")
        check(
            not length or length.isdigit(),
            "environ.content-length",
            f"CONTENT_LENGTH {length!r} is not a non-negative integer",
        )

    # --- start_response and write (the app's side) ---

    def start_response(self, start_response):
        def checked(*args, **kwargs):
            check = self.check
            check(not kwargs, "start_response.args", f"start_response() takes no keyword arguments: {sorted(kwargs)}")
            check(len(args) in (2, 3), "start_response.args", f"start_response() takes 2 or 3 arguments, not {len(args)}")
            status, headers, exc_info = (list(args) + [None] * 3)[:3]
            if exc_info is not None:
                check(
                    type(exc_info) is tuple and len(exc_info) == 3,
                    "start_response.exc-info",
                    f"exc_info must be a sys.exc_info() tuple, not {exc_info!r}",
                )
            else:
                check(not self.started, "start_response.twice", "start_response() called again without exc_info")
            self._status(status)
            self._headers(headers)
            try:
                write = start_response(*args[:3])
            except ValueError as e:
                # The host's own checks on the head (hop-by-hop, sizes, characters).
                self.fail("start_response.host", str(e))
                raise
            self.started = True
            return self.write(write)

        return checked

    def _status(self, status):
        if type(status) is not str:
            self.fail("start_response.status", f"status must be a str, not {type(status).__name__}")
            return
        ok = bool(STATUS_RE.match(status)) and len(status) >= 5
        self.check(ok, "start_response.status", f"status {status!r} must be like '200 OK'")
        if ok:
            self.status_code = int(status[:3])

    def _headers(self, headers):
        if type(headers) is not list:
            self.fail("start_response.headers", f"headers must be a list, not {type(headers).__name__}")
            return
        content_type = False
        self.declared_length = None
        for item in headers:
            if type(item) is not tuple or len(item) != 2:
                self.fail("start_response.headers", f"each header must be a (name, value) tuple, not {item!r}")
                continue
            name, value = item
            if type(name) is not str or type(value) is not str:
                self.fail("start_response.headers", f"header name and value must be str: {item!r}")
                continue
            lower = name.lower()
            self.check(lower != "status", "start_response.header-name", "'Status' is not a header (CGI-ism)")
            self.check(
                "\n" not in name and ":" not in name and not name.endswith(("-", "_")),
                "start_response.header-name",
                f"header name {name!r} is malformed",
            )
            self.check(
                not BAD_HEADER_VALUE.search(value),
                "start_response.header-value",
                f"header {name!r} has a control character in its value {value!r}",
            )
            if lower == "content-type":
                content_type = True
            elif lower == "content-length" and value.strip().isdigit():
                self.declared_length = int(value.strip())
        if self.status_code in NO_BODY_STATUSES:
            self.check(
                not content_type,
                "start_response.content-type",
                f"a {self.status_code} response has no body, so no Content-Type",
            )
        elif self.status_code is not None:
            self.check(content_type, "start_response.content-type", "no Content-Type header")

    def write(self, write):
        def checked(*args):
            self.check(len(args) == 1, "write.args", f"write() takes one argument, not {len(args)}")
            data = args[0] if args else b""
            self._chunk(data, "write.type", "write()")
            return write(data)

        return checked

    def _chunk(self, data, rule, what):
        if data:
            self.check(self.started, "start_response.not-called", f"{what} before start_response()")
        if type(data) is not bytes:
            self.fail(rule, f"{what} must give bytes, not {type(data).__name__}: {data!r:.80}")
        else:
            self.sent += len(data)
            if self.declared_length is not None and self.status_code not in NO_BODY_STATUSES:
                self.check(
                    self.sent <= self.declared_length,
                    "response.content-length",
                    f"the body is longer than its Content-Length ({self.declared_length})",
                )

    # --- the result iterable ---

    def result(self, result):
        """Checks the result; returns what the adapter should iterate (the result
        itself when it is a list, so the adapter's fast paths are unchanged)."""
        # A violation the app caught: fail now, while a 500 can still be sent.
        self.end()
        if result is None or isinstance(result, (str, bytes)):
            self.fail(
                "result.type",
                f"the application must return an iterable of bytes, not {type(result).__name__}",
            )
            return result
        if type(result) is FileWrapper:
            # The adapter sends it by itself (with its own length rules): leave it be.
            self.declared_length = None
            return result
        if type(result) is list:
            self.check(self.started or not result, "start_response.not-called", "returned a body before start_response()")
            for item in result:
                self._chunk(item, "result.item-type", "the result iterable")
            return result
        self.check(
            not hasattr(result, "__next__") or iter(result) is result,
            "result.iter",
            "iter(iterator) is not the iterator",
        )
        return _Iterable(self, result)

    def finished(self):
        """After the body went out (the adapter calls close() itself)."""
        self.check(self.started, "start_response.not-called", "the application returned without calling start_response()")
        if self.declared_length is not None and self.status_code not in NO_BODY_STATUSES:
            self.check(
                self.sent >= self.declared_length,
                "response.content-length",
                f"the body is {self.sent} bytes, shorter than its Content-Length ({self.declared_length})",
            )

    # --- wsgi.input and wsgi.errors ---

    def input(self, stream):
        return _Input(self, stream)

    def errors(self, stream):
        return _Errors(self, stream)


class _Iterable:
    """The app's iterable, checked chunk by chunk; close() passes through."""

    def __init__(self, checker, result):
        self._checker = checker
        self._result = result
        self._iterator = None
        close = getattr(result, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self):
        self._checker.check(self._iterator is None, "result.iter", "the result iterable was iterated twice")
        self._iterator = iter(self._result)
        # A separate iterator: a server may call iter() on what iter() gave it
        # (a for loop does), which must not count as iterating the result again.
        return self._chunks()

    def _chunks(self):
        for chunk in self._iterator:
            self._checker._chunk(chunk, "result.item-type", "the result iterable")
            yield chunk


class _Input:
    """wsgi.input as wsgiref checks it: read(size), readline([size]), no close()."""

    def __init__(self, checker, stream):
        self._checker = checker
        self._stream = stream

    def read(self, *args):
        self._checker.check(
            len(args) == 1, "input.read-size", "wsgi.input.read() must be given a size (PEP 3333: read(size))"
        )
        return self._stream.read(*args)

    def readline(self, *args):
        self._checker.check(len(args) <= 1, "input.readline-args", "wsgi.input.readline() takes at most a size")
        return self._stream.readline(*args)

    def readlines(self, *args):
        self._checker.check(len(args) <= 1, "input.readline-args", "wsgi.input.readlines() takes at most a hint")
        return self._stream.readlines(*args)

    def __iter__(self):
        return iter(self._stream)

    def close(self):
        self._checker.fail("input.close", "the application must not close wsgi.input")


class _Errors:
    """wsgi.errors as wsgiref checks it: write(str), writelines, flush, no close()."""

    def __init__(self, checker, stream):
        self._checker = checker
        self._stream = stream

    def write(self, s):
        if type(s) is not str:
            self._checker.fail("errors.write-type", f"wsgi.errors.write() takes str, not {type(s).__name__}")
        return self._stream.write(s)

    def writelines(self, seq):
        for s in seq:
            self.write(s)

    def flush(self):
        self._stream.flush()

    def close(self):
        self._checker.fail("errors.close", "the application must not close wsgi.errors")


def _app_frames():
    """The current stack without this module's and the adapter's frames."""
    frames = traceback.extract_stack()
    return [f for f in frames if not f.filename.endswith(("wsgi_wasm/validate.py", "wsgi_wasm/adapter.py"))]
