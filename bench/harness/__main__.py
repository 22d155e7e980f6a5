"""bench/run: sets up, measures every server in turn, writes the report."""

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from . import report, servers, setup
from .config import (APPS, BENCH, FULL_DURATION, FULL_WARMUP, LOGS, QUIET_THRESHOLD, QUIET_WAIT, REPO,
                     SERVE_CACHE, SMOKE_DURATION, SMOKE_WARMUP, WARM_START_RUNS, WORK, show)
from .measure import cold_start, fill_cache, in_process_call, load_run, native_start, unequal_work, wait_for_quiet
from .servers import ServerError

PYTHON_APPS = ["hello", "demo", "flask", "stream"]
ALL_APPS = PYTHON_APPS + ["rust"]
# Where each Python app's source lives for the native servers, and its WSGI callable.
NATIVE = {
    "hello": (APPS, "hello:app"),
    "demo": (REPO / "apps" / "demo", "demo_app:demo_app"),
    "flask": (APPS, "flask_hello:app"),
    "stream": (APPS, "stream:app"),
}
PEERS = {"granian": servers.granian, "gunicorn": servers.gunicorn, "waitress": servers.waitress}
# Apps whose fresh-instance cost (`--isolation request`) is measured in a full run.
REQUEST_MODE_APPS = ["hello", "demo", "flask", "rust"]
# Apps whose WSGI call is also timed in-process (host/examples/isolation_cost), and
# how many calls each way: enough for a stable mean in about 2 s per figure.
IN_PROCESS_APPS = ["hello", "demo", "flask", "stream"]
IN_PROCESS_CALLS = {"pooled": 40000, "request": 2000}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--smoke", action="store_true",
                        help="CI mode: each wsgi-wasm app for ~1 s, one request-isolation run, one cold start; "
                             "no native peers, no wasmtime CLI; results go to target/bench/smoke/")
    parser.add_argument("--duration", type=int, help=f"seconds measured per row [full: {FULL_DURATION}, smoke: {SMOKE_DURATION}]")
    parser.add_argument("--warmup", type=int, help=f"seconds of wrk before each measured run [full: {FULL_WARMUP}, smoke: {SMOKE_WARMUP}]")
    parser.add_argument("--apps", default=",".join(ALL_APPS), help=f"comma-separated subset of {','.join(ALL_APPS)}")
    parser.add_argument("--profile", choices=["release", "debug"],
                        help="which wsgi-wasm build to measure [full: release; smoke: debug, the build "
                             "scripts/test already made (its dependencies, wasmtime included, are optimised)]")
    parser.add_argument("--no-peers", action="store_true", help="skip granian, gunicorn and waitress")
    parser.add_argument("--no-wasmtime", action="store_true", help="skip `wasmtime serve` (and installing its CLI)")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the start-to-first-response measurements")
    parser.add_argument("--quiet-wait", type=int,
                        help=f"before each row, wait up to this many seconds for the rest of the machine to use "
                             f"under {QUIET_THRESHOLD:g}%% of a core [full: {QUIET_WAIT}, smoke: 0]")
    parser.add_argument("--out", type=Path, help="directory for results.md and results.png "
                                                 "[full: bench/results, smoke: target/bench/smoke]")
    args = parser.parse_args(argv)
    args.apps = [a for a in args.apps.split(",") if a]
    unknown = set(args.apps) - set(ALL_APPS)
    if unknown:
        parser.error(f"unknown app(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL_APPS)}")
    if args.duration is None:
        args.duration = SMOKE_DURATION if args.smoke else FULL_DURATION
    if args.warmup is None:
        args.warmup = SMOKE_WARMUP if args.smoke else FULL_WARMUP
    if args.quiet_wait is None:
        args.quiet_wait = 0 if args.smoke else QUIET_WAIT
    if args.profile is None:
        args.profile = "debug" if args.smoke else "release"
    if args.out is None:
        args.out = WORK / "smoke" if args.smoke else BENCH / "results"
    if args.smoke:
        args.no_peers = args.no_wasmtime = True
    return args


