//! `-r requirements.txt`: the app's dependencies, installed for the sandbox's Python.
//!
//! The sandbox runs CPython 3.14 built for WASI, which can load no native code: only
//! pure-Python distributions work. pip is asked for exactly those (wheels tagged
//! `py3-none-any`, whatever the machine running the build is). A distribution that
//! publishes only platform wheels and an sdist is built from its sdist with the C and
//! Rust compilers disabled: packages whose extension is optional (MarkupSafe, PyYAML...)
//! fall back to their pure-Python code; the others fail, and the build names them.
//!
//! When pip settles for an older release than native platforms get (newer ones need
//! native code), the build says so, per package (see `downgrades`); `--strict` fails.
//!
//! Installed trees are cached under the cache directory, keyed by the requirements
//! files' contents, so rebuilding an app does not reinstall its dependencies (nor
//! asks pip again about newer releases: the answer is kept with the tree).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::downgrades::{self, CHECK_FILE, Check};

/// The Python inside the component: what pip must pick distributions for.
pub const TARGET_PYTHON: &str = "3.14";
/// Distributions built from sdists in one install; past this, something is looping.
const MAX_SDIST_BUILDS: usize = 32;
/// Bumped when the layout or the pip options change, so old cache entries are not reused.
const CACHE_FORMAT: &str = "wsgi-wasm deps v4";

pub struct Installer<'a> {
    /// The host Python that runs pip.
    pub python: &'a Path,
    /// `<cache>/deps`; None installs into `scratch` (thrown away after the build).
    pub cache: Option<PathBuf>,
    pub scratch: &'a Path,
    /// Fail, rather than warn, when a package is older than native platforms get.
    pub strict: bool,
}

