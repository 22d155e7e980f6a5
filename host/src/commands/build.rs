use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use wsgi_wasm::runtime::cache;

mod deps;
mod downgrades;

/// The ABI and the Python SDK, built into the binary so `build` works from any
/// directory without a checkout of this repository.
const WIT: &str = include_str!("../../guest-sdk/wit/wsgi.wit");
const SDK_FILES: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../guest-sdk/python/wsgi_wasm/__init__.py"),
    ),
    (
        "adapter.py",
        include_str!("../../guest-sdk/python/wsgi_wasm/adapter.py"),
    ),
    (
        "environ.py",
        include_str!("../../guest-sdk/python/wsgi_wasm/environ.py"),
    ),
    ("files.py", include_str!("../../guest-sdk/python/wsgi_wasm/files.py")),
    ("net.py", include_str!("../../guest-sdk/python/wsgi_wasm/net.py")),
    (
        "preload.py",
        include_str!("../../guest-sdk/python/wsgi_wasm/preload.py"),
    ),
    (
        "sqlite_create.py",
        include_str!("../../guest-sdk/python/wsgi_wasm/sqlite_create.py"),
    ),
    (
        "ssl_shim.py",
        include_str!("../../guest-sdk/python/wsgi_wasm/ssl_shim.py"),
    ),
    (
        "streams.py",
        include_str!("../../guest-sdk/python/wsgi_wasm/streams.py"),
    ),
    (
        "validate.py",
        include_str!("../../guest-sdk/python/wsgi_wasm/validate.py"),
    ),
    ("warmup.py", include_str!("../../guest-sdk/python/wsgi_wasm/warmup.py")),
];
/// The module componentize-py is pointed at; it imports the user's app.
const ENTRY_MODULE: &str = "wsgi_wasm_entry";

/// Build a Python WSGI application into a component `wsgi-wasm serve` runs.
///
/// The app's code comes from the current directory and each -p directory; its
/// dependencies from -r requirements files (installed as pure-Python distributions),
/// --venv or --site-packages. Nothing else on the machine is visible to the build.
#[derive(Parser)]
pub struct BuildCommand {
    /// The WSGI callable, as MODULE:NAME (e.g. `app:app`, `myproj.wsgi:application`,
    /// or `app:create_app()` to call a factory).
    target: String,

    /// Output file.
    #[arg(short, long, default_value = "app.wasm")]
    output: PathBuf,

    /// Directory with the app's code (and its templates and static files); repeatable.
    /// The current directory is always included.
    #[arg(short = 'p', long = "python-path")]
    python_path: Vec<PathBuf>,

    /// A requirements file to pip-install (pure-Python distributions for the
    /// sandbox's CPython 3.14) into a build-local directory; repeatable.
    #[arg(short = 'r', long = "requirements")]
    requirements: Vec<PathBuf>,

    /// An existing virtualenv whose site-packages holds the dependencies; repeatable.
    #[arg(long)]
    venv: Vec<PathBuf>,

    /// A site-packages (or `pip install --target`) directory with dependencies; repeatable.
    #[arg(long)]
    site_packages: Vec<PathBuf>,

    /// Extra module to import at build time, for apps that import it lazily
    /// (a lazily imported module is missing at run time); repeatable.
    #[arg(long)]
    preload: Vec<String>,

    /// GET this path (e.g. `/` or `/admin/login/`) from the app 8 times at build time,
    /// so what the framework imports while serving it, and the app's code specialized
    /// by CPython, are in the component; repeatable.
    #[arg(long = "warm-up", value_name = "PATH")]
    warm_up: Vec<String>,

    /// Bundle only these languages' `locale/<lang>/` message catalogues (comma-separated,
    /// e.g. `en,de`) [default: all].
    #[arg(long, value_delimiter = ',')]
    locales: Option<Vec<String>>,

    /// The host Python that runs pip for -r [default: the one beside componentize-py, or python3].
    #[arg(long, env = "WSGI_WASM_PYTHON")]
    python: Option<PathBuf>,

    /// Where installed requirements are cached [default: $XDG_CACHE_HOME/wsgi-wasm or ~/.cache/wsgi-wasm].
    #[arg(long)]
    cache_dir: Option<PathBuf>,

    /// Install requirements afresh instead of reusing the cached install.
    #[arg(long)]
    no_cache: bool,

