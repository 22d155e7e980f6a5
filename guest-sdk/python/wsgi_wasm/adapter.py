"""Turns the component's exported `call` into a PEP 3333 call of a WSGI application.

The host sends the CGI keys (native strings) plus wsgi.url_scheme and the three
wsgi.* flags; this module adds the Python objects. Every exception the app raises
is caught here: it is logged with its traceback and returned to the host as an
error (the host answers 500, or aborts the connection if headers went out), so a
Python error never traps the instance.
"""

import traceback

from componentize_py_types import Err
from wit_world.imports import server

from . import environ as packed_environ
from . import preload, ssl_shim, validate
from .streams import ErrorStream, FileWrapper, InputStream


class ClientDisconnected(OSError):
    """Raised by write() when the client has gone away; the response cannot go on."""


def _check_native_string(value, what):
    if type(value) is not str:
        raise TypeError(f"{what} must be a str, not {type(value).__name__}: {value!r}")


def _explain_start_response_args(status, headers):
    """Raises the TypeError naming what is wrong with start_response's arguments;
    called only when start_response's quick type tests found something."""
    _check_native_string(status, "status")
    if type(headers) is not list:
        raise TypeError(f"response headers must be a list, not {type(headers).__name__}")
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise TypeError(f"each response header must be a (name, value) tuple, not {item!r}")
        _check_native_string(item[0], "header name")
        _check_native_string(item[1], "header value")


class _Call:
    """One request: the state start_response and write() share.

    start_response's arguments are held here, not sent at once: PEP 3333 lets a
    server send the headers with the first body bytes (wsgiref does the same), and
    most responses are one piece, which then goes back to the host with its head
    as `call`'s result (no import call at all). The host checks the head when it
    gets it, so a head it refuses fails the request there, before any byte is
    sent. Under --validate the head is sent at once (`eager`), so the host's
    verdict on it is raised inside start_response, where the checker names it."""

    __slots__ = ("status", "headers", "eager", "head_at_host", "headers_sent", "packed")

    def __init__(self):
        self.status = None  # None until start_response is called
        self.headers = None
        self.eager = False  # set for --validate
        self.head_at_host = False  # the host has the status and headers
        self.headers_sent = False  # body bytes went out: the head can no longer change
        self.packed = ""  # the whole response, for `call` to return (see write_body)

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.headers_sent:
                    # PEP 3333: too late to replace the response; re-raise so the
                    # host aborts the connection instead of ending it cleanly.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called again without exc_info: headers already set")
        # The check every response goes through, inline and kept to plain type
        # tests: it runs in the sandbox's interpreter, where a call costs more
        # than the loop. The precise error is worked out only when one fails.
        if type(status) is not str or type(headers) is not list:
            _explain_start_response_args(status, headers)
        for item in headers:
            if type(item) is not tuple or len(item) != 2 or type(item[0]) is not str or type(item[1]) is not str:
                _explain_start_response_args(status, headers)
        self.status = status
        self.headers = headers
        if self.eager or self.head_at_host:
            # A replacement head must reach the host, which has the first one.
            self._send_head()
        return self.write

    def _send_head(self):
        """Sends the held status and headers; the body follows in other calls."""
        try:
            server.start_response(self.status, self.headers, self.head_at_host)
        except Err as e:
            raise ValueError(e.value) from None
        self.head_at_host = True

    def write(self, data):
        # Every block of a streamed body comes through here: the common case
        # (bytes, head held or sent, one piece) is inline, as each Python call
        # costs the sandbox's interpreter a few hundred nanoseconds.
        if type(data) is not bytes or self.status is None:
            data = self._check(data)
        if data:
            if not self.head_at_host:
                self._send_head()
            self.headers_sent = True
            if len(data) <= PIECE:
                try:
                    _write_memory((id(data) + _BYTES_DATA_OFFSET, len(data)))
                except Err as e:
                    raise ClientDisconnected(e.value) from None
                return
            for piece in _ranges(data):
                _host(_write_memory, piece)

    def write_body(self, data):
        """The whole body in one go: the host sends it with a Content-Length. A
        small body (see _PACK_ANY_BYTES) goes back with the head as `call`'s
        result, so the response costs no import call; the host checks the head
        then, and a head it refuses fails the request with a 500 and nothing of
        the body sent. A larger one crosses by address after the head."""
        if type(data) is not bytes or self.status is None:
            # Checked here, not by a call on every response: each Python call
            # costs the sandbox's interpreter a few hundred nanoseconds.
            data = self._check(data)
        size = len(data)
        if not self.head_at_host and (
            size <= _PACK_ANY_BYTES or (size <= _PACK_ASCII_BYTES and data.isascii())
        ):
            packed = _pack_response(self.status, self.headers, data)
            if packed is not None:
                self.packed = packed
                self.head_at_host = self.headers_sent = True
                return
        self.ensure_head()
        if data:
            self.headers_sent = True
        for piece in _ranges(data) if data else ((0, 0),):
            _host(server.write_body_memory, piece, size)

    def send_whole(self, data):
        """write_body() for a whole body given while the app's iterable may go on
        working: the packed response cannot wait to go back as `call`'s result
        (PEP 3333 forbids delaying a block), so it crosses now, in one import
        call. The host drops any byte written after."""
        self.write_body(data)
        if self.packed:
            packed, self.packed = self.packed, ""
            try:
                server.send_response(packed)
            except Err as e:
                raise ValueError(e.value) from None

    def ensure_head(self):
        """Sends the held head unless the host has it. Also called when the app's
        iterable ended: a response without body bytes still has a head, which the
        host sends (with the length rules) when the call ends."""
        if not self.head_at_host:
            self._send_head()

    def write_file(self, wrapper, total):
        """A regular file of `total` bytes from wsgi.file_wrapper, with
        Content-Length (unless the app set one). A file under a granted directory
        is sent by the host from the disk; any other (a file bundled in the
        snapshot) block by block through here. A file that grew is cut at
        `total`; one that shrank ends the connection short, as the host does for
        any body shorter than its length."""
        self.ensure_head()
        location = wrapper.location()
        if location is not None:
            try:
                server.send_file(location[0], location[1], total)
                self.headers_sent = True
                return
            except Err as e:
                if not e.value.startswith(SEND_FILE_UNAVAILABLE):
                    raise ClientDisconnected(e.value) from None
        sent = 0
        for block in wrapper:
            block = self._check(block)[: total - sent]
            if block:
                self.headers_sent = True
                sent += len(block)
                for piece in _ranges(block):
                    _host(server.write_body_memory, piece, total)
            if sent >= total:
                break
        if total == 0:
            _host(server.write_body_memory, (0, 0), 0)

    def _check(self, data):
        if self.status is None:
            raise AssertionError("write() called before start_response()")
        if type(data) is not bytes:
            if isinstance(data, (bytearray, memoryview)):
                return bytes(data)
            raise TypeError(f"response body chunks must be bytes, not {type(data).__name__}")
        return data