impl Installer<'_> {
    /// Installs the requirements; returns the site-packages-like directory.
    pub fn install(&self, requirements: &[PathBuf]) -> Result<PathBuf> {
        let mut key = Sha256::new();
        key.update(CACHE_FORMAT);
        key.update(TARGET_PYTHON);
        for file in requirements {
            let text =
                std::fs::read(file).with_context(|| format!("cannot read requirements file {}", file.display()))?;
            key.update(&text);
            key.update([0]);
        }
        let key: String = key.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
        let names = requirements
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");

        let Some(cache) = &self.cache else {
            let dir = self.scratch.join("deps");
            eprintln!(
                "Installing dependencies from {names} (pure-Python distributions for CPython {TARGET_PYTHON}/WASI)..."
            );
            self.install_into(requirements, &dir)?.report(self.strict)?;
            return Ok(dir.join("site-packages"));
        };
        let done = cache.join(&key);
        if done.join("site-packages").is_dir() {
            eprintln!("Dependencies from {names}: cached ({})", done.display());
            let check = std::fs::read_to_string(done.join(CHECK_FILE))
                .ok()
                .and_then(|text| Check::from_json(&text))
                .unwrap_or_else(|| Check::Failed(format!("{CHECK_FILE} is missing from the cache entry")));
            check.report(self.strict)?;
            return Ok(done.join("site-packages"));
        }
        std::fs::create_dir_all(cache)
            .with_context(|| format!("cannot create the cache directory {}", cache.display()))?;
        let partial = cache.join(format!("{key}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        eprintln!(
            "Installing dependencies from {names} (pure-Python distributions for CPython {TARGET_PYTHON}/WASI)..."
        );
        let check = match self.install_into(requirements, &partial) {
            Ok(check) => check,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(e);
            }
        };
        std::fs::write(partial.join(CHECK_FILE), check.to_json())?;
        // Another build may have finished the same key meanwhile: either copy is good.
        if std::fs::rename(&partial, &done).is_err() {
            let _ = std::fs::remove_dir_all(&partial);
            if !done.join("site-packages").is_dir() {
                bail!("cannot move the installed dependencies into {}", done.display());
            }
        }
        eprintln!("    cached in {}", done.display());
        // After caching: under --strict a rebuild fails the same way, without pip.
        check.report(self.strict)?;
        Ok(done.join("site-packages"))
    }

    fn install_into(&self, requirements: &[PathBuf], dir: &Path) -> Result<Check> {
        let started = Instant::now();
        let site = dir.join("site-packages");
        let wheels = dir.join("wheels");
        std::fs::create_dir_all(&wheels)?;
        // Normalised names of the distributions already tried from their sdists.
        let mut built = BTreeSet::new();
        loop {
            self.install_pure(requirements, &site, &wheels, dir, &mut built)?;
            eprintln!("    installed in {:.1}s", started.elapsed().as_secs_f64());
            let checked = Instant::now();
            let native = match self.resolve(false, &requirement_args(requirements), &wheels, dir) {
                Ok(native) => native,
                Err(e) => return Ok(Check::Failed(format!("{e:#}"))),
            };
            let installed = downgrades::installed_versions(&site)?;
            eprintln!(
                "    compared with the newest releases for native platforms in {:.1}s",
                checked.elapsed().as_secs_f64()
            );
            // An older release installed because a newer one needs a native
            // distribution whose sdist may still build pure: try each such sdist
            // once, and install again if one did.
            let mut more = false;
            for blocker in downgrades::native_blockers(&native, &installed) {
                let name = distribution_name(&blocker);
                if !built.insert(downgrades::normalize(&name)) || built.len() > MAX_SDIST_BUILDS {
                    continue;
                }
                eprintln!(
                    "    {blocker}: needed by a newer release than installed; building it from its sdist without a C compiler..."
                );
                match self.build_pure_wheel(&blocker, &name, &wheels, dir) {
                    Ok(()) => more = true,
                    Err(_) => eprintln!("    {blocker}: no pure-Python build (native code only)"),
                }
            }
            if !more {
                return Ok(Check::Done(downgrades::find(
                    &native,
                    &installed,
                    &downgrades::requirement_lines(requirements),
                )));
            }
        }
    }

    /// pip installs the requirements as pure-Python wheels into `site`; each
    /// distribution it cannot find that way is built from its sdist without a
    /// compiler, and pip runs again.
    fn install_pure(
        &self,
        requirements: &[PathBuf],
        site: &Path,
        wheels: &Path,
        dir: &Path,
        built: &mut BTreeSet<String>,
    ) -> Result<()> {
        loop {
            let _ = std::fs::remove_dir_all(site);
            let mut cmd = self.pip_for_target();
            cmd.arg("install")
                .arg("--target")
                .arg(site)
                // Pure-Python wheels only: never a wheel with native code for the
                // machine running the build, and no sdist built with its compiler.
                .args([
                    "--only-binary=:all:",
                    "--platform",
                    "any",
                    "--implementation",
                    "py",
                    "--abi",
                    "none",
                ])
                .args(["--python-version", TARGET_PYTHON])
                .args(["--no-compile", "--no-warn-script-location", "--progress-bar", "off"])
                .arg("--find-links")
                .arg(wheels);
            for file in requirements {
                cmd.arg("-r").arg(file);
            }
            let (ok, stderr, stdout) = run_showing_progress(cmd)?;
            if ok {
                return Ok(());
            }
            // Unpinned, pip backtracks through every release before giving up with
            // ResolutionImpossible (`Jinja2` over MarkupSafe, `pydantic>=2` over
            // pydantic-core) rather than naming the missing distribution.
            let conflict = native_conflict(&format!("{stdout}{stderr}"));
            let missing = missing_distribution(&stderr).or_else(|| conflict.as_ref().map(|c| c.requirement.clone()));
            let Some(requirement) = missing else {
                bail!("pip could not install the requirements:\n{}", stderr.trim_end());
            };
            let name = distribution_name(&requirement);
            if !built.insert(downgrades::normalize(&name)) || built.len() > MAX_SDIST_BUILDS {
                bail!(
                    "pip could not install the requirements ({name} is still missing):\n{}",
                    stderr.trim_end()
                );
            }
            eprintln!("    {name}: no pure-Python wheel; building it from its sdist without a C compiler...");
            if let Err(e) = self.build_pure_wheel(&requirement, &name, wheels, dir) {
                if let Some(conflict) = conflict {
                    return Err(self.explain_conflict(requirements, &conflict, wheels, dir));
                }
                return Err(self.explain_unmet(requirements, &stderr, &requirement, wheels, dir, e));
            }
        }
    }

    /// A dry-run resolve with pip's `--report`: `pure` as for the sandbox, else for
    /// native CPython 3.14 on this machine's platform (native wheels allowed).
    fn resolve(&self, pure: bool, args: &[OsString], wheels: &Path, dir: &Path) -> Result<Vec<downgrades::Resolved>> {
        let report = dir.join("resolve-report.json");
        let _ = std::fs::remove_file(&report);
        let mut cmd = self.pip_for_target();
        cmd.args([
            "install",
            "--dry-run",
            "--quiet",
            "--ignore-installed",
            "--only-binary=:all:",
        ])
        .args(["--python-version", TARGET_PYTHON])
        // pip allows --python-version only with --target; nothing is written there.
        .arg("--target")
        .arg(dir.join("resolve-target"))
        .arg("--report")
        .arg(&report)
        // The wheels built from sdists above are the newest of their packages too.
        .arg("--find-links")
        .arg(wheels)
        .args(args);
        if pure {
            cmd.args(["--platform", "any", "--implementation", "py", "--abi", "none"]);
        }
        let output = cmd
            .output()
            .with_context(|| format!("cannot run {}", self.python.display()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| l.starts_with("ERROR"))
                .unwrap_or("pip failed");
            bail!("{}", last.trim_start_matches("ERROR: "));
        }
        downgrades::parse_report(&std::fs::read_to_string(&report)?)
    }

    /// `pydantic==2.10.0` needs pydantic-core, which has no pure-Python release: the
    /// error names the requirement, the native dependency, and the newest release of
    /// the requirement that does install here.
    fn explain_unmet(
        &self,
        requirements: &[PathBuf],
        stderr: &str,
        missing: &str,
        wheels: &Path,
        dir: &Path,
        error: anyhow::Error,
    ) -> anyhow::Error {
        let missing_name = distribution_name(missing);
        let parent = requiring_package(stderr, missing);
        let wanted = parent.as_deref().unwrap_or(&missing_name);
        let newest = self.newest_pure_release(wanted, wheels, dir);
        let Some(parent) = parent else {
            return anyhow::anyhow!("{error:#}. {newest}");
        };
        let asked = downgrades::requirement_lines(requirements)
            .get(&downgrades::normalize(&parent))
            .cloned()
            .unwrap_or_else(|| parent.clone());
        anyhow::anyhow!(
            "{asked} cannot be installed for the sandbox: {parent} needs {missing}, and {error:#}. {newest}"
        )
    }

    /// The sentence naming the newest release of `wanted` that installs for the
    /// sandbox (to pin), or saying that none does.
    fn newest_pure_release(&self, wanted: &str, wheels: &Path, dir: &Path) -> String {
        let found = self.resolve(true, &[OsString::from(wanted)], wheels, dir).ok();
        match found.and_then(|found| found.into_iter().find(|r| r.key == downgrades::normalize(wanted))) {
            Some(r) => format!(
                "The newest {wanted} that runs in the sandbox is {} (pin {wanted}=={}), an older release: \
                 check that it suits the app",
                r.version, r.version
            ),
            None => format!("pip finds no release of {wanted} that installs as pure Python"),
        }
    }

    /// `pydantic>=2`: pip backtracked through every 2.x, each pinning a pydantic-core
    /// the sandbox cannot install, and gave up with ResolutionImpossible. If that
    /// dependency has no pure-Python release at all, say so, with the newest release
    /// of the requirement that does install here.
    fn explain_conflict(
        &self,
        requirements: &[PathBuf],
        conflict: &Conflict,
        wheels: &Path,
        dir: &Path,
    ) -> anyhow::Error {
        let raw = || {
            anyhow::anyhow!(
                "pip could not install the requirements:\n{}",
                conflict.stderr.trim_end()
            )
        };
        // A real version conflict between two pure packages is pip's to explain.
        if self
            .resolve(true, &[OsString::from(&conflict.requirement)], wheels, dir)
            .is_ok()
        {
            return raw();
        }
        let asked = downgrades::requirement_lines(requirements)
            .get(&downgrades::normalize(&conflict.package))
            .cloned()
            .unwrap_or_else(|| conflict.package.clone());
        let wanted = &conflict.package;
        let newest = self.newest_pure_release(wanted, wheels, dir);
        anyhow::anyhow!(
            "{asked} cannot be installed for the sandbox: every release it allows needs {}, which has no \
             pure-Python release ({}); the sandbox's CPython loads only Python code. {newest}",
            conflict.dependency,
            conflict.example
        )
    }

    /// Builds `requirement` from its sdist with compilers disabled; succeeds only
    /// if that gives a pure-Python wheel.
    fn build_pure_wheel(&self, requirement: &str, name: &str, wheels: &Path, dir: &Path) -> Result<()> {
        let out = dir.join("sdist-build");
        let _ = std::fs::remove_dir_all(&out);
        let mut cmd = self.pip();
        cmd.args([
            "wheel",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--ignore-requires-python",
            "--progress-bar",
            "off",
        ])
        // A wheel cached by an earlier build on this machine may hold native code.
        .arg("--no-cache-dir")
        .arg("--wheel-dir")
        .arg(&out)
        .arg(requirement)
        // setuptools (and most build backends) use these: a package whose
        // extension is optional catches the failed compile and goes pure.
        .env("CC", "false")
        .env("CXX", "false")
        .env("LDSHARED", "false")
        // Rust extensions (maturin, setuptools-rust) run cargo, which runs $RUSTC:
        // without this, a pydantic-core sdist compiled maturin and then itself
        // natively for minutes (over 2 minutes here before we stopped it) only to be
        // refused for its .so; with it the build fails in ~15 s.
        .env("RUSTC", "false")
        // The zope.* packages' own switch for skipping their C optimisations.
        .env("PURE_PYTHON", "1")
        .stdout(Stdio::piped());
        let output = cmd
            .output()
            .with_context(|| format!("cannot run {}", self.python.display()))?;
        let native = || {
            anyhow::anyhow!(
                "{name} cannot run in the sandbox: it has native code (a C/Rust extension) and no \
                 pure-Python wheel or fallback; the sandbox's CPython loads only Python code. \
                 Remove it from the requirements or use a pure-Python alternative"
            )
        };
        if !output.status.success() {
            let log = String::from_utf8_lossy(&output.stderr);
            if log.contains("No matching distribution") || log.contains("Could not find a version") {
                bail!("{name}: no distribution found for {requirement}:\n{}", log.trim_end());
            }
            return Err(native());
        }
        let Some(wheel) = std::fs::read_dir(&out)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
        else {
            return Err(native());
        };
        // A package whose optional extension failed to compile still gets a wheel
        // tagged for this machine (setuptools tags by what it meant to build). If it
        // holds no native code it is pure in fact: retag it py3-none-any.
        let retag = Command::new(self.python)
            .arg("-c")
            .arg(RETAG_PY)
            .arg(&wheel)
            .arg(wheels)
            .output()
            .with_context(|| format!("cannot run {}", self.python.display()))?;
        match retag.status.code() {
            Some(0) => {}
            Some(3) => return Err(native()),
            _ => bail!(
                "cannot inspect the wheel built for {name}: {}",
                String::from_utf8_lossy(&retag.stderr).trim_end()
            ),
        }
        let _ = std::fs::remove_dir_all(&out);
        eprintln!("    built {}", String::from_utf8_lossy(&retag.stdout).trim());
        Ok(())
    }

    /// pip evaluating environment markers (`legacy-cgi; python_version >= "3.13"`)
    /// for the sandbox's Python rather than for the one running it: pip itself uses
    /// the running interpreter's values even with --python-version.
    fn pip_for_target(&self) -> Command {
        let mut cmd = Command::new(self.python);
        cmd.arg("-c").arg(PIP_FOR_TARGET_PY).arg("--disable-pip-version-check");
        cmd.env("PIP_ROOT_USER_ACTION", "ignore");
        cmd
    }

    fn pip(&self) -> Command {
        let mut cmd = Command::new(self.python);
        cmd.args(["-m", "pip", "--disable-pip-version-check"]);
        // pip as root warns about it at every run; the target is a private directory.
        cmd.env("PIP_ROOT_USER_ACTION", "ignore");
        cmd
    }
}

