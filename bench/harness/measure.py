"""One measurement each: a server under load, a server's start to first response, or
the WSGI call in-process."""

import re
import shutil
import statistics
import subprocess
import tempfile
import time

from .config import MAX_BODY_RATIO, QUIET_THRESHOLD, SERVER_CPU, WORK
from .load import LoadError, get, wrk
from .servers import Running, ServerError, machine_busy_seconds

HELLO = b"Hello, world!\n"
STREAM_BYTES = 16 * 64 * 1024

# What a correct response body looks like, per app: every server is checked with one
# request before it is measured, so a fast wrong answer cannot win.
CHECKS = {
    "hello": ("b'Hello, world!\\n'", lambda body: body == HELLO),
    "demo": ("a body starting 'Hello world!'", lambda body: body.startswith(b"Hello world!\n")),
    "flask": ("b'Hello, world!\\n'", lambda body: body == HELLO),
    "stream": (f"{STREAM_BYTES} bytes", lambda body: len(body) == STREAM_BYTES),
    "rust": ("b'Hello, world!\\n'", lambda body: body == HELLO),
}


class CheckError(Exception):
    pass


def check_response(app, status, body):
    want, ok = CHECKS[app]
    if status != 200 or not ok(body):
        raise CheckError(f"GET / answered {status} with {body[:80]!r}{'...' if len(body) > 80 else ''} "
                         f"({len(body)} bytes); expected 200 and {want}")


def load_run(spec, app, duration, warmup, log_name):
    """Starts the server, checks one response, reads its idle memory, then warms it up
    and measures it under wrk. Returns a row: one that could not be measured has `ok`
    false and an `error`; a measured one with something wrong (guest traps, non-2xx
    responses, socket errors) has a `problem`."""
    row = {"app": app, "server": spec.server, "argv": " ".join(spec.argv[1:]), "ok": False}
    try:
        with Running(spec, log_name) as server:
            server.wait_listening()
            status, body, _ = get(server.port)
            check_response(app, status, body)
            row["body_bytes"] = len(body)
            time.sleep(0.2)  # let the first request's work settle before reading memory
            row["rss_idle_kib"] = server.rss_kib()
            row["processes"] = server.processes()
            if warmup:
                wrk(server.url, warmup)
            # What else the machine ran meanwhile (builds, tests...): all CPU time used
            # during the run less the server's and wrk's, in % of one core.
            busy, served, started = machine_busy_seconds(), server.cpu_seconds(), time.monotonic()
            result = wrk(server.url, duration)
            wall = time.monotonic() - started
            busy, served = machine_busy_seconds() - busy, server.cpu_seconds() - served
            row["server_cpu_pct"] = 100 * served / wall
            row["other_cpu_pct"] = max(0.0, 100 * (busy - served - result.cpu_s) / wall)
            row["rss_load_kib"] = server.rss_kib()
            if server.proc.poll() is not None:
                raise ServerError(f"{spec.server} exited during the run; see {server.log_path}")
            row.update(requests=result.requests, seconds=result.seconds, rps=result.rps, p50_ms=result.p50_ms,
                       p99_ms=result.p99_ms, max_ms=result.max_ms, non_2xx=result.non_2xx,
                       socket_errors=result.socket_errors, socket_error_detail=result.socket_error_detail)
            # A trapped guest fails its request (the client sees a 500 or a cut
            # connection): count them from wsgi-wasm's log, which tags each one.
            row["traps"] = server.count_in_log("] trap:") if spec.port_from_stderr else 0
            if result.requests == 0:
                raise LoadError(f"no request completed; see {server.log_path}")
            # Measured, so the figures stand; what went wrong is reported beside them
            # and fails the run.
            row["ok"] = True
            problems = []
            if row["traps"]:
                problems.append(f"{row['traps']} guest traps (`trap:` lines in {server.log_path})")
            if result.non_2xx:
                problems.append(f"{result.non_2xx} responses were not 2xx/3xx")
            if result.socket_errors:
                # Cut or refused connections are requests that failed as surely
                # as a 500, and they make req/s look better than it was.
                problems.append(f"wrk saw socket errors ({result.socket_error_detail})")
            if problems:
                row["problem"] = "; ".join(problems)
    except (ServerError, LoadError, CheckError, OSError) as err:
        row["error"] = str(err)
    return row