def _pack_response(status, headers, body):
    """The response as `call` returns it (guest-sdk/rules/src/packed_response.rs):
    COUNT, status, names and values, body, NUL-separated. None when the status or
    a header holds a NUL, which would shift the fields: such a head goes through
    start-response, whose checks name the fault."""
    count = len(headers)
    fields = [_COUNTS[count] if count < len(_COUNTS) else str(count), status]
    for header in headers:
        fields += header
    text = body.decode("latin-1")
    fields.append(text)
    packed = "\0".join(fields)
    if packed.count("\0", 0, len(packed) - len(text)) != len(fields) - 1:
        return None
    return packed


# Header counts as text, made once: str() of an int is a call the sandbox's
# interpreter makes slowly (~0.2 us).
_COUNTS = tuple(map(str, range(64)))

# How send-file's errors begin when the host sent nothing (see wsgi.wit).
SEND_FILE_UNAVAILABLE = "unavailable:"

# Most body bytes the host takes per call (see write-memory in wsgi.wit).
PIECE = 256 * 1024
_write_memory = server.write_memory

# A whole body goes back packed in `call`'s result (no import call) only while
# that costs less than start-response and write-body-memory, ~13 us for a pooled
# call in-process whatever the size. The packed body is latin-1 text: cheap to
# make from ASCII bytes (4 KiB: 11.7 us packed, isascii() included; 16 KiB:
# 13.1 us either way), slow from other bytes, whose chars the boundary encodes as
# UTF-8 (1 KiB: 12.1 us packed; 4 KiB: 19.3 packed, 12.9 by address; 256 KiB: 550
# and 16). Measured with host/examples/isolation_cost on one-piece bodies.
_PACK_ANY_BYTES = 1024
_PACK_ASCII_BYTES = 4 * 1024

# Where a bytes object's data starts, counted from its address (which id() is in
# CPython): after the object's fixed header, whose size is bytes.__basicsize__
# less the one byte CPython counts for the data's terminating NUL.
_BYTES_DATA_OFFSET = bytes.__basicsize__ - 1


def _ranges(data):
    """The (address, length) of each piece of `data`, a bytes object, in this
    instance's memory, for write-memory: the host copies the bytes from there, so
    they are neither copied nor decoded here (componentize-py leaks a list<u8>
    argument, and a latin-1 string costs a decode on each side). The caller holds
    `data` until the host has answered, so the range stays valid."""
    address = id(data) + _BYTES_DATA_OFFSET
    length = len(data)
    if length <= PIECE:
        return ((address, length),)
    return [(address + start, min(PIECE, length - start)) for start in range(0, length, PIECE)]


def _host(function, *args):
    try:
        function(*args)
    except Err as e:
        raise ClientDisconnected(e.value) from None


def _read(max_bytes):
    try:
        return server.read(max_bytes)
    except Err as e:
        raise OSError(f"reading the request body failed: {e.value}") from None


