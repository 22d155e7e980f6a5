"""An `ssl` module for a CPython built without OpenSSL.

The sandbox's CPython (3.14 for WASI) has no `_ssl`, so the standard `ssl` module
cannot be imported, and many packages import it at module load without ever opening
a TLS connection: scramp (pg8000's SCRAM authentication) does
`from ssl import SSLObject, SSLSocket` for channel binding, PyJWT imports
SSLContext, HTTP clients import it to offer TLS. This module stands in for it: it
imports cleanly and offers the names packages touch at import time (the classes,
`create_default_context`, the constants and exceptions), so `isinstance` checks and
option parsing work. Anything that would actually speak TLS raises `SSLError`
saying so: the sandbox cannot make TLS connections itself.

Installed as `sys.modules["ssl"]` by `wsgi_wasm.preload` only when the real module
is missing.
"""

import enum
import socket as _socket

HAS_SNI = False
HAS_ALPN = False
HAS_NPN = False
HAS_ECDH = False
HAS_TLSv1 = HAS_TLSv1_1 = HAS_TLSv1_2 = HAS_TLSv1_3 = False
HAS_SSLv2 = HAS_SSLv3 = False
HAS_NEVER_CHECK_COMMON_NAME = False
CHANNEL_BINDING_TYPES = []
OPENSSL_VERSION = "none (wsgi-wasm sandbox: no TLS)"
OPENSSL_VERSION_INFO = (0, 0, 0, 0, 0)
OPENSSL_VERSION_NUMBER = 0

UNAVAILABLE = (
    "TLS is not available inside the wsgi-wasm sandbox: its CPython has no OpenSSL "
    "(connections to granted destinations are plain TCP)"
)


class SSLError(OSError):
    pass


class SSLZeroReturnError(SSLError):
    pass


class SSLWantReadError(SSLError):
    pass


class SSLWantWriteError(SSLError):
    pass


class SSLSyscallError(SSLError):
    pass


class SSLEOFError(SSLError):
    pass


class SSLCertVerificationError(SSLError, ValueError):
    pass


CertificateError = SSLCertVerificationError
socket_error = OSError


class VerifyMode(enum.IntEnum):
    CERT_NONE = 0
    CERT_OPTIONAL = 1
    CERT_REQUIRED = 2


CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED = VerifyMode


class VerifyFlags(enum.IntFlag):
    VERIFY_DEFAULT = 0
    VERIFY_CRL_CHECK_LEAF = 0x4
    VERIFY_CRL_CHECK_CHAIN = 0xC
    VERIFY_X509_STRICT = 0x20
    VERIFY_X509_TRUSTED_FIRST = 0x8000
    VERIFY_X509_PARTIAL_CHAIN = 0x80000
    VERIFY_ALLOW_PROXY_CERTS = 0x40


globals().update(VerifyFlags.__members__)


class _SSLMethod(enum.IntEnum):
    PROTOCOL_SSLv23 = 2
    PROTOCOL_TLS_CLIENT = 16
    PROTOCOL_TLS_SERVER = 17
    PROTOCOL_TLSv1 = 3
    PROTOCOL_TLSv1_1 = 4
    PROTOCOL_TLSv1_2 = 5


PROTOCOL_TLS = _SSLMethod.PROTOCOL_SSLv23
globals().update(_SSLMethod.__members__)


class Options(enum.IntFlag):
    OP_ALL = 0x80000BFF
    OP_NO_SSLv2 = 0
    OP_NO_SSLv3 = 0x02000000
    OP_NO_TLSv1 = 0x04000000
    OP_NO_TLSv1_1 = 0x10000000
    OP_NO_TLSv1_2 = 0x08000000
    OP_NO_TLSv1_3 = 0x20000000
    OP_NO_COMPRESSION = 0x20000
    OP_NO_TICKET = 0x4000
    OP_NO_RENEGOTIATION = 0x40000000
    OP_CIPHER_SERVER_PREFERENCE = 0x400000
    OP_SINGLE_DH_USE = 0
    OP_SINGLE_ECDH_USE = 0
    OP_ENABLE_MIDDLEBOX_COMPAT = 0x100000
    OP_IGNORE_UNEXPECTED_EOF = 0x80


