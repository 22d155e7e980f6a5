"""Modules WSGI apps and frameworks import lazily, imported here at build time.

componentize-py snapshots the interpreter after the app module is imported and only
bundles modules that were imported by then: a module first imported while serving a
request is not there and fails with ModuleNotFoundError or LookupError. Importing
them here puts them in the snapshot. `wsgi-wasm build --preload MODULE` adds more.

Importing this module preloads the standard library part. The generated entry
module then imports the app, calls `frameworks()` (submodules of the frameworks the
app imported that they load on first use) and finally `seal()`, which makes a
lazy import that still fails at run time say which module and how to fix it.
"""

import importlib
import sys

# Standard-library modules that the stdlib itself or the frameworks (Flask/Werkzeug,
# Jinja2, Django, Bottle, Falcon, Pyramid/WebOb) import inside functions. Each line
# says who needs it. A name missing from the sandbox's CPython is skipped.
STDLIB = [
    # Codecs are found by name at first use: str.encode("idna") (Werkzeug, Django
    # URL/host handling), utf-16/32 (JSON detection), cp1252/latin-1 (email, forms).
    "encodings.ascii",
    "encodings.latin_1",
    "encodings.utf_8",
    "encodings.utf_8_sig",
    "encodings.utf_16",
    "encodings.utf_16_le",
    "encodings.utf_16_be",
    "encodings.utf_32",
    "encodings.utf_32_le",
    "encodings.utf_32_be",
    "encodings.idna",
    "encodings.punycode",
    "encodings.unicode_escape",
    "encodings.raw_unicode_escape",
    "encodings.cp1252",
    "encodings.cp437",
    "encodings.iso8859_15",
    "encodings.charmap",
    "encodings.base64_codec",
    "encodings.hex_codec",
    "encodings.quopri_codec",
    "encodings.zlib_codec",
    "encodings.aliases",
    # time.strptime()/datetime.strptime() import _strptime on first call.
    "_strptime",
    "calendar",
    "zoneinfo",
    "locale",
    "gettext",
    # Mail and MIME: multipart forms, Django's mail and http, WebOb.
    "email",
    "email.parser",
    "email.feedparser",
    "email.message",
    "email.policy",
    "email.headerregistry",
    "email._header_value_parser",
    "email.utils",
    "email.header",
    "email.charset",
    "email.encoders",
    "email.errors",
    "email.generator",
    "email.iterators",
    "email.base64mime",
    "email.quoprimime",
    "email.mime.base",
    "email.mime.multipart",
    "email.mime.text",
    "email.mime.nonmultipart",
    "email.mime.message",
    "mimetypes",
    "quopri",
    "base64",
    "binascii",
    # HTTP bits frameworks reach for while answering.
    "http",
    "http.cookies",
    "urllib",
    "urllib.parse",
    "wsgiref",
    "wsgiref.util",
    "wsgiref.headers",
    "html",
    "html.parser",
    "html.entities",
    "json",
    "json.decoder",
    "json.encoder",
    "json.scanner",
    # Sessions, signing, CSRF, ETags.
    "hashlib",
    "hmac",
    "secrets",
    "uuid",
    "random",
    "zlib",
    "gzip",
    "pickle",
    "copy",
    # Numbers and text.
    "decimal",
    "fractions",
    "numbers",
    "string",
    "textwrap",
    "unicodedata",
    "ipaddress",
    "xml.etree.ElementTree",
    "xml.sax.saxutils",
    # Files, paths, temporary files (uploads spool to them), package data.
    "io",
    "tempfile",
    "shutil",
    "glob",
    "fnmatch",
    "pathlib",
    "stat",
    "importlib.readers",
    "importlib.util",
    "pkgutil",
    # Errors and logging: tracebacks are formatted while a request fails.
    "traceback",
    "linecache",
    "tokenize",
    "logging",
    "warnings",
    "inspect",
    "dataclasses",
    "contextvars",
    "sqlite3",
    "sqlite3.dbapi2",
]

