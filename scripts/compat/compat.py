#!/usr/bin/env python3
"""Which Python packages work in the wsgi-wasm sandbox, measured.

For each package of a list, this asks `wsgi-wasm build` itself to install it for the
sandbox (pure-Python distributions for CPython 3.14/WASI, sdists built without a
compiler, the comparison with what native platforms get), then builds ONE probe
component importing every package that installed, inside the sandbox's CPython,
each in its own try/except (modules of a failed import are dropped, so the next
package starts clean), serves it and reads the results. Output: a markdown table.

    scripts/compat/compat.py [--list FILE] [--out FILE] [--jobs N] [--wsgi-wasm BIN]

Per package it records: installs (the build's deps step), imports (in the sandbox),
the version the sandbox got and the newest native platforms get, and the reason
when not (the build's own error, or the import's exception).
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Parallel pip runs: they wait on the network more than on the CPU.
DEFAULT_JOBS = 3
# A component that traps while importing a package fails the whole probe build; the
# script drops that package and rebuilds, at most this many times.
MAX_PROBE_REBUILDS = 5
# Packages imported by one probe component. One interpreter importing all ~90 that
# install (the full list) failed after a while on pure packages such as cachetools,
# blaming whichever import came last; batches keep such a failure local.
PROBE_BATCH = 20
# Seconds for `wsgi-wasm serve` to compile the probe and say where it listens.
SERVE_TIMEOUT = 600

# The usual way around each common gap, keyed by the distribution that blocks.
FIXES = {
    "pydantic-core": "pin `pydantic<2` (1.10.x is pure Python; its API differs from 2.x)",
    "psycopg2": "pg8000 (pure Python; Django and SQLAlchemy support it)",
    "psycopg2-binary": "pg8000 (pure Python; Django and SQLAlchemy support it)",
    "psycopg-binary": "pg8000, or psycopg 3 without its binary/C extras",
    "mysqlclient": "PyMySQL (pure Python; Django and SQLAlchemy support it)",
    "cryptography": "HTTPS through the host (`--allow-http https://...`); hashing via hashlib",
    "bcrypt": "pbkdf2 (hashlib.pbkdf2_hmac runs on the host) or hashlib.scrypt",
    "argon2-cffi-bindings": "pbkdf2 (hashlib.pbkdf2_hmac runs on the host)",
    "cffi": "a pure-Python alternative to the package that needs it",
    "lxml": "the standard library's html.parser/xml.etree (BeautifulSoup with `html.parser`)",
    "orjson": "the standard library's json",
    "ujson": "the standard library's json",
    "ruamel-yaml-clib": "ruamel.yaml falls back to pure Python without it",
    "pillow": "a host service (image work is CPU-heavy native code)",
    "numpy": "none in the sandbox: a host service",
    "rpds-py": "jsonschema<4.18 (before its Rust dependency)",
    "greenlet": "not needed for synchronous SQLAlchemy",
    "uvloop": "not needed under WSGI",
    "regex": "the standard library's re",
    "msgpack": "msgpack's pure fallback (MSGPACK_PUREPYTHON) or json",
}


def read_list(path):
    """`distribution [import names...]  # comment` per line."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, *imports = line.split()
            out.append((name, imports))
    return out


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def install(bin_, name, cache):
    """Runs the build's deps step for `name` alone; componentize-py is /bin/false, so
    the build stops right after installing (the probe is built once, later)."""
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(name + "\n")
        run = subprocess.run(
            [bin_, "build", "probe:app", "-r", str(req), "--cache-dir", str(cache), "-o", str(Path(tmp) / "x.wasm"),
             "--componentize-py", "/bin/false", "--python", sys.executable],
            cwd=tmp, capture_output=True, text=True,
        )
    err = run.stderr
    site = None
    m = re.search(r"cached in (\S+)", err) or re.search(r"cached \((\S+)\)", err)
    if m:
        site = Path(m.group(1)) / "site-packages"
    return site, err


# Enough of an error to see its cause in a table cell.
MAX_REASON = 400


def first_error(stderr):
    """The build's error: from its last `error: ` line on (pip's own ERROR lines when
    the build passes pip's output through), on one line."""
    lines = stderr.splitlines()
    starts = [i for i, l in enumerate(lines) if l.startswith("error: ")]
    if not starts:
        return (lines[-1] if lines else "?")[:MAX_REASON]
    rest = lines[starts[-1]:]
    pip_errors = [l.strip() for l in rest[1:] if l.strip().startswith("ERROR: ")]
    text = rest[0][len("error: "):].rstrip(":")
    if pip_errors:
        text += ": " + " ".join(pip_errors)
    return text[:MAX_REASON]