def unequal_work(row, ours):
    """What is wrong with comparing a peer's row to wsgi-wasm's `ours` (same app),
    or None: a peer whose body is over MAX_BODY_RATIO times ours did more work
    (demo_app's body is the environ the server built), so the ratio between the
    two rows would not be like for like."""
    theirs, base = row.get("body_bytes"), (ours or {}).get("body_bytes")
    if not row.get("ok") or not theirs or not base or theirs <= MAX_BODY_RATIO * base:
        return None
    return (f"its body was {theirs:,} bytes against wsgi-wasm's {base:,}: it did more work per request, "
            "so its ratio to wsgi-wasm is not like for like (a server environment beyond config.SERVER_ENV?)")


def wait_for_quiet(limit, threshold=QUIET_THRESHOLD, sample=0.5):
    """Waits (at most `limit` seconds) until the rest of the machine uses less than
    `threshold` % of one core, so a row is not measured while a build competes for
    the CPUs. Returns (seconds waited, % of one core used in the last sample)."""
    started = time.monotonic()
    while True:
        busy = machine_busy_seconds()
        time.sleep(sample)
        pct = 100 * (machine_busy_seconds() - busy) / sample
        waited = time.monotonic() - started
        if pct < threshold or waited >= limit:
            return waited, pct


def fill_cache(spec, log_name):
    """Starts a wsgi-wasm server once, unpinned, so its component is compiled (on
    every core) into the cache before the pinned, measured starts; returns seconds."""
    started = time.perf_counter()
    with Running(spec, log_name, pin=False) as server:
        server.wait_listening()
    return time.perf_counter() - started


def start_to_first_response(spec, app, log_name):
    """Seconds from starting the server process (not pinned: a real start may use
    every core, and compiling a component does) to the end of its first response."""
    with Running(spec, log_name, pin=False) as server:
        server.wait_listening()
        status, body, _ = get(server.port)
        elapsed = time.perf_counter() - server.started_at
        check_response(app, status, body)
        return elapsed


def cold_start(make_spec, app, warm_runs, log_name):
    """wsgi-wasm start to first response with a fresh (cold) compiled-component cache,
    then the median of `warm_runs` starts with that cache filled."""
    row = {"app": app, "ok": False}
    scratch = WORK / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    cache = tempfile.mkdtemp(prefix="cold-cache-", dir=scratch)
    try:
        spec = make_spec(cache)
        row["server"] = spec.server
        row["cold_s"] = start_to_first_response(spec, app, f"{log_name}-cold")
        warm = [start_to_first_response(spec, app, f"{log_name}-warm{i}") for i in range(warm_runs)]
        row["warm_s"] = statistics.median(warm)
        row["ok"] = True
    except (ServerError, LoadError, CheckError, OSError) as err:
        row["error"] = str(err)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return row


def native_start(make_spec, app, runs, log_name):
    """A native server's start to first response (median of `runs`, each on a new
    port): the baseline for cold starts (nothing to compile, so cold = warm)."""
    row = {"app": app, "server": make_spec().server, "ok": False}
    try:
        times = [start_to_first_response(make_spec(), app, f"{log_name}-{i}") for i in range(runs)]
        row["cold_s"] = row["warm_s"] = statistics.median(times)
        row["ok"] = True
    except (ServerError, LoadError, CheckError, OSError) as err:
        row["error"] = str(err)
    return row


def in_process_call(probe, component, app, isolation, calls):
    """Mean time of one WSGI call of `component` made in-process by
    host/examples/isolation_cost (no HTTP), on the server's CPU."""
    row = {"app": app, "isolation": isolation, "calls": calls, "ok": False}
    done = subprocess.run(["taskset", "-c", SERVER_CPU, str(probe), str(component), str(calls), "/", isolation],
                          capture_output=True, text=True, timeout=600)
    found = re.search(r"^\w+: ([0-9.]+) us per call$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not found:
        row["error"] = f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-400:]}"
        return row
    row.update(ok=True, us_per_call=float(found.group(1)))
    return row
