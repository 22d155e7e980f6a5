"""Stdlib modules WSGI apps and frameworks import lazily, imported here at build time.

componentize-py snapshots the interpreter after the app module is imported and only
bundles modules that were imported by then: a module first imported while serving a
request is not there and fails with ModuleNotFoundError or LookupError. Importing
them here puts them in the snapshot. `wsgi-wasm build --preload MODULE` adds more.
"""

import encodings.ascii  # noqa: F401
import encodings.idna  # noqa: F401  (str.encode("idna"): URL and cookie handling)
import encodings.latin_1  # noqa: F401  (native strings are latin-1)
import encodings.utf_8  # noqa: F401
import io  # noqa: F401
import traceback  # noqa: F401  (the adapter formats app errors with it)
