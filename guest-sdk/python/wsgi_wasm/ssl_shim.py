"""An `ssl` module for a CPython built without OpenSSL.

The sandbox's CPython (3.14 for WASI) has no `_ssl`, so the standard `ssl` module
cannot be imported, and many packages import it at module load without ever opening
a TLS connection: scramp (pg8000's SCRAM authentication) does
`from ssl import SSLObject, SSLSocket` for channel binding, PyJWT imports
SSLContext, HTTP clients import it to offer TLS. This module stands in for it: it
imports cleanly and offers the names packages touch at import time (the classes,
`create_default_context`, the constants and exceptions), so `isinstance` checks and
option parsing work.

TLS itself is done by the host (the `tls` interface in wsgi.wit), for origins the
operator granted with `--allow-http https://HOST[:PORT]`: `SSLContext.wrap_socket`
returns an `SSLSocket` whose reads and writes go through the host's verified
connection to the same HOST:PORT, so http.client, urllib.request, urllib3 and
requests work unchanged. The host verifies the certificate for the server name
against the system's roots plus `--ca-file`; the app's own CA files and
verify_mode are not consulted (the sandbox cannot weaken verification). An
ungranted origin raises PermissionError naming `--allow-http`; a certificate the
host does not trust raises SSLCertVerificationError. Server-side TLS, client
certificates and memory BIOs raise SSLError.

Installed as `sys.modules["ssl"]` by `wsgi_wasm.preload` only when the real module
is missing.
"""

import enum
import socket as _socket

HAS_SNI = True
HAS_ALPN = False
HAS_NPN = False
HAS_ECDH = False
HAS_TLSv1 = HAS_TLSv1_1 = HAS_TLSv1_2 = HAS_TLSv1_3 = False
HAS_SSLv2 = HAS_SSLv3 = False
# The host (rustls) matches names against subjectAltName only.
HAS_NEVER_CHECK_COMMON_NAME = True
CHANNEL_BINDING_TYPES = []
OPENSSL_VERSION = "none (wsgi-wasm sandbox: TLS by the host, rustls)"
OPENSSL_VERSION_INFO = (0, 0, 0, 0, 0)
OPENSSL_VERSION_NUMBER = 0

