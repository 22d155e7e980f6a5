"""The app's data files (templates, static files, package data), read-only, from memory.

The server grants a guest no filesystem, and componentize-py keeps only what is in
the interpreter's memory when it snapshots it: the directories the build mounts
(/0, /1, ...) are gone at run time. So `wsgi-wasm build` calls `snapshot()` at the
end of the build: it reads the data files under the app's directories (and under
the packages it imported from its dependency directories) into memory, and makes
open(), os.stat(), os.listdir(), os.scandir() and loaders' get_data() answer for
those paths from memory. Paths stay the ones the app saw at build time
(`__file__`-relative paths like Flask's templates/ just work).

The same module gives `tempfile` an in-memory fallback: with no filesystem there is
no temporary directory, and frameworks spool large uploads to temporary files.
"""

import builtins
import errno
import io
import json
import os
import posixpath
import stat as statmod
import sys
import tempfile
import time

# Code is in the snapshot already (as imported modules), and native code cannot
# run in the sandbox: none of these is worth carrying as data.
CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyi", ".so", ".pyd", ".dll", ".dylib", ".c", ".h", ".pyx", ".pxd")
# gettext sources: the compiled .mo files are what gettext reads.
SOURCE_ONLY_SUFFIXES = (".po",)
# Build outputs in an app directory (an earlier `wsgi-wasm build -o app.wasm`).
SKIP_SUFFIXES = (".wasm", ".cwasm")
SKIP_DIRS = {"__pycache__", "node_modules"}
# In a *.dist-info directory only what importlib.metadata reads at run time.
DIST_INFO_FILES = {"METADATA", "entry_points.txt", "top_level.txt"}
# A single file larger than this is left out, with a warning in the build report:
# it would sit in every instance's memory image.
MAX_FILE_BYTES = 16 * 1024 * 1024
# All bundled files together: past this, the build was most likely pointed at the
# wrong directory (a repository root with build outputs, a home directory).
MAX_TOTAL_BYTES = 128 * 1024 * 1024


class TooMuchData(Exception):
    pass

_files = {}  # absolute path -> bytes
_dirs = {}  # absolute path -> sorted child names
_mtimes = {}  # absolute path -> build-time mtime (seconds)
_installed = False


def _skip_dir(path, name):
    if name.startswith(".") or name in SKIP_DIRS:
        return True
    # A virtualenv inside the app directory is an environment, not app data.
    return os.path.exists(os.path.join(path, "pyvenv.cfg"))


def _wanted_file(name, in_dist_info, keep_source):
    if in_dist_info:
        return name in DIST_INFO_FILES
    if name.endswith(".py"):
        # The app's own source, for source lines in tracebacks (linecache).
        return keep_source
    return not name.endswith(CODE_SUFFIXES + SOURCE_ONLY_SUFFIXES + SKIP_SUFFIXES)


def _locale_ok(rel_parts, locales):
    """With --locales, keeps only <...>/locale/<lang>/ trees for those languages."""
    if locales is None:
        return True
    for i, part in enumerate(rel_parts[:-1]):
        if part == "locale" and i + 1 < len(rel_parts) - 1:
            lang = rel_parts[i + 1].replace("-", "_").lower()
            return any(lang == want or lang.startswith(want + "_") for want in locales)
    return True


def _add_dir(path):
    while path not in _dirs:
        _dirs[path] = []
        if path == "/":
            break
        parent, name = posixpath.split(path)
        _add_dir(parent)
        _dirs[parent].append(name)
        path = parent


def _capture_tree(root, report, locales, top_filter=None, keep_source=False, label=None):
    root = posixpath.normpath(root)
    _add_dir(root)
    for dirpath, dirnames, filenames in os.walk(root):
        rel = posixpath.relpath(dirpath, root)
        parts = [] if rel == "." else rel.split("/")
        if not parts:
            dirnames[:] = [d for d in dirnames if top_filter is None or top_filter(d)]
            filenames = [f for f in filenames if top_filter is None or top_filter(f)]
        dirnames[:] = sorted(d for d in dirnames if not _skip_dir(os.path.join(dirpath, d), d))
        in_dist_info = bool(parts) and parts[0].endswith(".dist-info")
        for name in sorted(filenames):
            path = posixpath.join(dirpath, name)
            if not _wanted_file(name, in_dist_info, keep_source) or not _locale_ok(parts + [name], locales):
                continue
            try:
                st = os.stat(path)
                if not statmod.S_ISREG(st.st_mode):
                    continue
                if st.st_size > MAX_FILE_BYTES:
                    report["skipped_large"].append([path, st.st_size])
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                report["unreadable"].append([path, str(e)])
                continue
            report["bytes"] += len(data)
            if report["bytes"] > MAX_TOTAL_BYTES:
                raise TooMuchData(
                    f"more than {MAX_TOTAL_BYTES >> 20} MiB of data files under {label or root} "
                    f"(reached at {posixpath.relpath(path, root)}); "
                    f"is it the app's directory? Run the build from the app's directory, or pass "
                    f"a smaller one with -p (the current directory is always bundled)"
                )
            _files[path] = data
            _mtimes[path] = st.st_mtime
            _add_dir(dirpath)
            _dirs[dirpath].append(name)
            report["files"] += 1