# Submodules that frameworks import the first time a feature is used (a template
# tag library, a form parser, a JSON provider...), keyed by the framework's
# top-level package: imported only when the app imported that framework.
FRAMEWORKS = {
    "werkzeug": [
        "werkzeug.formparser",
        "werkzeug.sansio.multipart",
        "werkzeug.datastructures",
        "werkzeug.http",
        "werkzeug.urls",
        "werkzeug.utils",
        "werkzeug.wsgi",
        "werkzeug.exceptions",
        "werkzeug.routing",
        "werkzeug.security",
        "werkzeug.wrappers",
    ],
    "flask": [
        "flask.json",
        "flask.json.provider",
        "flask.json.tag",
        "flask.sessions",
        "flask.templating",
        "flask.helpers",
        "flask.debughelpers",
    ],
    "jinja2": [
        "jinja2.ext",
        "jinja2.filters",
        "jinja2.tests",
        "jinja2.nodes",
        "jinja2.compiler",
        "jinja2.loaders",
        "jinja2.sandbox",
        "jinja2.debug",
        "jinja2.async_utils",
    ],
    "itsdangerous": ["itsdangerous.url_safe", "itsdangerous.timed"],
    "django": [
        "django.template.defaulttags",
        "django.template.defaultfilters",
        "django.template.loader_tags",
        "django.template.loaders.filesystem",
        "django.template.loaders.app_directories",
        "django.template.loaders.cached",
        "django.template.backends.django",
        "django.template.context_processors",
        "django.templatetags.i18n",
        "django.templatetags.static",
        "django.templatetags.cache",
        "django.templatetags.l10n",
        "django.templatetags.tz",
        "django.middleware.common",
        "django.middleware.csrf",
        "django.middleware.security",
        "django.middleware.clickjacking",
        "django.contrib.sessions.backends.db",
        "django.contrib.sessions.backends.signed_cookies",
        "django.contrib.sessions.serializers",
        "django.contrib.messages.storage.fallback",
        "django.contrib.messages.storage.cookie",
        "django.contrib.messages.storage.session",
        "django.contrib.messages.context_processors",
        "django.contrib.auth.context_processors",
        "django.contrib.auth.hashers",
        "django.contrib.auth.views",
        "django.contrib.auth.forms",
        "django.contrib.admin.templatetags.admin_list",
        "django.contrib.admin.templatetags.admin_modify",
        "django.contrib.admin.templatetags.admin_urls",
        "django.contrib.admin.templatetags.log",
        "django.contrib.admin.templatetags.base",
        "django.contrib.admin.views.main",
        "django.contrib.admin.views.decorators",
        "django.contrib.admin.forms",
        "django.contrib.staticfiles.handlers",
        "django.contrib.staticfiles.finders",
        "django.contrib.staticfiles.storage",
        "django.db.backends.sqlite3.base",
        "django.db.backends.sqlite3.features",
        "django.db.backends.sqlite3.introspection",
        "django.db.backends.sqlite3.operations",
        "django.db.backends.sqlite3.schema",
        "django.db.backends.sqlite3.client",
        "django.db.backends.sqlite3.creation",
        "django.db.models.sql.compiler",
        "django.core.handlers.wsgi",
        "django.core.serializers.json",
        "django.forms.renderers",
        "django.views.csrf",
        "django.views.debug",
        "django.views.defaults",
        "django.views.static",
        "django.utils.translation.trans_real",
        "django.utils.timesince",
        "django.http.multipartparser",
        "django.core.files.uploadhandler",
        "django.core.files.uploadedfile",
    ],
    "bottle": [],
    "falcon": [
        "falcon.media",
        "falcon.media.json",
        "falcon.media.multipart",
        "falcon.media.urlencoded",
        "falcon.routing",
        "falcon.response",
        "falcon.request",
    ],
    "pyramid": [
        "pyramid.renderers",
        "pyramid.httpexceptions",
        "pyramid.session",
        "pyramid.csrf",
        "pyramid.view",
        "pyramid.static",
        "pyramid.tweens",
        "pyramid.router",
        "pyramid.traversal",
        "pyramid.urldispatch",
    ],
    "webob": ["webob.multidict", "webob.cookies", "webob.request", "webob.response", "webob.exc", "webob.acceptparse"],
    "markupsafe": [],
}


