"""The host's packed environ (see `call` in wsgi.wit) -> the environ dict an app gets.

    FLAGS SEP CODES SEP value SEP value ... SEP key SEP value SEP ... SEP

SEP is the string's last character: "\\u0000", or "\\u0100" when a key or value
holds a NUL. FLAGS is one character for the three wsgi.* flags; CODES holds one
character per well-known key, whose values follow in order; every other entry
follows as a key and a value. The format and the tables are the host's
(guest-sdk/rules/src/packed.rs); the host's tests check this file holds the same.

Decoding is a few C-level calls: splitting a latin-1 string, mapping one-character
codes (CPython caches every one-character latin-1 string) to interned keys, and
dict building, so the keys most requests have cost no allocation and no hashing.
"""

from .streams import FileWrapper

WSGI_VERSION = (1, 0)

# One character per well-known key: the CGI keys every request has and the
# headers most clients send. Fixed codes, shared with the host.
KEYS = {
    "A": "REQUEST_METHOD",
    "B": "SCRIPT_NAME",
    "C": "PATH_INFO",
    "D": "QUERY_STRING",
    "E": "CONTENT_TYPE",
    "F": "CONTENT_LENGTH",
    "G": "SERVER_NAME",
    "H": "SERVER_PORT",
    "I": "SERVER_PROTOCOL",
    "J": "SERVER_SOFTWARE",
    "K": "GATEWAY_INTERFACE",
    "L": "REMOTE_ADDR",
    "M": "REMOTE_PORT",
    "N": "HTTPS",
    "O": "wsgi.url_scheme",
    "P": "HTTP_HOST",
    "Q": "HTTP_USER_AGENT",
    "R": "HTTP_ACCEPT",
    "S": "HTTP_ACCEPT_ENCODING",
    "T": "HTTP_ACCEPT_LANGUAGE",
    "U": "HTTP_CONNECTION",
    "V": "HTTP_COOKIE",
    "W": "HTTP_REFERER",
    "X": "HTTP_ORIGIN",
    "Y": "HTTP_AUTHORIZATION",
    "Z": "HTTP_CACHE_CONTROL",
    "a": "HTTP_PRAGMA",
    "b": "HTTP_IF_NONE_MATCH",
    "c": "HTTP_IF_MODIFIED_SINCE",
    "d": "HTTP_RANGE",
    "e": "HTTP_UPGRADE_INSECURE_REQUESTS",
    "f": "HTTP_DNT",
    "g": "HTTP_SEC_FETCH_DEST",
    "h": "HTTP_SEC_FETCH_MODE",
    "i": "HTTP_SEC_FETCH_SITE",
    "j": "HTTP_SEC_FETCH_USER",
    "k": "HTTP_SEC_CH_UA",
    "l": "HTTP_SEC_CH_UA_MOBILE",
    "m": "HTTP_SEC_CH_UA_PLATFORM",
    "n": "HTTP_X_FORWARDED_FOR",
    "o": "HTTP_X_FORWARDED_PROTO",
    "p": "HTTP_X_FORWARDED_HOST",
    "q": "HTTP_X_REAL_IP",
    "r": "HTTP_X_REQUEST_ID",
    "s": "HTTP_X_REQUESTED_WITH",
    "t": "HTTP_FORWARDED",
    "u": "HTTP_EXPECT",
    "v": "HTTP_PRIORITY",
}


def _fixed_entries(bits):
    """What FLAGS char "0" + bits stands for, with the entries every request has."""
    return {
        "wsgi.multithread": bool(bits & 1),
        "wsgi.multiprocess": bool(bits & 2),
        "wsgi.run_once": bool(bits & 4),
        "wsgi.version": WSGI_VERSION,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }


FIXED = {chr(0x30 + bits): _fixed_entries(bits) for bits in range(8)}
_KEY = KEYS.__getitem__


def unpack(packed):
    """The environ dict, without the per-request objects (wsgi.input, wsgi.errors)."""
    parts = iter(packed.split(packed[-1]))
    fixed = FIXED[next(parts)]
    # zip asks the codes first, so it stops at the last code without taking a part.
    environ = dict(zip(map(_KEY, next(parts)), parts))
    # The rest pairs up; the empty piece after the final SEP is left unpaired.
    environ.update(zip(parts, parts))
    environ.update(fixed)
    return environ
