"""The servers under test: how each is started (pinned to one CPU), how the harness
learns it is ready, its memory, and how it is stopped.

Every server runs one worker process, like wsgi-wasm's single process:
- wsgi-wasm: `serve APP --listen 127.0.0.1:0 --no-access-log`, pooled isolation unless
  a run says otherwise, instances at its default (2 per CPU it may run on: 2 here);
- granian: `--interface wsgi --workers 1`, its defaults otherwise (1 runtime thread,
  access log off);
- gunicorn: `-k gthread --workers 1 --threads 4` (gunicorn's default is 1 thread; 4
  lets keep-alive connections be served while one is busy, as waitress's 4 do);
- waitress: `waitress-serve` with its defaults (4 threads, 100 connections, which
  covers the 64 wrk opens);
- wasmtime serve: the wasi:http twin of the Rust hello, `-S cli`, defaults otherwise
  (a fresh instance per request is how it works).

Each gets the same small environment (config.SERVER_ENV), not the harness's.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import LOGS, REPO, SERVER_CPU, SERVER_ENV, SERVE_CACHE, START_TIMEOUT, STOP_TIMEOUT, VENV

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVING_LINE = re.compile(r"Serving HTTP on http://([^/\s]+)/")


@dataclass
class ServerSpec:
    """A server+app+configuration combination, everything needed to start it."""

    server: str  # "wsgi-wasm", "granian", ... (the row label)
    argv: list
    cwd: Path = REPO
    # wsgi-wasm (and wasmtime serve) print the address; the others are given a port
    # picked in advance and polled.
    port_from_stderr: bool = False
    env: dict = field(default_factory=dict)
    note: str = ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wsgi_wasm(binary, component, isolation="pooled", cache_dir=SERVE_CACHE, label=None):
    argv = [str(binary), "serve", str(component), "--listen", "127.0.0.1:0", "--no-access-log",
            "--cache-dir", str(cache_dir)]
    if isolation != "pooled":
        argv += ["--isolation", isolation]
    return ServerSpec(label or ("wsgi-wasm" if isolation == "pooled" else f"wsgi-wasm ({isolation})"),
                      argv, port_from_stderr=True)


def _venv_bin(name):
    return str(VENV / "bin" / name)


def granian(app_dir, target, port):
    return ServerSpec("granian", [_venv_bin("granian"), "--interface", "wsgi", "--workers", "1",
                                  "--host", "127.0.0.1", "--port", str(port), target], cwd=app_dir)


def gunicorn(app_dir, target, port):
    return ServerSpec("gunicorn", [_venv_bin("gunicorn"), "-k", "gthread", "--workers", "1", "--threads", "4",
                                   "--bind", f"127.0.0.1:{port}", "--log-level", "warning", target], cwd=app_dir)


def waitress(app_dir, target, port):
    return ServerSpec("waitress", [_venv_bin("waitress-serve"), "--listen", f"127.0.0.1:{port}", target], cwd=app_dir)


def wasmtime_serve(wasmtime, component):
    # `-S cli`: Rust's std for wasm32-wasip2 imports wasi:cli (environment, exit...),
    # which the bare proxy world of `wasmtime serve` leaves out.
    return ServerSpec("wasmtime serve", [str(wasmtime), "serve", "-S", "cli", "--addr", "127.0.0.1:0", str(component)],
                      port_from_stderr=True)


class ServerError(Exception):
    pass


class Running:
    """A started server: its process (pinned to SERVER_CPU), address and log."""

    def __init__(self, spec, log_name, pin=True):
        self.spec = spec
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{log_name}.log"
        self.port = None
        self._ready = threading.Event()
        argv = list(spec.argv)
        if not spec.port_from_stderr:
            self.port = _port_of(argv)
        if pin:
            argv = [shutil.which("taskset"), "-c", SERVER_CPU] + argv
        env = dict(SERVER_ENV, **spec.env)
        self.started_at = time.perf_counter()
        # A session of its own, so a Ctrl-C at the terminal reaches the harness, which
        # then stops its servers, rather than killing them mid-run.
        self.proc = subprocess.Popen(argv, cwd=spec.cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._log = open(self.log_path, "wb")
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self):
        for line in iter(self.proc.stdout.readline, b""):
            self._log.write(line)
            self._log.flush()
            if self.spec.port_from_stderr and self.port is None:
                match = SERVING_LINE.search(line.decode("latin-1"))
                if match:
                    self.port = int(match.group(1).rsplit(":", 1)[1])
                    self._ready.set()

    def wait_listening(self, timeout=START_TIMEOUT):
        """Returns once the server accepts connections; raises if it exits or times out."""
        deadline = time.monotonic() + timeout
        if self.spec.port_from_stderr:
            while not self._ready.wait(0.005):
                self._check_alive(deadline)
            return
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                self._check_alive(deadline)
                time.sleep(0.002)

    def _check_alive(self, deadline):
        if self.proc.poll() is not None:
            raise ServerError(f"{self.spec.server} exited with status {self.proc.returncode} before listening; "
                              f"the end of {self.log_path}:\n{self.log_tail()}")
        if time.monotonic() > deadline:
            raise ServerError(f"{self.spec.server} did not start listening within {START_TIMEOUT:.0f}s; "
                              f"see {self.log_path}")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    def log_tail(self, lines=15):
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def count_in_log(self, marker):
        """Lines of the server's output so far that contain `marker`."""
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return sum(1 for line in f if marker.encode() in line)

    def rss_kib(self):
        """Resident memory of the server and all its descendants (gunicorn's arbiter +
        worker, granian's main + worker process), in KiB."""
        return sum(_vm_rss(pid) for pid in [self.proc.pid] + descendants(self.proc.pid))

    def cpu_seconds(self):
        """CPU time (user + system) used so far by the server and its descendants."""
        return sum(_cpu_ticks(pid) for pid in [self.proc.pid] + descendants(self.proc.pid)) / CLOCK_TICKS

    def processes(self):
        return 1 + len(descendants(self.proc.pid))

    def stop(self):
        """SIGTERM to the server (each stops its own workers), then SIGKILL to whatever
        of its tree is left after STOP_TIMEOUT. Only processes this harness started."""
        if self.proc.poll() is None:
            tree = descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for pid in tree:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._reader.join(timeout=5)
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _port_of(argv):
    for i, arg in enumerate(argv):
        if arg in ("--port",):
            return int(argv[i + 1])
        if arg in ("--bind", "--listen", "--addr"):
            return int(argv[i + 1].rsplit(":", 1)[1])
    raise ValueError(f"no port in {argv}")


def descendants(root):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The command name may hold spaces and parentheses: split after the last ')'.
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _vm_rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    except (OSError, ValueError, IndexError):
        return 0


def machine_busy_seconds():
    """CPU time all processes have used since boot (every CPU's non-idle time)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