/// Runs pip with the PEP 508 marker environment of CPython 3.14 on WASI.
const PIP_FOR_TARGET_PY: &str = r#"
import sys
try:
    from pip._vendor.packaging import markers
    _default = markers.default_environment
    def default_environment():
        env = _default()
        env.update(
            python_version="3.14", python_full_version="3.14.0", implementation_name="cpython",
            implementation_version="3.14.0", platform_python_implementation="CPython",
            sys_platform="wasi", platform_system="WASI", platform_machine="wasm32", os_name="posix",
            platform_release="", platform_version="",
        )
        return env
    markers.default_environment = default_environment
except Exception as e:
    print(f"warning: environment markers are evaluated for this machine's Python ({e})", file=sys.stderr)
from pip._internal.cli.main import main
sys.exit(main(sys.argv[1:]))
"#;

/// Copies a built wheel into the wheel directory as a py3-none-any wheel, or exits
/// with 3 if it contains native code. Prints the new file name.
const RETAG_PY: &str = r#"
import base64, hashlib, os, sys, zipfile
src, dest_dir = sys.argv[1], sys.argv[2]
NATIVE = (".so", ".pyd", ".dylib", ".dll")
with zipfile.ZipFile(src) as z:
    names = z.namelist()
    if any(n.endswith(NATIVE) or ".so." in n for n in names):
        sys.exit(3)
    dist, version = os.path.basename(src).split("-")[:2]
    info = f"{dist}-{version}.dist-info/"
    out_name = f"{dist}-{version}-py3-none-any.whl"
    records = []
    with zipfile.ZipFile(os.path.join(dest_dir, out_name), "w", zipfile.ZIP_DEFLATED) as out:
        for n in names:
            if n == info + "RECORD":
                continue
            data = z.read(n)
            target = n.replace(f"{dist}-{version}.data/platlib/", "").replace(f"{dist}-{version}.data/purelib/", "")
            if n == info + "WHEEL":
                lines = [l for l in data.decode().splitlines() if not l.startswith(("Tag:", "Root-Is-Purelib:"))]
                data = ("\n".join(lines + ["Root-Is-Purelib: true", "Tag: py3-none-any"]) + "\n").encode()
            out.writestr(target, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{target},sha256={digest},{len(data)}")
        records.append(info + "RECORD,,")
        out.writestr(info + "RECORD", "\n".join(records) + "\n")
print(out_name)
"#;

/// Runs pip, echoing the lines that show progress ("Collecting flask", ...), and
/// returns whether it succeeded, its stderr (its errors) and its stdout (where pip
/// explains a ResolutionImpossible: "The conflict is caused by: ...").
fn run_showing_progress(mut cmd: Command) -> Result<(bool, String, String)> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .context("cannot run pip (is `python3 -m pip` available? see --python)")?;
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let mut output = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line.starts_with("Collecting") || line.starts_with("Successfully installed") {
            eprintln!("    {}", line.trim_end());
        }
        output.push_str(&line);
        output.push('\n');
    }
    let status = child.wait()?;
    let stderr = errors.join().unwrap_or_default();
    Ok((status.success(), stderr, output))
}

