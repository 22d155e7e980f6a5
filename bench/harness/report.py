"""Turns measured rows into the console table, results.md and the targets check."""

import math

APP_LABELS = {
    "hello": "hello (bare WSGI callable)",
    "demo": "demo_app (the seed's)",
    "flask": "Flask hello",
    "stream": "1 MiB streamed (16 x 64 KiB)",
    "rust": "Rust guest hello",
}
APP_ORDER = list(APP_LABELS)
WSGI_WASM = "wsgi-wasm"
REQUEST = "wsgi-wasm (request)"


# -- formatting -------------------------------------------------------------------

def fmt_rps(value):
    return "-" if value is None or math.isnan(value) else f"{value:,.0f}"


def fmt_ms(value):
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def fmt_mib(kib):
    return "-" if kib is None else f"{kib / 1024:.1f}"


def fmt_s(seconds):
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_pct(value):
    return "-" if value is None else f"{value:.0f}%"


def fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}x"


# -- derived figures ------------------------------------------------------------------

def _row(results, app, server):
    for row in results["rows"]:
        if row["app"] == app and row["server"] == server and row.get("ok"):
            return row
    return None


def ratio(results, app, server, against=WSGI_WASM):
    """wsgi-wasm's req/s divided by `server`'s, both from this run."""
    ours, theirs = _row(results, app, against), _row(results, app, server)
    if not ours or not theirs or not theirs.get("rps"):
        return None
    return ours["rps"] / theirs["rps"]


def added_us(results, app):
    """Microseconds of server time a fresh instance per request adds over pooled: at
    saturation 1/(req/s) is the CPU time one request costs the (single-core) server."""
    pooled, fresh = _row(results, app, WSGI_WASM), _row(results, app, REQUEST)
    if not pooled or not fresh or not pooled.get("rps") or not fresh.get("rps"):
        return None
    return (1 / fresh["rps"] - 1 / pooled["rps"]) * 1e6


def _ratio_verdict(results, app, peer, value, want, digits):
    """met / missed for wsgi-wasm's ratio to `peer`, unless the peer's row has a
    problem (unequal work, errors): then the ratio judges nothing."""
    theirs = _row(results, app, peer)
    if theirs and theirs.get("problem"):
        return f"not judged: the {peer} row has a problem (see Problems)"
    return "met" if value >= want else f"missed: needs {want / value:.{digits}f}x more req/s"


def _http_us_cell(results, app, isolation):
    """1/(req/s) of the app's wsgi-wasm row in this isolation, in microseconds."""
    row = _row(results, app, WSGI_WASM if isolation == "pooled" else REQUEST)
    if not row or not row.get("rps"):
        return "-"
    return f"{1e6 / row['rps']:,.1f} us"


def _apps(results):
    present = {row["app"] for row in results["rows"]}
    return [app for app in APP_ORDER if app in present]


def _ratio_cell(results, row):
    if row["server"] in (WSGI_WASM, REQUEST) or not row.get("ok"):
        return "-"
    text = fmt_ratio(ratio(results, row["app"], row["server"]))
    if row["server"] == "wasmtime serve" and _row(results, row["app"], REQUEST):
        text += f" (request: {fmt_ratio(ratio(results, row['app'], row['server'], against=REQUEST))})"
    return text


def _errors_cell(row):
    """Non-2xx responses plus wrk's socket errors; guest traps noted separately."""
    count = (row.get("non_2xx") or 0) + (row.get("socket_errors") or 0)
    if row.get("traps"):
        return f"{count} ({row['traps']} traps)"
    return str(count) if row.get("ok") else "failed"


# -- progress lines -----------------------------------------------------------------------

def progress(row):
    if row["ok"]:
        print(f"    {row['app']:<7} {row['server']:<20} {fmt_rps(row['rps']):>9} req/s  p50 {fmt_ms(row['p50_ms'])} ms  "
              f"p99 {fmt_ms(row['p99_ms'])} ms  max {fmt_ms(row['max_ms'])} ms  RSS {fmt_mib(row['rss_load_kib'])} MiB"
              + (f"  ({row['socket_error_detail']})" if row.get("socket_errors") else "")
              + (f"\n!!  {row['problem']}" if row.get("problem") else ""), flush=True)
    else:
        print(f"!!  {row['app']:<7} {row['server']:<20} FAILED: {row['error']}", flush=True)