def _pbkdf2_hmac_in_python(hash_name, password, salt, iterations, dklen=None):
    """hashlib.pbkdf2_hmac in Python (RFC 8018), for build time only, when the
    host that computes it at run time is not there. Same results, ~10x slower."""
    import hashlib
    import hmac

    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    password = bytes(password)
    salt = bytes(salt)
    inner = hmac.new(password, None, hash_name)
    outer_size = inner.digest_size
    dklen = dklen or outer_size
    if dklen < 1:
        raise ValueError("dklen must be at least 1")
    # The keyed inner/outer states, computed once and copied per round (as
    # CPython's old pure-Python fallback did).
    key = password if len(password) <= inner.block_size else hashlib.new(hash_name, password).digest()
    key = key.ljust(inner.block_size, b"\0")
    ipad = hashlib.new(hash_name, key.translate(bytes(x ^ 0x36 for x in range(256))))
    opad = hashlib.new(hash_name, key.translate(bytes(x ^ 0x5C for x in range(256))))

    def prf(data):
        i = ipad.copy()
        i.update(data)
        o = opad.copy()
        o.update(i.digest())
        return o.digest()

    blocks = []
    block = 1
    while len(blocks) * outer_size < dklen:
        u = prf(salt + block.to_bytes(4, "big"))
        acc = int.from_bytes(u, "big")
        for _ in range(iterations - 1):
            u = prf(u)
            acc ^= int.from_bytes(u, "big")
        blocks.append(acc.to_bytes(outer_size, "big"))
        block += 1
    return b"".join(blocks)[:dklen]


# True while the component is being built (the app imported and warmed up), when
# the host's imports are not there; the adapter clears it on the first request.
at_build_time = True