def blocker(text):
    """The native distribution an error names ("orjson cannot run...", "needs pydantic-core")."""
    for pattern in (r"^(\S+) cannot run in the sandbox", r"needs (\S+?)(?:[=<>!~].*)?(?:, which|$| )",
                    r"needs (\S+) \S+, which"):
        m = re.search(pattern, text)
        if m:
            return normalize(m.group(1))
    return None


def record(name, site, err):
    key = normalize(name)
    rec = {"name": name, "installs": site is not None, "version": None, "newest": None, "why": None}
    if site is None:
        rec["why"] = first_error(err)
        return rec
    for entry in site.iterdir():
        if entry.name.endswith(".dist-info"):
            dist, _, version = entry.name[: -len(".dist-info")].rpartition("-")
            if normalize(dist) == key:
                rec["version"] = version
                rec["dist_info"] = str(entry)
    check = json.loads((site.parent / "newer-releases.json").read_text())
    if "failed" in check:
        rec["newest"] = "?"
        rec["why"] = "could not compare with native platforms: " + check["failed"]
    else:
        rec["newest"] = rec["version"]
        for d in check["downgrades"]:
            if normalize(d["name"]) == key:
                rec["newest"] = d["newest"]
                rec["why"] = d["why"]
        # A dependency held back says why this one might behave differently.
        held = [f"{d['name']} {d['installed']} (not {d['newest']}: {d['why']})" for d in check["downgrades"]
                if normalize(d["name"]) != key]
        if held:
            rec["deps_held_back"] = held
    return rec


def import_names(rec, explicit):
    if explicit:
        return explicit
    info = Path(rec["dist_info"])
    top = info / "top_level.txt"
    if top.is_file():
        names = [n.strip() for n in top.read_text().splitlines() if n.strip() and not n.startswith("_")]
        if names:
            return names[:1]
    names = []
    for line in (info / "RECORD").read_text().splitlines():
        first = line.split(",")[0].split("/")[0]
        if first.endswith(".dist-info") or first.endswith(".data") or first in ("..", "bin", "__pycache__"):
            continue
        mod = first[:-3] if first.endswith(".py") else first
        if mod.isidentifier() and not mod.startswith("_") and mod not in names:
            names.append(mod)
    return names[:1] or [normalize(rec["name"]).replace("-", "_")]


PROBE = '''\
import importlib, json, sys

MODULES = {modules!r}
RESULTS = {{}}
for dist, names in MODULES:
    print("compat-probe: importing", dist, flush=True)
    before = set(sys.modules)
    errors = []
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            errors.append(f"{{name}}: {{type(exc).__name__}}: {{exc}}".splitlines()[0][:300])
    if errors:
        for module in set(sys.modules) - before:
            del sys.modules[module]
    RESULTS[dist] = errors


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(RESULTS).encode()]
'''


def probe(bin_, work, installed, names):
    """Imports every installed package in the sandbox, PROBE_BATCH packages per probe
    component; returns dist -> errors."""
    results = {}
    for start in range(0, len(installed), PROBE_BATCH):
        results.update(probe_batch(bin_, work, installed[start : start + PROBE_BATCH], names))
    return results


def probe_batch(bin_, work, installed, names):
    """Builds one component importing each of `installed`; returns dist -> errors."""
    merged = work / "site-packages"
    dropped = {}
    for attempt in range(MAX_PROBE_REBUILDS + 1):
        shutil.rmtree(merged, ignore_errors=True)
        merged.mkdir(parents=True)
        for rec in installed:
            if rec["name"] in dropped:
                continue
            # First one in wins: a shared dependency at two versions keeps the first.
            shutil.copytree(Path(rec["dist_info"]).parent, merged, dirs_exist_ok=True,
                            copy_function=lambda s, d: None if os.path.exists(d) else shutil.copy2(s, d))
        modules = [(r["name"], names[r["name"]]) for r in installed if r["name"] not in dropped]
        app_dir = work / "probe"
        app_dir.mkdir(exist_ok=True)
        (app_dir / "probe.py").write_text(PROBE.format(modules=modules))
        wasm = work / "probe.wasm"
        run = subprocess.run([bin_, "build", "probe:app", "--site-packages", str(merged), "-o", str(wasm)],
                             cwd=app_dir, capture_output=True, text=True)
        if run.returncode == 0:
            results = serve(bin_, wasm)
            for name, why in dropped.items():
                results[name] = [why]
            return results
        out = run.stdout + run.stderr
        last = re.findall(r"compat-probe: importing (\S+)", out)
        if not last or last[-1] in dropped:
            sys.exit("the probe build failed, not on an import:\n" + out[-4000:])
        tail = [l for l in out.splitlines() if l.strip()][-1]
        dropped[last[-1]] = f"importing it stops the sandboxed interpreter: {tail[:300]}"
        print(f"  {last[-1]}: its import broke the probe build; rebuilding without it", file=sys.stderr)
    sys.exit("the probe build kept failing")