    /// Fail the build when a -r requirement gets an older release than native platforms
    /// would (because newer releases need native code, e.g. unpinned `pydantic` becoming
    /// 1.10.x since 2.x needs pydantic-core). Without it the build installs the older
    /// release and prints, per package, what was asked, installed, the newest, and why.
    #[arg(long)]
    strict: bool,

    /// The componentize-py executable [default: the one beside wsgi-wasm (as pip
    /// installs them), else found on PATH, in $VIRTUAL_ENV or in this project's .venv].
    #[arg(long, env = "WSGI_WASM_COMPONENTIZE_PY")]
    componentize_py: Option<PathBuf>,
}

impl BuildCommand {
    pub fn execute(self) -> Result<()> {
        let started = Instant::now();
        let (module, attr) = parse_target(&self.target)?;
        for path in &self.warm_up {
            if !path.starts_with('/') {
                bail!("--warm-up {path:?} must be a path starting with '/'");
            }
        }
        for name in &self.preload {
            if !is_dotted_name(name) {
                bail!("--preload {name:?} is not a module name (e.g. email.mime.text)");
            }
        }
        let componentize_py = find_componentize_py(self.componentize_py.as_deref())?;
        // Not fatal: another release may work, but if the build or the app then fails,
        // this line says why.
        if let Some(found) = componentize_py_version(&componentize_py).filter(|v| v != COMPONENTIZE_PY_VERSION) {
            eprintln!(
                "warning: {} is componentize-py {found}, but this wsgi-wasm is made for {COMPONENTIZE_PY_VERSION} \
                 (pip install componentize-py=={COMPONENTIZE_PY_VERSION}); the build or the app may fail",
                componentize_py.display()
            );
        }
        let work = tempfile::tempdir().context("cannot create a temporary build directory")?;
        let wit_dir = work.path().join("wit");
        let sdk_dir = work.path().join("sdk");
        let entry_dir = work.path().join("entry");
        std::fs::create_dir_all(&wit_dir)?;
        std::fs::create_dir_all(sdk_dir.join("wsgi_wasm"))?;
        std::fs::create_dir_all(&entry_dir)?;
        std::fs::write(wit_dir.join("wsgi.wit"), WIT)?;
        for (name, text) in SDK_FILES {
            std::fs::write(sdk_dir.join("wsgi_wasm").join(name), text)?;
        }

        // The app's own directories: their files are bundled whole.
        let mut app_dirs: Vec<PathBuf> = Vec::new();
        for dir in self.python_path.iter().chain([&PathBuf::from(".")]) {
            if !dir.is_dir() {
                bail!("--python-path {} is not a directory", dir.display());
            }
            push_unique(&mut app_dirs, dir)?;
        }
        let cwd_index = app_dirs
            .iter()
            .position(|d| Some(d) == Path::new(".").canonicalize().ok().as_ref())
            .unwrap_or(0);
        // Dependencies: only the packages the app imports end up in the component.
        let mut dep_dirs: Vec<PathBuf> = Vec::new();
        if !self.requirements.is_empty() {
            let python = deps::find_python(self.python.as_deref(), &componentize_py);
            let cache = if self.no_cache {
                None
            } else {
                self.cache_dir
                    .clone()
                    .or_else(cache::default_dir)
                    .map(|d| d.join("deps"))
            };
            let installer = deps::Installer {
                python: &python,
                cache,
                scratch: work.path(),
                strict: self.strict,
            };
            let site = installer.install(&self.requirements)?;
            push_unique(&mut dep_dirs, &site)?;
        }
        for venv in &self.venv {
            push_unique(&mut dep_dirs, &deps::venv_site_packages(venv)?)?;
        }
        for dir in &self.site_packages {
            if !dir.is_dir() {
                bail!("--site-packages {} is not a directory", dir.display());
            }
            push_unique(&mut dep_dirs, dir)?;
        }
        dep_dirs.retain(|d| !app_dirs.contains(d));

        // componentize-py mounts its -p directories in the guest as /0, /1, ... in
        // order: entry, SDK, app directories, dependency directories.
        let mount = |i: usize| format!("/{i}");
        let first_app = 2;
        let first_dep = first_app + app_dirs.len();
        let layout = Layout {
            app_mounts: (first_app..first_dep).map(mount).collect(),
            dep_mounts: (first_dep..first_dep + dep_dirs.len()).map(mount).collect(),
            report: format!("{}/{REPORT_FILE}", mount(0)),
            locales: self.locales.clone(),
            cwd_mount: mount(first_app + cwd_index),
            labels: (first_app..)
                .map(mount)
                .zip(app_dirs.iter().chain(&dep_dirs).map(|d| d.display().to_string()))
                .collect(),
        };
        std::fs::write(
            entry_dir.join(format!("{ENTRY_MODULE}.py")),
            entry_source(module, attr, &self.preload, &self.warm_up, &layout),
        )?;

        // componentize-py adds the site-packages of $VIRTUAL_ENV (or of the python3
        // on PATH) to the app's path. Point it at an empty environment instead, so
        // only what this command was given is visible to the app.
        let empty_env = work.path().join("no-venv");
        std::fs::create_dir_all(empty_env.join("lib/site-packages"))?;

        let mut cmd = Command::new(&componentize_py);
        cmd.arg("-d").arg(&wit_dir).args(["-w", "wsgi-app", "componentize"]);
        cmd.arg("-p").arg(&entry_dir).arg("-p").arg(&sdk_dir);
        for dir in app_dirs.iter().chain(&dep_dirs) {
            cmd.arg("-p").arg(dir);
        }
        cmd.arg(ENTRY_MODULE).arg("-o").arg(&self.output);
        cmd.env("VIRTUAL_ENV", &empty_env)
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME");
        // Its errors carry the guest's traceback; a Rust backtrace would bury it.
        cmd.env("RUST_BACKTRACE", "0").env("RUST_LIB_BACKTRACE", "0");
        cmd.stdout(Stdio::null());

        eprintln!(
            "Componentizing {} (importing the app in CPython {} for WASI, then snapshotting it)...",
            self.target,
            deps::TARGET_PYTHON
        );
        let snapshot_started = Instant::now();
        let status = cmd
            .status()
            .with_context(|| format!("cannot run {}", componentize_py.display()))?;
        if !status.success() {
            bail!(
                "componentize-py failed ({status}) building {}; its output above names the problem \
                 (a ModuleNotFoundError means a dependency is missing: add it to -r requirements.txt, \
                 --venv, --site-packages or -p)",
                self.target
            );
        }
        eprintln!("    done in {:.1}s", snapshot_started.elapsed().as_secs_f64());
        if let Ok(report) = std::fs::read_to_string(entry_dir.join(REPORT_FILE)) {
            print_report(&report);
        }
        let size = std::fs::metadata(&self.output).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "Built {} ({:.1} MiB) in {:.1}s",
            self.output.display(),
            size as f64 / (1024.0 * 1024.0),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// Where the guest-side build steps find things, in guest paths.
struct Layout {
    app_mounts: Vec<String>,
    dep_mounts: Vec<String>,
    /// A file the entry module writes at build time (preload misses, bundled files).
    report: String,
    locales: Option<Vec<String>>,
    /// Mount -> host directory, for the guest's messages.
    labels: Vec<(String, String)>,
    /// Where the current directory is mounted: the app's working directory in the
    /// sandbox, as it would be when started from there natively.
    cwd_mount: String,
}

/// Written by the entry module at build time, read back by this command.
const REPORT_FILE: &str = "wsgi_wasm_build_report.txt";

/// Adds `dir` (canonicalized, so `.` and its absolute path count once).
fn push_unique(dirs: &mut Vec<PathBuf>, dir: &Path) -> Result<()> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot use {}", dir.display()))?;
    if !dirs.contains(&dir) {
        dirs.push(dir);
    }
    Ok(())
}

/// The report's lines are `files N`, `bytes N`, `skipped TEXT`, `note TEXT`.
fn print_report(report: &str) {
    let mut files = 0u64;
    let mut bytes = 0u64;
    for line in report.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "files" => files = value.parse().unwrap_or(0),
            "bytes" => bytes = value.parse().unwrap_or(0),
            "note" => eprintln!("    note: {value}"),
            "warm-up" => eprintln!("    warm-up {value}"),
            _ => {}
        }
    }
    eprintln!(
        "    bundled {files} data files ({:.1} MiB: templates, static files, package data) for reads at run time",
        bytes as f64 / (1024.0 * 1024.0)
    );
}

