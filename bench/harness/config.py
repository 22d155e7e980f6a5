"""Paths and the fixed numbers of the benchmark, each with the reason for it."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
APPS = BENCH / "apps"


def show(path):
    """A path as printed: relative to the repository when inside it."""
    path = Path(path)
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


# Where cargo puts the builds (and so where the binary and the Rust guest are found).
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target").resolve()
# Everything the harness generates lives under target/, except the committed results.
WORK = TARGET / "bench"
VENV = TARGET / "bench-venv"
TOOLS = TARGET / "bench-tools"
COMPONENTS = WORK / "components"
LOGS = WORK / "logs"
# The compiled-component cache the servers use while measuring throughput (warm after
# the first start); cold-start runs get fresh directories instead.
SERVE_CACHE = WORK / "cache"

WASMTIME_VERSION = "48.0.8"  # the wasmtime the server embeds (Cargo.lock)

# Load: the same for every server. 64 keep-alive connections from one wrk thread is
# the setting; one thread is enough to saturate one server core.
CONNECTIONS = 64
WRK_THREADS = 1
# wrk's default 2 s would count slow responses (request isolation, Flask) as errors.
WRK_TIMEOUT = "10s"

# Full mode: ~22 measurements of 3 + 10 s plus start/stop stay under ~8 minutes.
FULL_DURATION = 10
FULL_WARMUP = 3
# Smoke mode: long enough to push thousands of requests through the real path.
SMOKE_DURATION = 1
SMOKE_WARMUP = 0

# The server gets CPU 0 and the load generator CPU 1, so neither steals the other's
# core (on this 2-core machine that is all of it).
SERVER_CPU = "0"
LOAD_CPU = "1"

# The whole environment every server process gets, instead of the harness's own.
# granian, like wsgiref, copies its process environment into every request's
# environ, so demo_app (which prints the environ) did 2.6x the work on granian when
# it inherited the caller's ~60 variables (a 2,678-byte body against wsgi-wasm's
# 680), and its figure depended on who ran the benchmark. Three variables, what a
# service manager's unit gets at the least; the servers and taskset are started by
# absolute path, so PATH need not be the caller's (often long).
SERVER_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": os.environ.get("HOME", "/"),
    "LANG": "C.UTF-8",
}

# How much larger than wsgi-wasm's a peer's response body may be before its row is
# flagged as unequal work. demo_app prints the environ, so its body measures the
# environ a server builds: gunicorn's own extra keys make its body 1.33x ours
# (902 bytes against 680); granian given the caller's environment made its 3.9x.
MAX_BODY_RATIO = 1.5

# Cold-start runs per app with a warm cache (the median is reported).
WARM_START_RUNS = 3

# How long a server may take to start listening: a cold start compiles the component
# (a Flask component takes ~10 s with Cranelift; more while other builds share the CPU).
START_TIMEOUT = 180.0
STOP_TIMEOUT = 15.0

# Before each full-mode row the harness waits (up to QUIET_WAIT seconds) until the
# rest of the machine uses less than QUIET_THRESHOLD % of one core: concurrent cargo
# builds and test runs are common here and would otherwise halve a row's figures.
QUIET_WAIT = 180
QUIET_THRESHOLD = 25.0
