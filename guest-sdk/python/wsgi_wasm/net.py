"""Clear errors for network use the operator did not grant.

The host lets an app connect only to the destinations given with
`--allow-connect HOST:PORT`, and look up only those names. Underneath, a refused
connect is a bare EACCES and a refused lookup a bare EAI_FAIL; these wrappers add
what was refused and which option would allow it, so the traceback in the log says
what to do. Granted use goes through unchanged.
"""

import errno
import socket

HINT = "wsgi-wasm: not granted to this app; the server must allow it with"


def _options(host, port):
    where = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return f"--allow-http https://{where} (or http://) for HTTP(S), or --allow-connect {where} for other TCP"


def _show(address):
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return repr(address)


def _building():
    from . import preload

    return preload.at_build_time


# wasi-libc asks the host for its network handle at the first bind, connect or name
# lookup and keeps it for the life of the process: one asked for while the
# component is being built would be a handle of the build's host, invalid (a trap)
# when served. urllib3 probes IPv6 support at import time with a bind. So network
# use at build time fails here, as it would without a network, before libc is asked.
BUILD_TIME = "wsgi-wasm: no network while the component is being built"


def install():
    if getattr(socket, "_wsgi_wasm_net", False):
        return
    socket._wsgi_wasm_net = True
    getaddrinfo = socket.getaddrinfo
    connect = socket.socket.connect

    bind = socket.socket.bind

    def checked_bind(self, address):
        if _building():
            raise OSError(errno.ENETUNREACH, BUILD_TIME)
        return bind(self, address)

    def checked_getaddrinfo(host, port, *args, **kwargs):
        if _building():
            raise socket.gaierror(getattr(socket, "EAI_FAIL", -4), BUILD_TIME)
        try:
            return getaddrinfo(host, port, *args, **kwargs)
        except socket.gaierror as e:
            if host is None:
                raise
            name = host.decode("idna") if isinstance(host, bytes) else str(host)
            raise socket.gaierror(
                e.errno, f"cannot resolve {name!r}: {HINT} {_options(name, port or 'PORT')}"
            ) from None

    def checked_connect(self, address):
        if _building():
            raise OSError(errno.ENETUNREACH, BUILD_TIME)
        try:
            return connect(self, address)
        except PermissionError as e:
            where = _show(address)
            if isinstance(address, tuple) and len(address) >= 2:
                options = _options(address[0], address[1])
            else:
                options = f"--allow-connect {where}"
            raise PermissionError(e.errno, f"connection to {where} refused: {HINT} {options}") from None

    checked_getaddrinfo.__doc__ = getaddrinfo.__doc__
    checked_connect.__doc__ = connect.__doc__
    checked_bind.__doc__ = bind.__doc__
    socket.socket.bind = checked_bind
    socket.getaddrinfo = checked_getaddrinfo
    socket.socket.connect = checked_connect