/// "pkg.mod:obj.attr" or "pkg.mod:factory()" -> ("pkg.mod", "obj.attr" / "factory()").
fn parse_target(target: &str) -> Result<(&str, &str)> {
    let Some((module, attr)) = target.split_once(':') else {
        bail!("{target:?} should be MODULE:CALLABLE, e.g. app:app");
    };
    let ident = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
    };
    let callee = attr.strip_suffix("()").unwrap_or(attr);
    if !ident(module) || !ident(callee) {
        bail!("{target:?} should be MODULE:CALLABLE with dotted Python names, e.g. myproj.wsgi:application");
    }
    Ok((module, attr))
}

fn is_dotted_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|p| {
            !p.is_empty()
                && !p.starts_with(|c: char| c.is_ascii_digit())
                && p.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
}

/// A Python string literal for `s` (paths and module names in the entry module).
fn py_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn py_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| py_str(s)).collect::<Vec<_>>().join(", "))
}

fn entry_source(module: &str, attr: &str, preload: &[String], warm_up: &[String], layout: &Layout) -> String {
    let mut src = String::from("# Generated by `wsgi-wasm build`: the component's entry module.\n");
    src.push_str("import wsgi_wasm.preload as _preload  # the stdlib modules frameworks import lazily\n");
    for extra in preload {
        src.push_str(&format!("import {extra}  # noqa: F401  (--preload)\n"));
    }
    let (path, call) = match attr.strip_suffix("()") {
        Some(factory) => (factory, "()"),
        None => (attr, ""),
    };
    // Relative paths (Bottle's default ./views/, open("data.json")) resolve against
    // the app's directory at build time and, since libc's idea of the working
    // directory is part of the snapshot, at run time too.
    src.push_str(&format!("import os as _os\n_os.chdir({})\n", py_str(&layout.cwd_mount)));
    src.push_str(&format!("import {module} as _module\n"));
    src.push_str("from wsgi_wasm import export, files as _files\n");
    src.push_str(&format!("_application = _module.{path}{call}\n"));
    src.push_str("_preload.frameworks()\n");
    src.push_str("from wsgi_wasm import warmup as _warmup\n");
    src.push_str(&format!(
        "_warmed = [(_p, _warmup.request(_application, _p)) for _p in {}]\n",
        py_list(warm_up)
    ));
    // The SDK's own request path, warmed up for every app (see warmup.sdk_path).
    src.push_str("_warmup.sdk_path()\n");
    let locales = match &layout.locales {
        Some(list) => py_list(list),
        None => "None".to_owned(),
    };
    let labels: Vec<String> = layout
        .labels
        .iter()
        .map(|(mount, dir)| format!("{}: {}", py_str(mount), py_str(dir)))
        .collect();
    src.push_str(&format!(
        "_report = _files.snapshot(app_dirs={}, dep_dirs={}, locales={locales}, labels={{{}}})\n",
        py_list(&layout.app_mounts),
        py_list(&layout.dep_mounts),
        labels.join(", ")
    ));
    src.push_str(&format!("with open({}, \"w\") as _f:\n", py_str(&layout.report)));
    src.push_str("    _f.write(f\"files {_report['files']}\\nbytes {_report['bytes']}\\n\")\n");
    src.push_str("    for _path, _size in _report['skipped_large']:\n");
    src.push_str("        _f.write(f\"note left out {_path} ({_size} bytes): too large to bundle\\n\")\n");
    src.push_str("    for _p, _status in _warmed:\n");
    src.push_str("        _f.write(f\"warm-up GET {_p}: {_status}\\n\")\n");
    src.push_str("    for _line in _preload.missing():\n");
    src.push_str("        _f.write(f\"note not preloaded: {_line}\\n\")\n");
    src.push_str("_preload.seal()\n");
    src.push_str("WitWorld = export(_application)\n");
    src
}