def _fmt_duration(value):
    return f"{value:g}"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    began = time.monotonic()
    mode = "smoke" if args.smoke else "full"
    failures = []

    # -- setup -----------------------------------------------------------------
    try:
        setup.ensure_taskset()
        setup.ensure_wrk()
        setup.ensure_venv()
        setup.ensure_project_setup()
        binary = setup.ensure_server(args.profile)
        probe = setup.ensure_in_process_probe(args.profile)
        python_apps = [a for a in PYTHON_APPS if a in args.apps]
        components = setup.ensure_python_components(binary, python_apps)
        if "rust" in args.apps:
            components["rust"] = setup.ensure_rust_guest()
        wasmtime = wasi_http = None
        if "rust" in args.apps and not args.no_wasmtime:
            wasi_http = setup.ensure_wasi_http_guest()
            wasmtime = setup.ensure_wasmtime_cli()
        # Compile each component into the servers' cache now, on both cores, rather
        # than pinned to one core at the first measured start.
        for app, component in components.items():
            seconds = fill_cache(servers.wsgi_wasm(binary, component), f"fill-cache-{app}")
            if seconds > 1:
                print(f"==> compiled {component.name} into {show(SERVE_CACHE)} in {seconds:.0f}s", flush=True)
    except (setup.SetupError, ServerError) as err:
        print(f"!! setup failed: {err}", file=sys.stderr)
        return 1
    setup_seconds = time.monotonic() - began
    print(f"==> set up in {setup_seconds:.0f}s; measuring ({mode}: {_fmt_duration(args.warmup)} s warm-up, "
          f"{_fmt_duration(args.duration)} s per row)", flush=True)

    # -- throughput and latency -------------------------------------------------
    rows = []

    def measure(spec, app, name):
        waited, busy = wait_for_quiet(args.quiet_wait) if args.quiet_wait else (0.0, None)
        if waited >= 1:
            print(f"    (waited {waited:.0f}s for other work on the machine to quiet down"
                  + (f"; still {busy:.0f}% of a core" if busy >= QUIET_THRESHOLD else "") + ")", flush=True)
        row = load_run(spec, app, args.duration, args.warmup, name)
        row["quiet_wait_s"] = waited
        return row

    def run(spec, app, isolation="pooled"):
        name = f"{app}-{spec.server}".replace(" ", "-").replace("(", "").replace(")", "")
        row = measure(spec, app, name)
        # Other work started during the run: measure once more, keep the quieter one.
        if args.quiet_wait and row["ok"] and row["other_cpu_pct"] > QUIET_THRESHOLD:
            print(f"    (others used {row['other_cpu_pct']:.0f}% of a core during {app} on {spec.server}: "
                  "measuring it again)", flush=True)
            again = measure(spec, app, name)
            if again["ok"] and again["other_cpu_pct"] < row["other_cpu_pct"]:
                row = again
        row["isolation"] = isolation
        if spec.server in PEERS:
            ours = next((r for r in rows if r["app"] == app and r["server"] == report.WSGI_WASM), None)
            unequal = unequal_work(row, ours)
            if unequal:
                row["problem"] = "; ".join(filter(None, [row.get("problem"), unequal]))
        rows.append(row)
        report.progress(row)
        if not row["ok"]:
            failures.append(f"{app} on {spec.server}: {row['error']}")
        elif row.get("problem"):
            failures.append(f"{app} on {spec.server}: {row['problem']}")

    measuring = time.monotonic()
    for app in python_apps:
        component = components[app]
        run(servers.wsgi_wasm(binary, component), app)
        if app in REQUEST_MODE_APPS and (not args.smoke or app == "hello"):
            run(servers.wsgi_wasm(binary, component, isolation="request"), app, "request")
        if not args.no_peers:
            app_dir, target = NATIVE[app]
            for make in PEERS.values():
                run(make(app_dir, target, servers.free_port()), app)
    if "rust" in args.apps:
        run(servers.wsgi_wasm(binary, components["rust"]), "rust")
        if not args.smoke:
            run(servers.wsgi_wasm(binary, components["rust"], isolation="request"), "rust", "request")
        if wasmtime and wasi_http:
            run(servers.wasmtime_serve(wasmtime, wasi_http), "rust")

    # -- the WSGI call in-process, without HTTP -------------------------------------
    in_process = []
    for app in [a for a in IN_PROCESS_APPS if a in components]:
        for isolation, calls in IN_PROCESS_CALLS.items():
            if args.quiet_wait:
                wait_for_quiet(args.quiet_wait)
            row = in_process_call(probe, components[app], app, isolation, calls // 20 if args.smoke else calls)
            in_process.append(row)
            report.progress_in_process(row)
            if not row["ok"]:
                failures.append(f"in-process {isolation} call of {app}: {row['error']}")

    # -- start to first response ------------------------------------------------
    starts = []
    if not args.no_cold_start:
        cold_apps = ["rust"] if args.smoke else [a for a in ["hello", "demo", "flask", "rust"] if a in args.apps]
        warm_runs = 1 if args.smoke else WARM_START_RUNS
        for app in cold_apps:
            if app not in components:
                continue
            component = components[app]
            if args.quiet_wait:
                wait_for_quiet(args.quiet_wait)
            row = cold_start(lambda cache, c=component: servers.wsgi_wasm(binary, c, cache_dir=cache),
                             app, warm_runs, f"start-{app}-wsgi-wasm")
            starts.append(row)
            report.progress_start(row)
            if not row["ok"]:
                failures.append(f"cold start of {app} on wsgi-wasm: {row['error']}")
            if not args.no_peers and app in NATIVE:
                app_dir, target = NATIVE[app]
                for peer, make in PEERS.items():
                    row = native_start(lambda m=make: m(app_dir, target, servers.free_port()), app, warm_runs,
                                       f"start-{app}-{peer}")
                    starts.append(row)
                    report.progress_start(row)
                    if not row["ok"]:
                        failures.append(f"start of {app} on {peer}: {row['error']}")
    measuring_seconds = time.monotonic() - measuring

    # -- report -------------------------------------------------------------------
    results = {
        "mode": mode,
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": setup.machine_description(),
        "revision": setup.git_revision(),
        "profile": args.profile,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "quiet_wait_s": args.quiet_wait,
        "quiet_threshold_pct": QUIET_THRESHOLD,
        "versions": setup.tool_versions(),
        # How each Python component was built, beyond `wsgi-wasm build TARGET`.
        "build_args": {name: extra for name, (_cwd, _target, extra) in setup.PYTHON_APPS.items() if extra},
        "wasmtime_serve": "measured" if wasmtime else ("skipped: --no-wasmtime or --smoke" if args.no_wasmtime
                                                        else "skipped: the wasmtime CLI could not be installed"),
        "setup_s": setup_seconds,
        "measuring_s": measuring_seconds,
        "rows": rows,
        "starts": starts,
        "in_process": in_process,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = WORK / f"results-{mode}.json"
    json_path.write_text(json.dumps(results, indent=1))
    print()
    print(report.console_table(results))
    md_path = args.out / "results.md"
    md_path.write_text(report.markdown(results))
    png_path = args.out / "results.png"
    chart = subprocess.run([str(setup.venv_python()), str(BENCH / "chart.py"), str(json_path), str(png_path)],
                           capture_output=True, text=True)
    if chart.returncode != 0:
        failures.append(f"bench/chart.py failed:\n{chart.stderr.strip()}")
    print(f"\nwrote {show(md_path)}, {show(png_path)} and {show(json_path)}; server logs in {show(LOGS)}/")
    total = time.monotonic() - began
    print(f"{mode} run: {total:.0f}s in total ({setup_seconds:.0f}s setup, {measuring_seconds:.0f}s measuring)")
    # The plain count line CI logs understand: measurements that worked and did not.
    passed = sum(1 for r in rows + starts + in_process if r["ok"] and not r.get("problem"))
    skipped = 1 if "rust" in args.apps and not args.smoke and not wasmtime else 0
    print(f"bench: {passed} passed, {len(failures)} failed" + (f", {skipped} skipped" if skipped else ""))
    if failures:
        print(f"\n!! {len(failures)} problem(s):", file=sys.stderr)
        for failure in failures:
            print(f"- {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