# Digest sizes of the hashes the host's pbkdf2-hmac offers (dklen=None means one).
_PBKDF2_DIGEST_SIZES = {"sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}


def _pbkdf2_hmac(hash_name, password, salt, iterations, dklen=None):
    """hashlib.pbkdf2_hmac, computed by the host (the sandbox's CPython has no
    OpenSSL). Same arguments, results and errors as CPython's; its time counts
    against the request's CPU limit. While building (Django creating a user at
    import time, say) there is no host: the same result in Python, slowly."""
    from componentize_py_types import Err
    from wit_world.imports import server

    if at_build_time:
        return _pbkdf2_hmac_in_python(hash_name, password, salt, iterations, dklen)

    if not isinstance(hash_name, str):
        raise TypeError(f"pbkdf2_hmac() argument 'hash_name' must be str, not {type(hash_name).__name__}")
    name = hash_name.lower()
    if name not in _PBKDF2_DIGEST_SIZES:
        raise ValueError(f"unsupported hash type {hash_name}")
    password, salt = bytes(memoryview(password)), bytes(memoryview(salt))
    if iterations < 1:
        raise ValueError("iteration value must be greater than 0.")
    if iterations > 0xFFFFFFFF:
        raise OverflowError("iteration value is too great.")
    if dklen is None:
        dklen = _PBKDF2_DIGEST_SIZES[name]
    if dklen < 1:
        raise ValueError("key length must be greater than 0.")
    if dklen > 0xFFFFFFFF:
        raise OverflowError("key length is too great.")
    try:
        return bytes(server.pbkdf2_hmac(name, password.decode("latin-1"), salt.decode("latin-1"), iterations, dklen))
    except Err as e:
        raise ValueError(e.value) from None


def _scrypt(password, *, salt=None, n=None, r=None, p=None, maxmem=0, dklen=64):
    """hashlib.scrypt, computed by the host (no OpenSSL in the sandbox). Same
    arguments, results and errors as CPython's, plus the host's bounds on memory
    and work (a ValueError naming them); its time counts against the request's
    CPU limit. Not available while building: there is no host then."""
    from componentize_py_types import Err
    from wit_world.imports import server

    if at_build_time:
        raise RuntimeError("hashlib.scrypt is computed by the server: call it while serving, not at build time")
    password = bytes(memoryview(password))
    if salt is None:
        raise TypeError("salt is required")
    salt = bytes(memoryview(salt))
    for name, value in (("n", n), ("r", r), ("p", p)):
        if value is None:
            raise TypeError(f"{name} is required")
        if type(value) is not int:
            raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as an integer")
    if n < 2 or n & (n - 1):
        raise ValueError("n must be a power of 2.")
    if not 0 <= maxmem <= 0x7FFFFFFF:
        raise ValueError("maxmem must be positive and smaller than 2147483647")
    if not 1 <= dklen <= 0x7FFFFFFF:
        raise ValueError("dklen must be greater than 0 and smaller than 2147483647")
    if not (1 <= r <= 0xFFFFFFFF and 1 <= p <= 0xFFFFFFFF and n <= 0xFFFFFFFFFFFFFFFF):
        raise ValueError("Invalid parameter combination for n, r, p, maxmem.")
    try:
        return bytes(server.scrypt(password.decode("latin-1"), salt.decode("latin-1"), n, r, p, maxmem, dklen))
    except Err as e:
        raise ValueError(e.value) from None


def _compat():
    """Fills stdlib gaps of CPython for WASI (pbkdf2_hmac, scrypt, an importable ssl) and makes
    refusals of ungranted network use say which option allows it."""
    import hashlib

    if not hasattr(hashlib, "pbkdf2_hmac"):
        hashlib.pbkdf2_hmac = _pbkdf2_hmac
    if not hasattr(hashlib, "scrypt"):
        hashlib.scrypt = _scrypt
    try:
        import ssl  # noqa: F401
    except ImportError:
        # Packages import ssl at load time without using it (scramp, PyJWT): give
        # them a module that imports and fails clearly only when TLS is used.
        from . import ssl_shim

        sys.modules["ssl"] = ssl_shim
    from . import net

    net.install()
    try:
        import sqlite3  # noqa: F401
    except ImportError:
        pass
    else:
        from . import sqlite_create

        sqlite_create.install()


def _import_all(names, missing):
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - a module the sandbox lacks is not fatal
            missing.append(f"{name}: {type(e).__name__}: {e}")


_missing = []


# Standard-library packages whose submodules load on first use: importlib.metadata
# (version(), entry points) and importlib.resources (package data).
STDLIB_TREES = ["importlib.metadata", "importlib.resources"]


def stdlib():
    _compat()
    _import_all(STDLIB, _missing)
    for package in STDLIB_TREES:
        _import_tree(package, _missing)
    import mimetypes

    # Reads the type maps (no files in the sandbox: the built-in table) now, not
    # at the first guess_type() of a request.
    mimetypes.init()


# Whole package trees imported when the framework is in use: Django imports its
# request-time machinery piecemeal (`from django.conf import urls` while answering a
# 404, template tag libraries by name, views by dotted path).
TREES = {
    "django": [
        "django.conf.urls",
        "django.urls",
        "django.views",
        "django.template",
        "django.templatetags",
        "django.middleware",
        "django.forms",
        "django.http",
        "django.core.handlers",
        "django.core.files",
        "django.core.serializers",
        "django.core.cache.backends.locmem",
        "django.core.signing",
        "django.core.validators",
        "django.utils",
    ],
}
# Never walked into: test suites, commands, and modules needing what the sandbox
# lacks (GIS needs GDAL; the debug toolbar-ish bits need a terminal).
TREE_SKIP = (".tests", ".test", ".management", ".migrations", "django.contrib.gis", "django.utils.autoreload")


def _import_tree(package, missing):
    try:
        module = importlib.import_module(package)
    except Exception as e:  # noqa: BLE001
        missing.append(f"{package}: {type(e).__name__}: {e}")
        return
    path = getattr(module, "__path__", None)
    if path is None:
        return
    import pkgutil

    for info in pkgutil.walk_packages(path, package + ".", onerror=lambda name: None):
        if any(part in info.name for part in TREE_SKIP):
            continue
        try:
            importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - optional parts (a missing extra) stay out
            pass


def _tzdata():
    """The IANA time zone database: the sandbox has no /usr/share/zoneinfo, so
    zoneinfo (and Django with USE_TZ) needs the `tzdata` package. Its zones are
    package data found by importing tzdata.zoneinfo.<Area>: import them all."""
    import importlib.util

    if importlib.util.find_spec("tzdata") is None:
        return
    _import_tree("tzdata", _missing)


def frameworks():
    """Preloads the lazily imported parts of the frameworks the app imported."""
    loaded = {name.partition(".")[0] for name in list(sys.modules)}
    for framework, names in FRAMEWORKS.items():
        if framework in loaded:
            _import_all(names, _missing)
    for framework, packages in TREES.items():
        if framework in loaded:
            for package in packages:
                _import_tree(package, _missing)
    _tzdata()
    _warm_up()


def _warm_up():
    """Loads what frameworks build on first use by importing modules: Django's
    URLconf (and through it the views), template engines with their tag libraries
    and loaders, the forms renderer, and the default language's catalogues."""
    if "django" not in sys.modules:
        return
    try:
        from django.apps import apps

        if not apps.ready:
            return
        from django.conf import settings
        from django.forms.renderers import get_default_renderer
        from django.template import engines
        from django.urls import get_resolver

        get_resolver()._populate()
        for backend in engines.all():
            engine = getattr(backend, "engine", None)
            if engine is not None:
                engine.template_loaders  # noqa: B018 - a cached property that imports
        renderer = get_default_renderer()
        getattr(renderer, "engine", None)
        for app_config in apps.get_app_configs():
            # Each installed app's views, forms, admin and template tags.
            if not app_config.name.startswith("django.contrib.gis"):
                _import_tree(app_config.name, _missing)
        if settings.USE_TZ:
            from django.utils import timezone

            # Cached for the process: loaded from tzdata now, not per instance.
            timezone.get_default_timezone()
        if settings.USE_I18N:
            from django.utils import translation

            translation.activate(settings.LANGUAGE_CODE)
            translation.gettext("Log in")
            translation.deactivate()
    except Exception as e:  # noqa: BLE001
        _missing.append(f"django warm-up: {type(e).__name__}: {e}")


def missing():
    """What could not be preloaded (the build report lists it)."""
    return list(_missing)


# Standard-library modules the sandbox's CPython (3.14 for WASI) does not have at
# all: no amount of preloading brings them.
UNAVAILABLE = {
    "_ssl", "_hashlib", "ctypes", "_ctypes", "bz2", "_bz2", "lzma", "_lzma",
    "subprocess", "_posixsubprocess", "multiprocessing", "readline", "curses", "_curses",
    "tkinter", "_tkinter", "dbm", "_dbm", "_gdbm", "resource", "termios", "grp", "pwd",
}

HINT_MARK = "wsgi-wasm: "


def _hint(name):
    top = name.partition(".")[0]
    if top in UNAVAILABLE:
        return (
            f"{HINT_MARK}{name!r} is not available in the sandbox's CPython (3.14 for WASI has no "
            f"OpenSSL, ctypes, bz2, lzma or subprocess); the app cannot use it here"
        )
    if top in _build_time_names or name in _build_time_names:
        return (
            f"{HINT_MARK}{name!r} was not imported when the component was built, so it is not in "
            f"the component (modules imported lazily at run time are missing); "
            f"rebuild with `wsgi-wasm build ... --preload {name}`"
        )
    return (
        f"{HINT_MARK}{name!r} was not installed when the component was built; add its "
        f"distribution to requirements.txt (`wsgi-wasm build -r requirements.txt`) or pass "
        f"its directory with -p, then rebuild (if it is imported lazily, also --preload {name})"
    )


_build_time_names = set()


def _note_missing(find_and_load):
    def _find_and_load(name, import_):
        try:
            return find_and_load(name, import_)
        except ModuleNotFoundError as e:
            if e.name == name and not any(n.startswith(HINT_MARK) for n in getattr(e, "__notes__", ())):
                e.add_note(_hint(name))
            raise

    return _find_and_load


def _encoding_hint(name):
    import encodings
    from encodings.aliases import aliases

    norm = encodings.normalize_encoding(name).lower()
    module = aliases.get(norm, norm)
    raise LookupError(
        f"unknown encoding: {name} ({HINT_MARK}if Python has this codec, it was not imported when the "
        f"component was built; rebuild with `wsgi-wasm build ... --preload encodings.{module}`)"
    )


def seal():
    """Called last at build time: from now on (run time), an import that fails gets
    a note saying why and what to do, in the traceback the adapter logs."""
    import pkgutil

    _build_time_names.update(m.name for m in pkgutil.iter_modules())
    _build_time_names.update(sys.stdlib_module_names)
    _build_time_names.update(n.partition(".")[0] for n in sys.modules)
    bootstrap = sys.modules["_frozen_importlib"]
    # The import system (the `import` statement in C and importlib.import_module)
    # looks _find_and_load up on this module at each load, and only for modules
    # not in sys.modules: modules already imported pay nothing.
    bootstrap._find_and_load = _note_missing(bootstrap._find_and_load)
    import codecs

    # Tried after the encodings package's own search function has found nothing.
    codecs.register(_encoding_hint)


stdlib()