def serve(bin_, wasm):
    proc = subprocess.Popen([bin_, "serve", str(wasm), "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    try:
        url = None
        for line in proc.stderr:
            m = re.search(r"Serving HTTP on (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        if not url:
            sys.exit("the probe did not start")
        with urllib.request.urlopen(url, timeout=SERVE_TIMEOUT) as response:
            return json.load(response)
    finally:
        proc.terminate()
        proc.wait()


def table(records, title, list_name):
    rows = []
    totals = {"packages": len(records), "install": 0, "import": 0, "older": 0, "fail": 0}
    gaps = {}
    for r in records:
        ok = r["installs"] and r.get("import_errors") == []
        totals["install"] += r["installs"]
        totals["import"] += ok
        older = r["installs"] and r["newest"] not in (None, "?", r["version"])
        totals["older"] += bool(older)
        totals["fail"] += not ok
        note = ""
        if not r["installs"]:
            note = r["why"]
        elif r.get("import_errors"):
            note = "import fails: " + "; ".join(r["import_errors"])
        elif older:
            note = r["why"]
        if not ok or older:
            b = blocker(note or "")
            if b:
                gaps.setdefault(b, []).append(r["name"])
        note = note.replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {r['name']} | {'yes' if r['installs'] else 'no'} | "
                    f"{'yes' if ok else 'no' if r['installs'] else '-'} | {r['version'] or '-'} | "
                    f"{r['newest'] or '-'} | {note} |")
    out = [f"# {title}", "",
           f"Measured by `scripts/compat/compat.py --list {list_name}` on {datetime.date.today().isoformat()} "
           "(regenerate it with that script; do not edit by hand). \"Installs\": `wsgi-wasm build -r` installs it for "
           "the sandbox (pure-Python wheels, or its sdist built without a compiler). \"Imports\": importing it "
           "inside the sandbox's CPython works. \"Newest\": what native CPython 3.14 on Linux gets for the same "
           "requirement. Packages with required native code (C or Rust extensions) do not run: "
           "[NATIVE-EXTENSIONS.md](NATIVE-EXTENSIONS.md) says what it would take.", "",
           f"**Totals: {totals['packages']} packages; {totals['install']} install, {totals['import']} import, "
           f"{totals['older']} get an older release than native platforms, {totals['fail']} do not work.**", "",
           "| package | installs | imports | sandbox gets | newest | why not / what differs |",
           "|---|---|---|---|---|---|", *rows, ""]
    if gaps:
        out += ["## Common gaps and their fixes", "", "| blocked by native code in | packages | fix |", "|---|---|---|"]
        for b, names in sorted(gaps.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            out.append(f"| {b} | {', '.join(names)} | {FIXES.get(b, 'a pure-Python alternative')} |")
        out.append("")
    return "\n".join(out), totals


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", default=str(ROOT / "scripts/compat/packages.txt"))
    ap.add_argument("--out", default=str(ROOT / "guest-sdk/python/COMPATIBILITY.md"))
    ap.add_argument("--json", help="also write the records as JSON here")
    ap.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    ap.add_argument("--wsgi-wasm", default=os.environ.get("WSGI_WASM", str(ROOT / "target/debug/wsgi-wasm")))
    ap.add_argument("--cache-dir", help="keep installs here between runs [default: a temporary directory]")
    args = ap.parse_args()
    packages = read_list(args.list)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cache = Path(args.cache_dir) if args.cache_dir else work / "cache"
        records = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(install, args.wsgi_wasm, name, cache): name for name, _ in packages}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                records[name] = record(name, *future.result())
                r = records[name]
                print(f"  {name}: {'installed ' + r['version'] if r['installs'] else 'no: ' + r['why']}",
                      file=sys.stderr)
        explicit = dict(packages)
        installed = [records[n] for n, _ in packages if records[n]["installs"]]
        names = {r["name"]: import_names(r, explicit[r["name"]]) for r in installed}
        results = probe(args.wsgi_wasm, work, installed, names) if installed else {}
        for r in installed:
            r["imports"] = names[r["name"]]
            r["import_errors"] = results.get(r["name"], ["not probed"])
        ordered = [records[n] for n, _ in packages]
        list_name = os.path.relpath(args.list, ROOT) if Path(args.list).resolve().is_relative_to(ROOT) else args.list
        text, totals = table(ordered, "Python packages in the wsgi-wasm sandbox", list_name)
        Path(args.out).write_text(text)
        if args.json:
            Path(args.json).write_text(json.dumps(ordered, indent=1))
        print(f"wrote {args.out}: {totals}", file=sys.stderr)


if __name__ == "__main__":
    main()