/// The componentize-py release this binary's SDK and build steps are made for: the
/// wheel depends on exactly this version (host/pyproject.toml, also read by
/// scripts/setup), and `wsgi-wasm --version` names it.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// What `componentize-py --version` says (`componentize-py 0.25.1`), if it runs and says that.
fn componentize_py_version(path: &Path) -> Option<String> {
    let output = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().strip_prefix("componentize-py ")?.to_owned())
}

/// componentize-py without asking the user to activate a virtualenv.
fn find_componentize_py(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let exe = std::env::current_exe().ok();
    let mut candidates: Vec<PathBuf> = Vec::new();
    // Beside this binary first: `pip install wsgi-wasm` puts both in the same bin/
    // (the pinned version), which must win over whatever else is on PATH, and works
    // when the virtualenv is not activated (`venv/bin/wsgi-wasm build ...`).
    if let Some(bin) = exe.as_deref().and_then(Path::parent) {
        candidates.push(bin.join("componentize-py"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("componentize-py")));
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        candidates.push(PathBuf::from(venv).join("bin/componentize-py"));
    }
    // The project's own .venv (made by the README's setup command), found from the
    // binary's location (target/<profile>/wsgi-wasm) or from where it was built.
    if let Some(exe) = &exe {
        for dir in exe.ancestors().skip(1).take(4) {
            candidates.push(dir.join(".venv/bin/componentize-py"));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/componentize-py"));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow::anyhow!(
            "componentize-py not found beside wsgi-wasm, on PATH, in $VIRTUAL_ENV or in this project's .venv; \
             install it with `pip install componentize-py=={COMPONENTIZE_PY_VERSION}` (into the virtualenv \
             wsgi-wasm runs from, or one you activate) or pass --componentize-py PATH"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_module_colon_callable() {
        assert_eq!(parse_target("app:app").unwrap(), ("app", "app"));
        assert_eq!(
            parse_target("mysite.wsgi:application").unwrap(),
            ("mysite.wsgi", "application")
        );
        assert_eq!(parse_target("app:create_app()").unwrap(), ("app", "create_app()"));
        assert!(parse_target("app").is_err());
        assert!(parse_target("app:").is_err());
        assert!(parse_target("my-app:app").is_err());
    }

    #[test]
    fn python_literals_escape_what_python_would_misread() {
        assert_eq!(py_str("/2"), "\"/2\"");
        assert_eq!(py_str("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(py_str("x\ny"), "\"x\\U0000000ay\"");
        assert_eq!(py_str("été"), "\"été\"");
        assert_eq!(py_list(&["/2".into(), "/3".into()]), "[\"/2\", \"/3\"]");
    }

    #[test]
    fn entry_module_preloads_then_imports_then_snapshots_then_seals() {
        let layout = Layout {
            app_mounts: vec!["/2".into()],
            dep_mounts: vec!["/3".into()],
            report: "/0/report.txt".into(),
            locales: Some(vec!["en".into()]),
            labels: vec![("/2".into(), "/home/me/app".into())],
            cwd_mount: "/2".into(),
        };
        let src = entry_source(
            "mysite.wsgi",
            "application",
            &["colorsys".into()],
            &["/".into()],
            &layout,
        );
        let order = [
            "import wsgi_wasm.preload",
            "import colorsys",
            "_os.chdir(\"/2\")",
            "import mysite.wsgi as _module",
            "_application = _module.application\n",
            "_preload.frameworks()",
            "_warmup.request(_application, _p)) for _p in [\"/\"]",
            "_warmup.sdk_path()",
            "_files.snapshot(app_dirs=[\"/2\"], dep_dirs=[\"/3\"], locales=[\"en\"], labels={\"/2\": \"/home/me/app\"})",
            "_preload.seal()",
            "WitWorld = export(_application)",
        ];
        let mut at = 0;
        for needle in order {
            let found = src[at..]
                .find(needle)
                .unwrap_or_else(|| panic!("{needle:?} missing or out of order in:\n{src}"));
            at += found + needle.len();
        }
        let factory = entry_source("app", "create_app()", &[], &[], &layout);
        assert!(factory.contains("_application = _module.create_app()\n"), "{factory}");
    }

    #[test]
    fn the_wheel_depends_on_the_componentize_py_this_binary_expects() {
        let pyproject = include_str!("../../pyproject.toml");
        let pins: Vec<&str> = pyproject
            .lines()
            .filter_map(|l| l.split("\"componentize-py==").nth(1))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert_eq!(pins, [COMPONENTIZE_PY_VERSION], "host/pyproject.toml:\n{pyproject}");
    }

    #[test]
    fn every_file_of_the_python_sdk_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("guest-sdk/python/wsgi_wasm");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".py"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = SDK_FILES.iter().map(|(name, _)| name.to_string()).collect();
        embedded.sort();
        assert_eq!(
            embedded,
            on_disk,
            "SDK_FILES must list every module of {}",
            dir.display()
        );
    }
}
