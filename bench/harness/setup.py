"""Installs and builds what the benchmark needs; each step is skipped when done."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .config import APPS, BENCH, COMPONENTS, LOGS, REPO, TARGET, TOOLS, VENV, WASMTIME_VERSION, WORK, show


class SetupError(Exception):
    pass


def say(message):
    print(f"==> {message}", flush=True)


def run_logged(cmd, log, cwd=REPO, env=None, what=None):
    """Runs cmd with its output in log; on failure raises with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        status = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    if status != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise SetupError(f"{what or cmd[0]} failed (exit {status}); the end of {log}:\n{tail}")


def ensure_wrk():
    if shutil.which("wrk"):
        return shutil.which("wrk")
    say("apt-get install -y wrk")
    log = LOGS / "apt-wrk.log"
    try:
        run_logged(["apt-get", "install", "-y", "wrk"], log, what="apt-get install wrk")
    except SetupError:
        # A new machine may have no package lists yet.
        run_logged(["apt-get", "update"], LOGS / "apt-update.log", what="apt-get update")
        run_logged(["apt-get", "install", "-y", "wrk"], log, what="apt-get install wrk")
    if not shutil.which("wrk"):
        raise SetupError("wrk is still not on PATH after apt-get install wrk")
    return shutil.which("wrk")


def ensure_taskset():
    if not shutil.which("taskset"):
        raise SetupError("taskset (util-linux) is missing: apt-get install -y util-linux")
    if (os.cpu_count() or 1) < 2:
        raise SetupError("the benchmark pins the server and the load generator to separate CPUs: it needs 2")


def venv_python():
    return VENV / "bin" / "python"