globals().update(Options.__members__)


class TLSVersion(enum.IntEnum):
    MINIMUM_SUPPORTED = -2
    SSLv3 = 0x300
    TLSv1 = 0x301
    TLSv1_1 = 0x302
    TLSv1_2 = 0x303
    TLSv1_3 = 0x304
    MAXIMUM_SUPPORTED = -1


class Purpose(enum.Enum):
    SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
    CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"


class SSLSession:
    pass


class MemoryBIO:
    def __init__(self):
        raise SSLError(UNAVAILABLE)


class SSLObject:
    """Never instantiated here; exists for isinstance checks."""

    def __init__(self, *args, **kwargs):
        raise SSLError(UNAVAILABLE)


class SSLSocket(_socket.socket):
    """Never instantiated here; exists for isinstance checks."""

    def __init__(self, *args, **kwargs):
        raise SSLError(UNAVAILABLE)


class SSLContext:
    """Holds settings like the real one; wrapping a socket raises SSLError."""

    sslsocket_class = SSLSocket
    sslobject_class = SSLObject

    def __init__(self, protocol=None, *args, **kwargs):
        self.protocol = PROTOCOL_TLS if protocol is None else protocol
        self.verify_mode = CERT_REQUIRED if self.protocol == PROTOCOL_TLS_CLIENT else CERT_NONE
        self.check_hostname = self.protocol == PROTOCOL_TLS_CLIENT
        self.options = OP_ALL
        self.verify_flags = VERIFY_DEFAULT
        self.minimum_version = TLSVersion.MINIMUM_SUPPORTED
        self.maximum_version = TLSVersion.MAXIMUM_SUPPORTED
        self.post_handshake_auth = False
        self.keylog_filename = None

    def load_default_certs(self, purpose=Purpose.SERVER_AUTH):
        pass

    def set_default_verify_paths(self):
        pass

    def load_verify_locations(self, cafile=None, capath=None, cadata=None):
        pass

    def load_cert_chain(self, certfile, keyfile=None, password=None):
        pass

    def set_ciphers(self, ciphers):
        pass

    def set_alpn_protocols(self, protocols):
        pass

    def get_ca_certs(self, binary_form=False):
        return []

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):
        peer = f" to {server_hostname}" if server_hostname else ""
        raise SSLError(f"cannot start TLS{peer}: {UNAVAILABLE}")

    def wrap_bio(self, *args, server_hostname=None, **kwargs):
        peer = f" to {server_hostname}" if server_hostname else ""
        raise SSLError(f"cannot start TLS{peer}: {UNAVAILABLE}")


def create_default_context(purpose=Purpose.SERVER_AUTH, *, cafile=None, capath=None, cadata=None):
    return SSLContext(PROTOCOL_TLS_CLIENT if purpose == Purpose.SERVER_AUTH else PROTOCOL_TLS_SERVER)


_create_default_https_context = create_default_context
_create_unverified_context = create_default_context


def wrap_socket(sock, *args, server_hostname=None, **kwargs):
    return SSLContext().wrap_socket(sock, server_hostname=server_hostname)


def match_hostname(cert, hostname):
    raise CertificateError(UNAVAILABLE)


def get_default_verify_paths():
    return None


def cert_time_to_seconds(cert_time):
    import calendar
    import time

    return calendar.timegm(time.strptime(cert_time, "%b %d %H:%M:%S %Y GMT"))


def DER_cert_to_PEM_cert(der_cert_bytes):
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.standard_b64encode(der_cert_bytes).decode("ascii"), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def PEM_cert_to_DER_cert(pem_cert_string):
    import base64

    body = pem_cert_string.strip().split("-----")[2]
    return base64.decodebytes(body.encode("ascii"))


def RAND_bytes(n):
    import os

    return os.urandom(n)


def RAND_status():
    return True