/// "ERROR: No matching distribution found for MarkupSafe>=2.0" -> "MarkupSafe>=2.0".
fn missing_distribution(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .rev()
        .find_map(|l| {
            l.split_once("No matching distribution found for ")
                .map(|(_, r)| r.trim().to_owned())
        })
        .filter(|r| !r.is_empty())
}

/// What pip's ResolutionImpossible report blames: one package whose every allowed
/// release depends on (some version of) one other distribution.
#[derive(Debug, PartialEq)]
struct Conflict {
    package: String,
    dependency: String,
    /// What the newest release of `package` asks of it (`MarkupSafe>=2.0`).
    requirement: String,
    /// The first "pydantic 2.14.4 depends on pydantic-core==2.50.5" line, as pip wrote it.
    example: String,
    /// pip's explanation, from "The conflict is caused by:" on.
    stderr: String,
}

/// Reads "The conflict is caused by:" and the "X 1.0 depends on Y==2" lines after it;
/// None unless every line names the same X and Y.
fn native_conflict(stderr: &str) -> Option<Conflict> {
    let (_, causes) = stderr.split_once("The conflict is caused by:")?;
    let mut found: Option<Conflict> = None;
    // The first "line" is the rest of the header line.
    for line in causes.lines().skip(1).map(str::trim).take_while(|l| !l.is_empty()) {
        let (left, right) = line.split_once(" depends on ")?;
        let package = left.split(' ').next()?.to_owned();
        let dependency = distribution_name(right);
        match &found {
            None => {
                found = Some(Conflict {
                    package,
                    dependency,
                    requirement: right.trim().to_owned(),
                    example: line.to_owned(),
                    stderr: format!("The conflict is caused by:{causes}"),
                })
            }
            Some(c)
                if downgrades::normalize(&c.package) == downgrades::normalize(&package)
                    && downgrades::normalize(&c.dependency) == downgrades::normalize(&dependency) => {}
            Some(_) => return None,
        }
    }
    found
}