def ensure_venv():
    """target/bench-venv with the native servers, Flask and matplotlib, pinned in
    bench/requirements.txt; rebuilt when that file changes."""
    requirements = BENCH / "requirements.txt"
    stamp = VENV / ".bench-requirements.sha256"
    want = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if venv_python().exists() and stamp.exists() and stamp.read_text().strip() == want:
        return
    say(f"bench venv {show(VENV)} (gunicorn, waitress, granian, flask, matplotlib)")
    run_logged([sys.executable, "-m", "venv", "--clear", str(VENV)], LOGS / "venv.log", what="python3 -m venv")
    run_logged(
        [str(venv_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(requirements)],
        LOGS / "venv-pip.log",
        what="pip install -r bench/requirements.txt",
    )
    stamp.write_text(want + "\n")


def ensure_project_setup():
    """The project's own setup (wasm32-wasip2 target, .venv with componentize-py),
    needed by `wsgi-wasm build` and the Rust guest; run only when something is missing."""
    has_venv = (REPO / ".venv" / "bin" / "componentize-py").exists()
    targets = subprocess.run(["rustup", "target", "list", "--installed"], capture_output=True, text=True).stdout
    if has_venv and "wasm32-wasip2" in targets.split():
        return
    say("scripts/setup (wasm32-wasip2 target, .venv with componentize-py)")
    run_logged([str(REPO / "scripts" / "setup")], LOGS / "project-setup.log", what="scripts/setup")


def ensure_server(profile):
    """Builds the wsgi-wasm binary (cargo decides what is stale) and returns its path."""
    # The workspace builds against the patched wasmtime (host/patches/README.md).
    run_logged([str(REPO / "scripts" / "patch-wasmtime")], LOGS / "patch-wasmtime.log", what="scripts/patch-wasmtime")
    cmd = ["cargo", "build", "--quiet", "-p", "wsgi-wasm"]
    if profile == "release":
        cmd.append("--release")
    say(f"cargo build{' --release' if profile == 'release' else ''} (a first build compiles wasmtime: ~6-10 minutes)")
    run_logged(cmd, LOGS / f"cargo-build-{profile}.log", what="cargo build")
    binary = TARGET / profile / "wsgi-wasm"
    if not binary.exists():
        raise SetupError(f"cargo build succeeded but {binary} is missing")
    return binary


def ensure_in_process_probe(profile):
    """Builds host/examples/isolation_cost (calls a component in-process, no HTTP:
    the cost of the WSGI call and of the instance lifecycle alone) and returns its path."""
    cmd = ["cargo", "build", "--quiet", "-p", "wsgi-wasm", "--example", "isolation_cost"]
    if profile == "release":
        cmd.append("--release")
    say(f"cargo build --example isolation_cost{' --release' if profile == 'release' else ''}")
    run_logged(cmd, LOGS / f"cargo-build-example-{profile}.log", what="cargo build --example isolation_cost")
    probe = TARGET / profile / "examples" / "isolation_cost"
    if not probe.exists():
        raise SetupError(f"cargo build succeeded but {probe} is missing")
    return probe


# What a Python component is built from: when any of it changes, the component is
# rebuilt (the SDK and the build step are compiled into the wsgi-wasm binary).
COMPONENT_INPUTS = ["guest-sdk/python", "guest-sdk/wit", "host/src/commands/build.rs", "host/src/commands/build"]

# name -> (directory the build runs in, MODULE:CALLABLE, extra build arguments)
PYTHON_APPS = {
    "hello": (APPS, "hello:app", []),
    "demo": (REPO / "apps" / "demo", "demo_app:demo_app", []),
    # With --warm-up /, as the README advises for --isolation request: the request
    # isolation rows then measure a Flask app built the way it should be for them.
    # Pooled rows do not change (a pooled instance warms itself within its first
    # requests).
    "flask": (APPS, "flask_hello:app", ["-r", "requirements-flask.txt", "--warm-up", "/"]),
    "stream": (APPS, "stream:app", []),
}


def _tree_digest(paths):
    digest = hashlib.sha256()
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        for path in files:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def ensure_python_components(binary, names):
    """Builds each named Python app into target/bench/components/NAME.wasm with the
    given wsgi-wasm binary, unless its inputs are unchanged since the last build."""
    COMPONENTS.mkdir(parents=True, exist_ok=True)
    componentize = subprocess.run(
        [str(REPO / ".venv" / "bin" / "componentize-py"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    common = [REPO / p for p in COMPONENT_INPUTS if (REPO / p).exists()]
    built = {}
    for name in names:
        cwd, target, extra = PYTHON_APPS[name]
        output = COMPONENTS / f"{name}.wasm"
        stamp = COMPONENTS / f"{name}.inputs.sha256"
        key = hashlib.sha256(
            (_tree_digest(common + [cwd]) + target + " ".join(extra) + componentize).encode()
        ).hexdigest()
        if output.exists() and stamp.exists() and stamp.read_text().strip() == key:
            built[name] = output
            continue
        say(f"wsgi-wasm build {target} -> {show(output)}")
        run_logged(
            [str(binary), "build", target, "-o", str(output), *extra],
            LOGS / f"build-{name}.log",
            cwd=cwd,
            what=f"wsgi-wasm build {target}",
        )
        stamp.write_text(key + "\n")
        built[name] = output
    return built


def ensure_rust_guest():
    say("cargo build -p hello-rust --target wasm32-wasip2 --release")
    run_logged(
        ["cargo", "build", "--quiet", "-p", "hello-rust", "--target", "wasm32-wasip2", "--release"],
        LOGS / "cargo-hello-rust.log",
        what="cargo build -p hello-rust",
    )
    return TARGET / "wasm32-wasip2" / "release" / "hello_rust.wasm"


def ensure_wasi_http_guest():
    """bench/wasi-http-hello: the same hello as a wasi:http component, for `wasmtime serve`."""
    say("cargo build bench/wasi-http-hello (wasi:http twin of hello-rust)")
    target_dir = WORK / "cargo"
    run_logged(
        [
            "cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip2",
            "--manifest-path", str(BENCH / "wasi-http-hello" / "Cargo.toml"),
            "--target-dir", str(target_dir),
        ],
        LOGS / "cargo-wasi-http-hello.log",
        what="cargo build bench/wasi-http-hello",
    )
    return target_dir / "wasm32-wasip2" / "release" / "wasi_http_hello.wasm"


def wasmtime_cli():
    return TOOLS / "bin" / "wasmtime"


def ensure_wasmtime_cli():
    """wasmtime's own CLI, same version as the embedded runtime, for `wasmtime serve`.
    A long compile the first time (~15 minutes on 2 cores); returns None, with a
    message, when it cannot be had, so the rest of the benchmark still runs."""
    binary = wasmtime_cli()
    if binary.exists():
        version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout
        if WASMTIME_VERSION in version:
            return binary
    say(f"cargo install wasmtime-cli {WASMTIME_VERSION} --root {show(TOOLS)} (long: ~15 minutes the first time)")
    try:
        run_logged(
            ["cargo", "install", "--quiet", "wasmtime-cli", "--version", WASMTIME_VERSION, "--locked", "--root", str(TOOLS)],
            LOGS / "cargo-install-wasmtime.log",
            what="cargo install wasmtime-cli",
        )
    except SetupError as err:
        print(f"!! skipping the `wasmtime serve` comparison: {err}", flush=True)
        return None
    return binary


def machine_description():
    model = "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{os.cpu_count()} CPUs (nproc: {_nproc()}), {model}{mem}"


def _nproc():
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def git_revision():
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "host", "guest-sdk"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return rev + (" + uncommitted changes in host/ or guest-sdk/" if dirty else "")


def tool_versions():
    versions = {}
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    versions["wrk"] = (wrk.stdout + wrk.stderr).split("[")[0].replace("wrk", "").strip() or "?"
    if venv_python().exists():
        code = (
            "import importlib.metadata as m, sys\n"
            "print(sys.version.split()[0])\n"
            "for d in ('gunicorn', 'waitress', 'granian', 'flask'): print(m.version(d))\n"
        )
        out = subprocess.run([str(venv_python()), "-c", code], capture_output=True, text=True).stdout.split()
        if len(out) == 5:
            versions.update(zip(["cpython", "gunicorn", "waitress", "granian", "flask"], out))
    return versions
