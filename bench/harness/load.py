"""The load generator (wrk, pinned to LOAD_CPU) and the one-request client."""

import http.client
import re
import resource
import subprocess
import time
from dataclasses import dataclass

from .config import CONNECTIONS, LOAD_CPU, WRK_THREADS, WRK_TIMEOUT


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    socket_error_detail: str
    raw: str
    cpu_s: float = 0.0  # CPU time wrk itself used


class LoadError(Exception):
    pass


def wrk(url, duration, connections=CONNECTIONS):
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{duration}s",
           "--latency", "--timeout", WRK_TIMEOUT, url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise LoadError(f"wrk failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    result = parse_wrk(done.stdout)
    result.cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return result


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise LoadError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(out):
    """Reads wrk 4's report (with --latency)."""
    try:
        requests, seconds = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out).group(1, 2)
        unit = re.search(r"\d+ requests in [\d.]+(us|ms|s|m)", out).group(1)
        seconds = float(seconds) * _UNITS_MS[unit] / 1000.0
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        latency = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
        p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
        p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    except AttributeError:
        raise LoadError(f"cannot read wrk's report:\n{out}") from None
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    requests = int(requests)
    # With no completed request wrk prints no latencies worth reading.
    if requests == 0 or not (latency and p50 and p99):
        return WrkResult(requests, seconds, rps, float("nan"), float("nan"), float("nan"),
                         int(non_2xx.group(1)) if non_2xx else 0, 0, "", out)
    return WrkResult(
        requests=requests,
        seconds=seconds,
        rps=rps,
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        max_ms=_ms(latency.group(3)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        socket_error_detail=errors.group(0) if errors else "",
        raw=out,
    )


def get(port, path="/", timeout=60.0):
    """One GET on a fresh connection: (status, body, seconds)."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - started
    finally:
        conn.close()