/// "MarkupSafe>=2.0; python_version>'3'" -> "MarkupSafe".
pub(super) fn distribution_name(requirement: &str) -> String {
    let end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .unwrap_or(requirement.len());
    requirement[..end].to_owned()
}

/// "... requirement pydantic-core==2.27.0 (from pydantic) ..." -> "pydantic"; None for a
/// requirement from the files ("(from -r requirements.txt (line 1))", or none at all).
fn requiring_package(stderr: &str, requirement: &str) -> Option<String> {
    let marker = format!("satisfies the requirement {requirement} (from ");
    let line = stderr.lines().find(|l| l.contains(&marker))?;
    let from = &line[line.find(&marker)? + marker.len()..];
    // pip's own "(from versions: ...)" follows a requirement with no requirer.
    if from.starts_with("-r ") || from.starts_with("-c ") || from.starts_with("versions:") {
        return None;
    }
    Some(distribution_name(from)).filter(|n| !n.is_empty())
}

fn requirement_args(requirements: &[PathBuf]) -> Vec<OsString> {
    requirements
        .iter()
        .flat_map(|f| [OsString::from("-r"), f.clone().into_os_string()])
        .collect()
}

/// The Python that runs pip: --python, or the one next to componentize-py (the
/// environment it was installed into has pip), or python3 on PATH.
pub fn find_python(explicit: Option<&Path>, componentize_py: &Path) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    if let Some(bin) = componentize_py.parent() {
        let beside = bin.join("python3");
        if beside.is_file() {
            return beside;
        }
    }
    PathBuf::from("python3")
}