def _imported_top_level_names():
    names = set()
    for name, module in list(sys.modules.items()):
        if module is not None:
            names.add(name.partition(".")[0])
    return names


def snapshot(app_dirs=(), dep_dirs=(), locales=None, report_path=None, labels=None):
    """Reads data files into memory and installs the read-only file layer.

    app_dirs: every data file is kept (templates/ and static/ next to the code).
    labels: mount -> host directory, for messages.
    dep_dirs: only files inside top-level packages the app imported (a dependency
    that was never imported has no code in the component, so its data would be dead
    weight), and every distribution's metadata (importlib.metadata.version() works).
    """
    report = {"files": 0, "bytes": 0, "skipped_large": [], "unreadable": []}
    if locales is not None:
        locales = [lang.replace("-", "_").lower() for lang in locales]
    for root in app_dirs:
        _capture_tree(root, report, locales, keep_source=True, label=(labels or {}).get(root))
    imported = _imported_top_level_names()

    def dep_filter(entry):
        if entry.endswith(".dist-info"):
            return True
        return entry.partition(".")[0] in imported

    for root in dep_dirs:
        _capture_tree(root, report, locales, dep_filter, label=(labels or {}).get(root))
    for children in _dirs.values():
        children.sort()
    install()
    if report_path:
        with open(report_path, "w") as f:
            json.dump(report, f)
    return report


# --- the read-only layer -----------------------------------------------------

_real = {}


def _key(path):
    """The snapshot key for a path argument, or None for file descriptors and the like."""
    if isinstance(path, int):
        return None
    try:
        path = os.fspath(path)
    except TypeError:
        return None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path.startswith("/"):
        try:
            path = posixpath.join(os.getcwd(), path)
        except OSError:
            path = "/" + path
    return posixpath.normpath(path)


def _stat_result(key):
    mtime = _mtimes.get(key, _BUILD_TIME)
    if key in _files:
        mode, size, nlink = statmod.S_IFREG | 0o444, len(_files[key]), 1
    else:
        mode, size, nlink = statmod.S_IFDIR | 0o555, 0, 2
    ino = hash(key) & 0x7FFFFFFF
    whole = int(mtime)
    ns = int(mtime * 1_000_000_000)
    return os.stat_result((mode, ino, 0, nlink, 0, 0, size, whole, whole, whole, mtime, mtime, mtime, ns, ns, ns))


def _read_only(key):
    return PermissionError(
        errno.EROFS, "Read-only file system (the app's files are bundled read-only; the sandbox has no writable files)", key
    )


class SnapshotFile(io.BytesIO):
    """A bundled file opened in binary mode: a BytesIO with a name, like a real file's."""

    def __init__(self, data, name):
        super().__init__(data)
        self.name = name
        self.mode = "rb"


def _open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True, opener=None):
    key = _key(file) if opener is None else None
    if key is not None and (key in _files or key in _dirs):
        if key in _dirs:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", key)
        if any(c in mode for c in "wax+"):
            raise _read_only(key)
        raw = SnapshotFile(_files[key], os.fspath(file) if not isinstance(file, bytes) else os.fsdecode(file))
        if "b" in mode:
            return raw
        if encoding in (None, "locale"):
            encoding = "utf-8"
        text = io.TextIOWrapper(raw, encoding=encoding, errors=errors, newline=newline)
        text.mode = mode
        return text
    if key is not None and any(c in mode for c in "wax+") and posixpath.dirname(key) in _dirs:
        # A new file next to bundled ones (a log, an upload, a SQLite file): say why
        # it cannot be, rather than "No such file or directory".
        raise _read_only(key)
    return _real["open"](file, mode, buffering, encoding, errors, newline, closefd, opener)