def progress_start(row):
    if row["ok"]:
        print(f"    start {row['app']:<7} {row['server']:<10} cold {fmt_s(row['cold_s'])}, warm {fmt_s(row['warm_s'])}",
              flush=True)
    else:
        print(f"!!  start {row['app']:<7} {row.get('server', '?'):<10} FAILED: {row['error']}", flush=True)


def progress_in_process(row):
    if row["ok"]:
        print(f"    in-process {row['app']:<7} {row['isolation']:<8} {row['us_per_call']:,.1f} us per call "
              f"({row['calls']:,} calls)", flush=True)
    else:
        print(f"!!  in-process {row['app']:<7} {row['isolation']:<8} FAILED: {row['error']}", flush=True)


# -- console table ------------------------------------------------------------------------

def console_table(results):
    header = ["app", "server", "req/s", "p50 ms", "p99 ms", "max ms", "idle MiB", "load MiB", "errors", "cpu",
              "others", "wsgi-wasm/this"]
    lines = [header]
    for app in _apps(results):
        for row in (r for r in results["rows"] if r["app"] == app):
            lines.append([app, row["server"], fmt_rps(row.get("rps")), fmt_ms(row.get("p50_ms")),
                          fmt_ms(row.get("p99_ms")), fmt_ms(row.get("max_ms")), fmt_mib(row.get("rss_idle_kib")),
                          fmt_mib(row.get("rss_load_kib")), _errors_cell(row), fmt_pct(row.get("server_cpu_pct")),
                          fmt_pct(row.get("other_cpu_pct")), _ratio_cell(results, row)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.rjust(w) if i >= 2 else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
           for line in lines]
    extra = []
    for app in _apps(results):
        us = added_us(results, app)
        if us is not None:
            extra.append(f"request isolation, {app}: +{us:,.0f} us per request over pooled")
    for row in results.get("in_process", []):
        if row["ok"]:
            extra.append(f"in-process {row['isolation']} call, {row['app']}: {row['us_per_call']:,.1f} us")
    for row in results["starts"]:
        if row["ok"]:
            extra.append(f"start to first response, {row['app']} on {row['server']}: "
                         f"cold {fmt_s(row['cold_s'])}, warm {fmt_s(row['warm_s'])}")
    if results["mode"] != "smoke":
        for target, measured, ratio_text, verdict in speed_targets(results):
            extra.append(f"issue 14: {target}: {measured} ({ratio_text}) {verdict}")
    return "\n".join(out + ([""] + extra if extra else []))


# -- targets (issue 6) ----------------------------------------------------------------------

def targets(results):
    """Each of issue 6's targets that this run can judge: (target, measured, verdict)."""
    checks = []

    def versus(app, peer, want):
        value = ratio(results, app, peer)
        if value is None:
            return
        verdict = _ratio_verdict(results, app, peer, value, want, 1)
        checks.append((f"{APP_LABELS[app]}, pooled >= {want:.1f}x {peer}", fmt_ratio(value), verdict))

    for app in ("hello", "demo"):
        versus(app, "granian", 1.0)
        versus(app, "gunicorn", 5.0)
    versus("flask", "granian", 1.0)
    for app in ("hello", "demo", "flask"):
        us = added_us(results, app)
        if us is not None:
            verdict = "met" if us <= 100 else f"missed by {us - 100:,.0f} us"
            checks.append((f"{APP_LABELS[app]}, request isolation adds <= 100 us", f"+{us:,.0f} us", verdict))
    versus("rust", "wasmtime serve", 1.0)
    # Not for the 1 MiB stream: at c=64 its mean latency (64 / req/s) is over 100 ms on
    # every server, since the transfer itself takes that long.
    for app in [a for a in _apps(results) if a != "stream"]:
        row = _row(results, app, WSGI_WASM)
        if not row:
            continue
        p50, p99, top = row["p50_ms"], row["p99_ms"], row["max_ms"]
        problems = []
        if p99 > 3 * p50:
            problems.append(f"p99 is {p99 / p50:.1f}x p50")
        if top > 100:
            problems.append(f"max {fmt_ms(top)} ms")
        checks.append((f"{APP_LABELS[app]}, pooled: p99 <= 3x p50, max <= 100 ms",
                       f"p50 {fmt_ms(p50)}, p99 {fmt_ms(p99)}, max {fmt_ms(top)} ms",
                       "met" if not problems else "missed: " + ", ".join(problems)))
    return checks


# -- targets (issue 14: speed) ----------------------------------------------------------

# (app, the ratio to granian's req/s that pooled wsgi-wasm should reach)
SPEED_RATIOS = [("hello", 0.35), ("demo", 1.0), ("flask", 0.5), ("stream", 1.0)]
# (app, most microseconds a fresh instance per request may add, this round's bound or None)
SPEED_ISOLATION = [("hello", 100, 400), ("flask", 300, None)]
# Most microseconds one pooled in-process call of the hello app may take.
SPEED_POOLED_CALL_US = 12.0


def _in_process(results, app, isolation):
    for row in results.get("in_process", []):
        if row["app"] == app and row["isolation"] == isolation and row["ok"]:
            return row["us_per_call"]
    return None


def speed_targets(results):
    """Each of issue 14's targets that this run can judge: (target, measured, ratio, verdict).
    `ratio` is measured / target for bounds (<= 1.00x meets it) and measured / wanted
    for req/s ratios (>= 1.00x meets it)."""
    checks = []
    for app, most, this_round in SPEED_ISOLATION:
        us = added_us(results, app)
        if us is None:
            continue
        verdict = "met" if us <= most else f"missed by {us - most:,.0f} us"
        if us > most and this_round is not None:
            verdict += f" (this round's <= {this_round} us: {'met' if us <= this_round else 'missed'})"
        checks.append((f"{APP_LABELS[app]}, request isolation adds <= {most} us", f"+{us:,.0f} us",
                       fmt_ratio(us / most), verdict))
    us = _in_process(results, "hello", "pooled")
    if us is not None:
        checks.append((f"{APP_LABELS['hello']}, pooled call in-process <= {SPEED_POOLED_CALL_US:g} us",
                       f"{us:,.1f} us", fmt_ratio(us / SPEED_POOLED_CALL_US),
                       "met" if us <= SPEED_POOLED_CALL_US else f"missed by {us - SPEED_POOLED_CALL_US:,.1f} us"))
    for app, want in SPEED_RATIOS:
        value = ratio(results, app, "granian")
        if value is None:
            continue
        checks.append((f"{APP_LABELS[app]}, pooled >= {want:.2f}x granian", fmt_ratio(value),
                       fmt_ratio(value / want), _ratio_verdict(results, app, "granian", value, want, 2)))
    return checks


# -- results.md ----------------------------------------------------------------------------------

def _table(header, rows, text_columns=2):
    """A Markdown table: the first `text_columns` left-aligned, figures right-aligned."""
    align = [" --- " if i < text_columns else " ---: " for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _demo_bodies(results):
    """demo_app's body size on each server: the environ each one hands the app, so a
    reader can see every server's demo row did about the same work."""
    sizes = [f"{row['server']} {row['body_bytes']:,}" for row in results["rows"]
             if row["app"] == "demo" and row.get("ok") and row.get("body_bytes")]
    return f" Its body here, in bytes: {', '.join(sizes)}." if sizes else ""


def markdown(results):
    versions = results["versions"]
    smoke = results["mode"] == "smoke"
    out = [
        "# wsgi-wasm benchmark" + (" (smoke run: plumbing check, figures meaningless)" if smoke else ""),
        "",
        f"Measured {results['date']} on {results['machine']}, wsgi-wasm at {results['revision']} "
        f"({results['profile']} build), by `bench/run{' --smoke' if smoke else ''}`.",
        "",
        "**Indicative figures.** The machine has 2 cores and other work (cargo builds, tests) may have been "
        "running at the same time, so absolute numbers move between runs; the ratios compare servers measured "
        "minutes apart in the same run.",
        "",
        f"Method: wrk {versions.get('wrk', '?')}, `-t1 -c64`, keep-alive, {results['warmup_s']:g} s warm-up then "
        f"{results['duration_s']:g} s measured per row; the server pinned to CPU 0 and wrk to CPU 1 (`taskset`); "
        "one worker process per server. Each server is first checked with one request (the right body, status 200); "
        "its idle memory is read then, its loaded memory after the run (RSS of its whole process tree)."
        + (f" Before each row the harness waited (up to {results['quiet_wait_s']:g} s) until the rest of the machine "
           f"used under {results['quiet_threshold_pct']:g}% of a core." if results.get("quiet_wait_s") else ""),
        "",
        "- wsgi-wasm: `serve APP --listen 127.0.0.1:0 --no-access-log`, pooled isolation (`(request)`: "
        "`--isolation request`, a fresh instance per request), default instance count (2 per CPU it may use: 2); "
        "apps run by CPython 3.14 for WASI inside the component"
        + "".join(f"; {APP_LABELS[app]} built with `{' '.join(args)}`"
                  for app, args in results.get("build_args", {}).items())
        + ".",
        f"- granian {versions.get('granian', '?')}: `--interface wsgi --workers 1`, defaults otherwise.",
        f"- gunicorn {versions.get('gunicorn', '?')}: `-k gthread --workers 1 --threads 4`.",
        f"- waitress {versions.get('waitress', '?')}: `waitress-serve`, defaults (4 threads).",
        f"- native peers run CPython {versions.get('cpython', '?')}, Flask {versions.get('flask', '?')} "
        "(the Flask components bundle the same version).",
        f"- wasmtime serve: `wasmtime serve -S cli` 48.0.8 with bench/wasi-http-hello, the wasi:http twin of apps/hello-rust "
        f"(a fresh instance per request, as wasmtime serve always does); {results['wasmtime_serve']}.",
        "- every server process gets the same environment, PATH, HOME and LANG only: granian, like wsgiref, copies "
        "its process environment into each request's environ, and demo_app prints the environ."
        + _demo_bodies(results),
        "",
        "![req/s and p99 latency per app and server](results.png)",
        "",
        "## Throughput and latency",
        "",
        "`wsgi-wasm / this`: wsgi-wasm's (pooled) req/s divided by this server's, in this run. "
        "`errors`: non-2xx responses plus wrk's socket errors. `server CPU`: CPU time the server used during the "
        "measured run, in % of one core (100% = its core saturated). `others' CPU`: what the rest of the machine "
        "(builds, tests; not the server, not wrk) used meanwhile, in % of one core: above a few %, that row "
        "competed for CPU and its figures are less reliable.",
        "",
    ]
    header = ["app", "server", "req/s", "p50 ms", "p99 ms", "max ms", "RSS idle MiB", "RSS loaded MiB", "errors",
              "server CPU", "others' CPU", "wsgi-wasm / this"]
    rows = []
    for app in _apps(results):
        for row in (r for r in results["rows"] if r["app"] == app):
            rows.append([APP_LABELS[app], row["server"], fmt_rps(row.get("rps")), fmt_ms(row.get("p50_ms")),
                         fmt_ms(row.get("p99_ms")), fmt_ms(row.get("max_ms")), fmt_mib(row.get("rss_idle_kib")),
                         fmt_mib(row.get("rss_load_kib")), _errors_cell(row), fmt_pct(row.get("server_cpu_pct")),
                         fmt_pct(row.get("other_cpu_pct")), _ratio_cell(results, row)])
    out += [_table(header, rows), ""]
    failed = [r for r in results["rows"] if not r["ok"] or r.get("problem")]
    if failed:
        out += ["Problems:", ""] + [f"- {r['app']} on {r['server']}: {r.get('error') or r['problem']}"
                                    for r in failed] + [""]

    iso = [(app, added_us(results, app)) for app in _apps(results)]
    iso = [(app, us) for app, us in iso if us is not None]
    if iso:
        out += ["## A fresh instance per request (`--isolation request`) vs pooled", "",
                "Added cost = 1/(req/s request) - 1/(req/s pooled): the extra server CPU time per request "
                "(the server is saturated on one core).", ""]
        out += [_table(["app", "pooled req/s", "request req/s", "added per request"],
                       [[APP_LABELS[app], fmt_rps(_row(results, app, WSGI_WASM)["rps"]),
                         fmt_rps(_row(results, app, REQUEST)["rps"]), f"{us:,.0f} us"] for app, us in iso],
                       text_columns=1), ""]

    in_process = [r for r in results.get("in_process", []) if r["ok"]]
    if in_process:
        out += ["## The WSGI call in-process", "",
                "Mean time of one call made by host/examples/isolation_cost on the server's CPU: the component "
                "called in-process with a synthetic GET /, no HTTP, so the figure is the guest's work (environ in, "
                "response out) and, in request isolation, also putting the instance back as instantiation left "
                "it (the rewind: written pages reset from the image, tables and globals restored). `over HTTP`: the same app's server time per request in the throughput table "
                "(1/(req/s), its core saturated); the difference is HTTP, the kernel and the host around the "
                "call.", ""]
        out += [_table(["app", "isolation", "calls", "per call", "over HTTP"],
                       [[APP_LABELS[r["app"]], r["isolation"], f"{r['calls']:,}", f"{r['us_per_call']:,.1f} us",
                         _http_us_cell(results, r["app"], r["isolation"])]
                        for r in in_process]), ""]

    starts = results["starts"]
    if starts:
        out += ["## Start to first response", "",
                "From starting the process to the end of the first response (not pinned: a start may use every "
                "core). wsgi-wasm cold: a fresh `--cache-dir`, so the component is compiled; warm: the compiled "
                "component is loaded from the cache"
                + (" (median of 3 starts)" if not smoke else "") + ". Native servers have nothing to compile.", ""]
        out += [_table(["app", "server", "cold cache", "warm cache"],
                       [[APP_LABELS[r["app"]], r.get("server", "?"), fmt_s(r.get("cold_s")) if r["ok"] else "failed",
                         fmt_s(r.get("warm_s")) if r["ok"] else "failed"] for r in starts]), ""]

    servers = []
    for row in results["rows"]:
        if row["server"] not in servers and row["server"] != REQUEST:
            servers.append(row["server"])
    mem_rows = []
    for app in _apps(results):
        cells = []
        for server in servers:
            row = _row(results, app, server)
            cells.append(fmt_mib(row["rss_idle_kib"]) if row else "")
        mem_rows.append([APP_LABELS[app]] + cells)
    out += ["## Memory of an idle app", "",
            "RSS in MiB of the server's process tree after it started and served one request (gunicorn and granian "
            "run a parent and a worker process).", "",
            _table(["app"] + servers, mem_rows, text_columns=1), ""]

    checks = targets(results)
    if checks and not smoke:
        out += ["## Against issue 6's targets", "", _table(["target", "measured", "verdict"], [list(c) for c in checks], text_columns=3), ""]

    speed = speed_targets(results)
    if speed and not smoke:
        out += ["## Against issue 14's targets (speed)", "",
                "`ratio`: for a bound, measured / bound (1.00x or less meets it); for a req/s ratio, measured / "
                "wanted (1.00x or more meets it).", "",
                _table(["target", "measured", "ratio", "verdict"], [list(c) for c in speed], text_columns=4), ""]

    out += ["## Reproduce", "",
            "    bench/run            # full run: this file and results.png",
            "    bench/run --smoke    # CI's quick check of the whole path (target/bench/smoke/)",
            "    bench/run --help     # options: --duration, --apps, --no-peers, --no-wasmtime...",
            "",
            f"This run: {results['setup_s']:.0f} s of setup (builds skipped when up to date), "
            f"{results['measuring_s']:.0f} s of measuring.", ""]
    return "\n".join(out)