/// `--venv DIR`: its site-packages (DIR/lib/pythonX.Y/site-packages).
pub fn venv_site_packages(venv: &Path) -> Result<PathBuf> {
    let lib = venv.join("lib");
    let entries = std::fs::read_dir(&lib)
        .with_context(|| format!("--venv {}: no lib/ directory; is it a virtualenv?", venv.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    match found.len() {
        0 => bail!("--venv {}: no lib/python*/site-packages directory", venv.display()),
        1 => Ok(found.remove(0)),
        _ => bail!(
            "--venv {}: several site-packages directories ({}); pass the one to use with --site-packages",
            venv.display(),
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_distribution_pip_could_not_find() {
        let stderr = "ERROR: Could not find a version that satisfies the requirement MarkupSafe>=2.0 (from jinja2) (from versions: none)\nERROR: No matching distribution found for MarkupSafe>=2.0\n";
        assert_eq!(missing_distribution(stderr).as_deref(), Some("MarkupSafe>=2.0"));
        assert_eq!(missing_distribution("ERROR: something else"), None);
        let pinned = "ERROR: Could not find a version that satisfies the requirement pydantic-core==2.27.0 (from pydantic) (from versions: 0.0.1)\n";
        assert_eq!(
            requiring_package(pinned, "pydantic-core==2.27.0").as_deref(),
            Some("pydantic")
        );
        let direct = "ERROR: Could not find a version that satisfies the requirement ujson==5.10.0 (from -r r.txt (line 3)) (from versions: none)";
        assert_eq!(requiring_package(direct, "ujson==5.10.0"), None);
        let bare = "ERROR: Could not find a version that satisfies the requirement ujson==5.10.0 (from versions: none)";
        assert_eq!(requiring_package(bare, "ujson==5.10.0"), None);
    }

    #[test]
    fn a_conflict_over_one_dependency_is_read_from_pips_report() {
        let stderr = "ERROR: Cannot install -r r.txt (line 2) because these package versions have conflicting \
                      dependencies.\n\nThe conflict is caused by:\n    pydantic 2.14.4 depends on \
                      pydantic-core==2.50.5\n    pydantic 2.0 depends on pydantic-core==2.0.1\n\nTo fix this you \
                      could try to:\n";
        let conflict = native_conflict(stderr).unwrap();
        assert_eq!(
            (
                conflict.package.as_str(),
                conflict.dependency.as_str(),
                conflict.example.as_str()
            ),
            (
                "pydantic",
                "pydantic-core",
                "pydantic 2.14.4 depends on pydantic-core==2.50.5"
            )
        );
        assert_eq!(conflict.requirement, "pydantic-core==2.50.5");
        let two = "The conflict is caused by:\n    a 1 depends on b==1\n    c 2 depends on b==2\n\n";
        assert_eq!(native_conflict(two), None);
        assert_eq!(native_conflict("ERROR: something else"), None);
    }

    #[test]
    fn distribution_names_drop_versions_extras_and_markers() {
        assert_eq!(distribution_name("MarkupSafe>=2.0"), "MarkupSafe");
        assert_eq!(
            distribution_name("zope.interface[test]>=5; python_version>'3'"),
            "zope.interface"
        );
        assert_eq!(distribution_name("ujson"), "ujson");
    }
}
