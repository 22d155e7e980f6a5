"""The file-like objects PEP 3333 puts in the environ: wsgi.input and wsgi.errors."""

# Bytes asked of the host per read when the app reads "everything" or a line.
# 64 KiB matches the host's body frame size, so one host call usually moves one frame.
READ_CHUNK = 64 * 1024


class InputStream:
    """wsgi.input over the host's `read` import; buffered so readline() is cheap."""

    __slots__ = ("_read", "_buffer", "_eof")

    def __init__(self, read):
        self._read = read
        self._buffer = b""
        self._eof = False

    def _fill(self, want):
        """Pulls from the host until `want` bytes are buffered or the body ends."""
        while not self._eof and len(self._buffer) < want:
            chunk = self._read(max(want - len(self._buffer), READ_CHUNK))
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True

    def _take(self, n):
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def read(self, size=-1):
        if size is None or size < 0:
            parts = [self._buffer]
            self._buffer = b""
            while not self._eof:
                chunk = self._read(READ_CHUNK)
                if chunk:
                    parts.append(chunk)
                else:
                    self._eof = True
            return b"".join(parts)
        self._fill(size)
        return self._take(size)

    def readline(self, size=-1):
        limit = size if size is not None and size >= 0 else None
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                n = end + 1
                break
            if limit is not None and len(self._buffer) >= limit:
                n = limit
                break
            if self._eof:
                n = len(self._buffer)
                break
            start = len(self._buffer)
            self._fill(len(self._buffer) + 1)
        if limit is not None:
            n = min(n, limit)
        return self._take(n)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self):
        # PEP 3333: the application must not close wsgi.input; tolerate it anyway.
        pass


class ErrorStream:
    """wsgi.errors: text written here becomes lines in the server log, tagged by app."""

    __slots__ = ("_log", "pending")

    def __init__(self, log):
        self._log = log
        self.pending = ""  # the last line's start, until its newline or flush()

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"wsgi.errors.write() takes str, not {type(s).__name__}")
        text = self.pending + s
        *lines, self.pending = text.split("\n")
        for line in lines:
            self._log(line)
        return len(s)

    def writelines(self, seq):
        for s in seq:
            self.write(s)

    def flush(self):
        if self.pending:
            self._log(self.pending)
            self.pending = ""


# Bytes read from a file per block by wsgi.file_wrapper: the adapter's piece size
# (one host write per block), so a file of any size holds at most one block (plus
# its latin-1 string) in the guest's memory at a time, while each host call still
# moves enough to keep its fixed cost negligible.
FILE_BLOCK = 256 * 1024


class FileWrapper:
    """wsgi.file_wrapper (PEP 3333's optional platform file handling): iterates a
    file-like object in FILE_BLOCK blocks and closes it when the response ends.
    The adapter recognises it: a regular file is sent with a Content-Length, by
    the host straight from the disk when it is under a granted directory."""

    def __init__(self, filelike, blksize=FILE_BLOCK):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def location(self):
        """(absolute path, position) of the file as the guest sees it, for the
        host to send it from the disk; None if it has no path (an in-memory file,
        a file opened from a descriptor)."""
        import os

        name = getattr(self.filelike, "name", None)
        if type(name) is not str:
            return None
        try:
            return os.path.abspath(name), self.filelike.tell()
        except (AttributeError, OSError, ValueError):
            return None

    def remaining(self):
        """Bytes left in a regular file from its position, or None if unknown."""
        import os
        import stat

        try:
            info = os.fstat(self.filelike.fileno())
            if not stat.S_ISREG(info.st_mode):
                return None
            return max(0, info.st_size - self.filelike.tell())
        except (AttributeError, OSError, ValueError):
            return None
