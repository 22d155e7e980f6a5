"""The host's packed environ (see `call` in wsgi.wit) -> the environ dict an app gets.

    CONTEXT SEP CODES SEP value SEP value ... SEP key SEP value SEP ... SEP
    CONTEXT = FLAGS CONTEXT-CODES ("\\u0001" value)*

SEP is the string's last character: "\\u0000", or "\\u0100" when a key or value
holds a NUL. CONTEXT is what every request on one listener and mount shares: FLAGS,
one character for the three wsgi.* flags, then codes and values of keys such as
SERVER_NAME. CODES holds one character per other well-known key, whose values
follow in order; every other entry follows as a key and a value. The format and
the tables are the host's (guest-sdk/rules/src/packed.rs); the host's tests check
this file holds the same.

Decoding is a few C-level calls: splitting a latin-1 string, copying a template
dict (built once per context and set of codes, with interned keys) and replacing
its values, so the keys most requests have cost no allocation, no hashing and no
growing of the dict.
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
CONTEXT_SEPARATOR = "\u0001"

# Environ templates: for each context and set of codes seen, the dict a request
# starts from (the context's entries, then the codes' keys valued None until the
# request's own values replace them) and the codes' keys in order. A request of a
# known kind then costs one copy of a dict already at its final size and one
# update that only replaces values; building the same dict from the context's
# entries grew the table twice per request (the Python hello: unpack took ~3.8 us
# in the sandbox's interpreter, ~2.9 us with templates). The placeholders are
# None, not an earlier request's values, so nothing of one request can show in
# another's environ. A server sends a handful of contexts (one per listener,
# mount, scheme and protocol) and clients a few header sets each; the bound keeps
# a client varying its headers from growing this forever (past it, a request of a
# new kind builds its template afresh and it is not kept).
MAX_TEMPLATES = 256
_templates = {}


def _context_entries(context):
    """A new dict of the context's entries."""
    codes, *values = context.split(CONTEXT_SEPARATOR)
    entries = dict(FIXED[codes[0]])
    entries.update(zip(map(_KEY, codes[1:]), values))
    return entries


def _template(context, codes):
    """The template for a (context, codes) not seen before, kept for the next
    request of the kind unless the instance serves only this request
    (wsgi.run_once: no next request would use it) or the bound is reached."""
    template = _context_entries(context)
    keys = tuple(map(_KEY, codes))
    template.update(dict.fromkeys(keys))
    known = (template, keys, 2 + len(keys))
    if not template["wsgi.run_once"] and len(_templates) < MAX_TEMPLATES:
        _templates[(context, codes)] = known
    return known


def unpack(packed):
    """The environ dict, without the per-request objects (wsgi.input, wsgi.errors)."""
    # CONTEXT, CODES, the codes' values, other keys and values, and the empty
    # piece after the final SEP.
    parts = packed.split(packed[-1])
    known = _templates.get((parts[0], parts[1])) or _template(parts[0], parts[1])
    template, keys, end = known
    # A copy: the app may change its environ, and the next request must not see it.
    environ = template.copy()
    environ.update(zip(keys, parts[2:end]))
    if len(parts) > end + 1:
        extra = iter(parts[end:-1])
        environ.update(zip(extra, extra))
    return environ