UNAVAILABLE = (
    "TLS is not available inside the wsgi-wasm sandbox: its CPython has no OpenSSL; "
    "the host makes client TLS connections for origins granted with --allow-http https://HOST[:PORT]"
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


try:
    # Imported now, at build time: a module first imported while serving is not
    # in the component's snapshot.
    from wit_world.imports import tls as _tls_import
except ImportError:  # imported outside a component (tests of the SDK itself)
    _tls_import = None


def _tls():
    if _tls_import is None:
        raise SSLError(UNAVAILABLE)
    return _tls_import


def _tls_error(message):
    """The host's error text as the exception Python's ssl module would raise."""
    import errno

    if message.startswith("not granted"):
        return PermissionError(errno.EACCES, f"wsgi-wasm: {message}")
    if message.startswith("certificate verify failed"):
        error = SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
        error.verify_message = message
        return error
    if message.startswith("timed out"):
        return TimeoutError(message)
    return SSLError(message)


# Open SSLSockets: the host closes their connections when the request ends, and
# end_request() makes them look closed to connection pools.
_open = None


class SSLSocket(_socket.socket):
    """A client TLS connection made by the host, returned by SSLContext.wrap_socket.

    It takes over the descriptor of the TCP socket it wrapped (so fileno() and
    settimeout() work as for any socket); the bytes go through the host's
    connection to the same HOST:PORT, which the host opened, verified and encrypts."""

    def __init__(self, *args, **kwargs):
        raise TypeError(
            f"{self.__class__.__name__} does not have a public constructor. "
            f"Instances are returned by SSLContext.wrap_socket()."
        )

    @classmethod
    def _create(cls, sock, context, server_hostname):
        from componentize_py_types import Err

        if sock.type != _socket.SOCK_STREAM:
            raise NotImplementedError("only stream sockets are supported")
        peer_host, port = sock.getpeername()[:2]
        host = server_hostname or peer_host
        if isinstance(host, bytes):
            host = host.decode("idna")
        # The TCP connection the client opened carries nothing: the host opens
        # its own. It is shut down first, so a server that handshakes as it
        # accepts is not left waiting on it; its descriptor stays as this
        # socket's fileno(), where a poll reads EOF, so pools never reuse one.
        try:
            sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            handle = _tls().connect(host, port)
        except Err as e:
            raise _tls_error(e.value) from None
        kwargs = dict(family=sock.family, type=sock.type, proto=sock.proto, fileno=sock.fileno())
        self = cls.__new__(cls, **kwargs)
        super(SSLSocket, self).__init__(**kwargs)
        self.settimeout(sock.gettimeout())
        sock.detach()
        self._handle = handle
        self._context = context
        self.server_hostname = server_hostname
        self.server_side = False
        self._verified_name = host
        global _open
        if _open is None:
            import weakref

            _open = weakref.WeakSet()
        _open.add(self)
        return self

    @property
    def context(self):
        return self._context

    def _host_read(self, size):
        from componentize_py_types import Err

        if self._handle is None:
            return b""
        try:
            return bytes(_tls().read(self._handle, max(1, min(size, 65536))))
        except Err as e:
            raise _tls_error(e.value) from None

    def read(self, size=1024, buffer=None):
        if buffer is None:
            return self._host_read(size)
        return self.recv_into(buffer, size)

    def recv(self, buflen=1024, flags=0):
        if flags:
            raise ValueError("non-zero flags not allowed in calls to recv() on SSLSocket")
        return self._host_read(buflen)

    def recv_into(self, buffer, nbytes=None, flags=0):
        if flags:
            raise ValueError("non-zero flags not allowed in calls to recv_into() on SSLSocket")
        view = memoryview(buffer).cast("B")
        nbytes = nbytes or view.nbytes
        data = self._host_read(nbytes)
        view[: len(data)] = data
        return len(data)

    def write(self, data):
        return self.send(data)

    def send(self, data, flags=0):
        from componentize_py_types import Err

        if flags:
            raise ValueError("non-zero flags not allowed in calls to send() on SSLSocket")
        if self._handle is None:
            raise SSLEOFError("the TLS connection was closed when the request that opened it ended")
        data = bytes(memoryview(data).cast("B")[:_WRITE_PIECE])
        try:
            _tls().write(self._handle, data.decode("latin-1"))
        except Err as e:
            raise _tls_error(e.value) from None
        return len(data)

    def sendall(self, data, flags=0):
        view = memoryview(data).cast("B")
        while view:
            sent = self.send(view, flags)
            view = view[sent:]

    def recvfrom(self, *args, **kwargs):
        raise ValueError("recvfrom not allowed on instances of SSLSocket")

    def sendto(self, *args, **kwargs):
        raise ValueError("sendto not allowed on instances of SSLSocket")

    def pending(self):
        return 0

    def do_handshake(self, block=False):
        pass

    def getpeercert(self, binary_form=False):
        """The host verified the server's certificate for this name; the
        certificate itself stays in the host, so this reports the verified name."""
        if binary_form:
            return None
        import ipaddress

        try:
            ipaddress.ip_address(self._verified_name)
            alt = (("IP Address", self._verified_name),)
        except ValueError:
            alt = (("DNS", self._verified_name),)
        return {"subject": ((("commonName", self._verified_name),),), "subjectAltName": alt}

    def cipher(self):
        return None

    def shared_ciphers(self):
        return None

    def compression(self):
        return None

    def version(self):
        return None

    def selected_alpn_protocol(self):
        return None

    def selected_npn_protocol(self):
        return None

    def get_channel_binding(self, cb_type="tls-unique"):
        return None

    def unwrap(self):
        raise SSLError("unwrap() is not supported: the host holds the TLS connection")

    def _end(self):
        if self._handle is not None:
            _tls().close(self._handle)
            self._handle = None

    def _real_close(self):
        self._end()
        super()._real_close()


# Most bytes per host write (wsgi.wit, tls.write).
_WRITE_PIECE = 256 * 1024


def end_request():
    """The host has closed every TLS connection of the request that ended: a
    socket kept past it reads EOF (and a pool sees it dropped, as above)."""
    if not _open:
        return
    for sock in list(_open):
        sock._handle = None
    _open.clear()


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

    def wrap_socket(
        self,
        sock,
        server_side=False,
        do_handshake_on_connect=True,
        suppress_ragged_eofs=True,
        server_hostname=None,
        session=None,
    ):
        if server_side:
            raise SSLError(f"server-side TLS: {UNAVAILABLE}")
        if sock is None:
            peer = f" to {server_hostname}" if server_hostname else ""
            raise SSLError(f"cannot start TLS{peer}: no connected socket to wrap")
        return self.sslsocket_class._create(sock, self, server_hostname)

    def wrap_bio(self, *args, server_hostname=None, **kwargs):
        peer = f" to {server_hostname}" if server_hostname else ""
        raise SSLError(f"cannot start TLS{peer}: {UNAVAILABLE}")


def create_default_context(purpose=Purpose.SERVER_AUTH, *, cafile=None, capath=None, cadata=None):
    return SSLContext(PROTOCOL_TLS_CLIENT if purpose == Purpose.SERVER_AUTH else PROTOCOL_TLS_SERVER)


_create_default_https_context = create_default_context
_create_unverified_context = create_default_context


def wrap_socket(sock, *args, server_hostname=None, **kwargs):
    return SSLContext(PROTOCOL_TLS_CLIENT).wrap_socket(sock, server_hostname=server_hostname)


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