def _declared_length(headers):
    """The Content-Length the app set, or -1 if none (or not a number)."""
    for name, value in headers:
        if len(name) == 14 and name.lower() == "content-length":
            return int(value) if value.isdigit() else -1
    return -1


# Iterators whose next() runs no code of the app's: a block taken from one may
# wait for the next without delaying the response (see _run).
_PLAIN_ITERATORS = (type(iter([])), type(iter(())))

# The environ key by which the host switches on --validate's checks.
VALIDATE_KEY = "wsgi_wasm.validate"


# wsgi.errors, one per instance like a process's sys.stderr (PEP 3333 lets the
# stream be shared): it holds no request's data past the request, whose end
# flushes it, and making one per request cost ~0.4 us.
_ERRORS = ErrorStream(server.log)


def _run(application, packed):
    environ = packed_environ.unpack(packed)
    # Set by the host for --validate (host/src/wsgi/validate.rs); never shown to the app.
    mode = environ.pop(VALIDATE_KEY) if VALIDATE_KEY in environ else None
    environ["wsgi.input"] = InputStream(_read)
    environ["wsgi.errors"] = _ERRORS

    call = _Call()
    start_response = call.start_response
    checker = None
    if mode is not None:
        call.eager = True
        checker = validate.Checker(mode, server.log)
        checker.environ(environ)
        environ["wsgi.input"] = checker.input(environ["wsgi.input"])
        environ["wsgi.errors"] = checker.errors(_ERRORS)
        start_response = checker.start_response(start_response)
    try:
        result = application(environ, start_response)
        # A list has no close(): spare it the attribute lookup.
        close = None if type(result) is list else getattr(result, "close", None)
        try:
            if checker is not None:
                result = checker.result(result)
            if type(result) is list and len(result) == 1 and call.status is not None and not call.headers_sent:
                # The whole body at once: the host can send Content-Length.
                call.write_body(result[0])
            elif result is None or isinstance(result, (str, bytes)):
                raise TypeError(
                    "the application must return an iterable of bytes, not "
                    + type(result).__name__
                )
            elif (
                type(result) is FileWrapper
                and call.status is not None
                and not call.headers_sent
                and (size := result.remaining()) is not None
            ):
                call.write_file(result, size)
            else:
                # A first block holding the whole body the head declares
                # (Content-Length), as frameworks return their bodies, goes to
                # the host with its head in one piece: no byte may follow it.
                # From a list's or a tuple's iterator, whose next() runs none of
                # the app's code, it waits for the iterable's end and goes back
                # as `call`'s result, as a one-item list does (Django: no import
                # call). From any other iterable (Flask's, a generator) it is
                # sent at once: PEP 3333 forbids delaying a block while the app
                # produces the next, and a generator may work long after its
                # last yield.
                iterator = iter(result)
                may_hold = type(iterator) in _PLAIN_ITERATORS
                held = None
                write = call.write
                try:
                    for chunk in iterator:
                        if held is not None:
                            if not chunk:
                                continue
                            write(held)
                            held = None
                        elif (
                            type(chunk) is bytes
                            and chunk
                            and call.status is not None
                            and not call.head_at_host
                            and len(chunk) == _declared_length(call.headers)
                        ):
                            if may_hold:
                                held = chunk
                            else:
                                call.send_whole(chunk)
                            continue
                        if chunk or call.status is not None:
                            write(chunk)
                except BaseException:
                    # The client gets what it would have had without the wait.
                    if held is not None:
                        write(held)
                    raise
                if held is not None:
                    call.write_body(held)
            if checker is not None:
                checker.finished()
            if call.status is None:
                raise AssertionError("the application returned without calling start_response()")
            if not call.head_at_host:
                call.ensure_head()
        finally:
            if close is not None:
                close()
        if checker is not None:
            checker.end()
    finally:
        if _ERRORS.pending:
            _ERRORS.flush()
        ssl_shim.end_request()
    return call.packed


def _report(exc):
    """Logs the traceback; returns the one-line message the host puts in its log."""
    try:
        for line in traceback.format_exception(exc):
            for part in line.rstrip("\n").split("\n"):
                server.log(part)
        summary = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, validate.Violation):
            # "PEP 3333 violation [RULE]: ...": the host reads the rule from it.
            summary = str(exc)
        # A failed run-time import carries a note naming the module and the
        # --preload fix (see preload.py); keep it on the one-line log entry too.
        hints = [n for n in getattr(exc, "__notes__", ()) if isinstance(n, str) and n.startswith("wsgi-wasm: ")]
        return "; ".join([summary, *hints])
    except BaseException:
        # Formatting can fail too (MemoryError, RecursionError): say what we can.
        return type(exc).__name__


def export(application):
    """The class componentize-py exports for the `wsgi-app` world, calling `application`."""

    class WitWorld:
        def call(self, environ):
            preload.at_build_time = False
            try:
                return _run(application, environ)
            except BaseException as exc:  # noqa: BLE001 - an app error must never trap
                raise Err(_report(exc)) from None

    return WitWorld