def _stat(path, *, dir_fd=None, follow_symlinks=True):
    key = _key(path) if dir_fd is None else None
    if key is not None and (key in _files or key in _dirs):
        return _stat_result(key)
    return _real["stat"](path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)


def _lstat(path, *, dir_fd=None):
    key = _key(path) if dir_fd is None else None
    if key is not None and (key in _files or key in _dirs):
        return _stat_result(key)
    return _real["lstat"](path, dir_fd=dir_fd)


def _listdir(path="."):
    key = _key(path)
    if key is not None and key in _dirs:
        names = list(_dirs[key])
        return [os.fsencode(n) for n in names] if isinstance(path, bytes) else names
    return _real["listdir"](path)


def _access(path, mode, *, dir_fd=None, effective_ids=False, follow_symlinks=True):
    key = _key(path) if dir_fd is None else None
    if key is not None and (key in _files or key in _dirs):
        return not (mode & os.W_OK)
    return _real["access"](path, mode, dir_fd=dir_fd, effective_ids=effective_ids, follow_symlinks=follow_symlinks)


class _DirEntry:
    __slots__ = ("name", "path", "_key")

    def __init__(self, directory, name, key):
        self.name = name
        self.path = posixpath.join(directory, name)
        self._key = key

    def is_dir(self, *, follow_symlinks=True):
        return self._key in _dirs

    def is_file(self, *, follow_symlinks=True):
        return self._key in _files

    def is_symlink(self):
        return False

    def is_junction(self):
        return False

    def stat(self, *, follow_symlinks=True):
        return _stat_result(self._key)

    def inode(self):
        return _stat_result(self._key).st_ino

    def __fspath__(self):
        return self.path

    def __repr__(self):
        return f"<DirEntry {self.name!r}>"


class _ScandirIterator:
    def __init__(self, entries):
        self._it = iter(entries)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def close(self):
        self._it = iter(())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _scandir(path="."):
    key = _key(path)
    if key is not None and key in _dirs:
        directory = os.fspath(path) if path is not None else "."
        return _ScandirIterator(
            [_DirEntry(directory, name, posixpath.join(key, name)) for name in _dirs[key]]
        )
    return _real["scandir"](path)


def _loader_get_data(self, path):
    key = _key(path)
    if key is not None and key in _files:
        return _files[key]
    return _real["get_data"](self, path)


def _memory_temporary_file(mode="w+b", buffering=-1, encoding=None, newline=None, suffix=None,
                           prefix=None, dir=None, delete=True, *, errors=None, delete_on_close=True):
    """tempfile.TemporaryFile / NamedTemporaryFile when there is no filesystem: in
    memory (it counts against the instance's --max-memory)."""
    name = posixpath.join(dir or "/tmp", (prefix or "tmp") + format(id(object()), "x") + (suffix or ""))
    raw = SnapshotFile(b"", name)
    raw.mode = mode
    if "b" in mode:
        return raw
    return io.TextIOWrapper(raw, encoding=encoding or "utf-8", errors=errors, newline=newline)


def _with_memory_fallback(real):
    def make(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except OSError:
            # FileNotFoundError "No usable temporary directory", or EROFS/EACCES in
            # the sandbox: fall back to memory rather than fail the request.
            return _memory_temporary_file(*args, **kwargs)

    make.__name__ = real.__name__
    make.__doc__ = real.__doc__
    return make


_BUILD_TIME = time.time()


def install():
    """Routes file reads of bundled paths to memory (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    import importlib._bootstrap_external as bootstrap_external

    _real.update(
        open=io.open,
        stat=os.stat,
        lstat=os.lstat,
        listdir=os.listdir,
        scandir=os.scandir,
        access=os.access,
        get_data=bootstrap_external.FileLoader.get_data,
    )
    builtins.open = io.open = _open
    os.stat = _stat
    os.lstat = _lstat
    os.listdir = _listdir
    os.scandir = _scandir
    os.access = _access
    bootstrap_external.FileLoader.get_data = _loader_get_data
    # tokenize (hence linecache, hence tracebacks) keeps its own reference to open().
    import tokenize

    tokenize._builtin_open = _open
    tempfile.TemporaryFile = _with_memory_fallback(tempfile.TemporaryFile)
    tempfile.NamedTemporaryFile = _with_memory_fallback(tempfile.NamedTemporaryFile)


def bundled_paths():
    """The bundled files' paths (for tests and diagnostics)."""
    return sorted(_files)
