"""SQLite database files come into existence complete.

SQLite in the sandbox locks with lock directories (WASI has no file locks; see the
README's security model). Measured here: when several instances open a database
file that does not exist yet at the same moment, one of them can find the file
empty, cache it as empty, and later fail with "file is not a database" although
the file is fine; once the file exists, concurrent writers are safe. So a new
database is made in a private file beside the target and linked into place, which
is atomic: every instance sees either no file or a complete one.
"""

import os
import sqlite3


def _needs_creating(database, kwargs):
    if kwargs.get("uri") or not isinstance(database, (str, bytes, os.PathLike)):
        return False
    path = os.fsdecode(database)
    return path not in ("", ":memory:") and not os.path.exists(path)


def _create_complete(path, connect):
    tmp = f"{path}.{os.urandom(6).hex()}.wsgi-wasm-new"
    try:
        db = connect(tmp)
        # Writing and dropping a table writes page 1, so the file is a database.
        db.execute("CREATE TABLE wsgi_wasm_init (x)")
        db.execute("DROP TABLE wsgi_wasm_init")
        db.commit()
        db.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another instance was first: use its file
    except OSError:
        pass  # let sqlite3 create it the ordinary way (e.g. no hard links here)
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def install():
    connect = sqlite3.connect
    if getattr(connect, "_wsgi_wasm", False):
        return

    def connect_to_complete_file(database, *args, **kwargs):
        if _needs_creating(database, kwargs):
            _create_complete(os.fsdecode(database), connect)
        return connect(database, *args, **kwargs)

    connect_to_complete_file.__doc__ = connect.__doc__
    connect_to_complete_file._wsgi_wasm = True
    sqlite3.connect = connect_to_complete_file
