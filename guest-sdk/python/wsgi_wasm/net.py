"""Clear errors for network use the operator did not grant.

The host lets an app connect only to the destinations given with
`--allow-connect HOST:PORT`, and look up only those names. Underneath, a refused
connect is a bare EACCES and a refused lookup a bare EAI_FAIL; these wrappers add
what was refused and which option would allow it, so the traceback in the log says
what to do. Granted use goes through unchanged.
"""

import socket

HINT = "wsgi-wasm: not granted to this app; the server must allow it with --allow-connect"


def _show(address):
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return repr(address)


def install():
    if getattr(socket, "_wsgi_wasm_net", False):
        return
    socket._wsgi_wasm_net = True
    getaddrinfo = socket.getaddrinfo
    connect = socket.socket.connect

    def checked_getaddrinfo(host, port, *args, **kwargs):
        try:
            return getaddrinfo(host, port, *args, **kwargs)
        except socket.gaierror as e:
            if host is None:
                raise
            name = host.decode("idna") if isinstance(host, bytes) else str(host)
            raise socket.gaierror(
                e.errno, f"cannot resolve {name!r}: {HINT} {name}:{port or 'PORT'}"
            ) from None

    def checked_connect(self, address):
        try:
            return connect(self, address)
        except PermissionError as e:
            where = _show(address)
            raise PermissionError(e.errno, f"connection to {where} refused: {HINT} {where}") from None

    checked_getaddrinfo.__doc__ = getaddrinfo.__doc__
    checked_connect.__doc__ = connect.__doc__
    socket.getaddrinfo = checked_getaddrinfo
    socket.socket.connect = checked_connect
