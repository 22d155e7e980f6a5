"""Guest side of wsgi-wasm: runs a PEP 3333 application inside a WebAssembly component.

`wsgi-wasm build MODULE:CALLABLE` generates an entry module that does

    from wsgi_wasm import export
    WitWorld = export(application)

and compiles it with componentize-py against guest-sdk/wit. Nothing here is
needed at run time outside the component.
"""

from .adapter import export

__all__ = ["export"]
