//! No silent downgrades: which installed packages are older than what a native
//! CPython 3.14 would get for the same requirements, and why.
//!
//! pip, asked for pure-Python wheels only, quietly backtracks to old releases when
//! newer ones need native code (unpinned `pydantic` becomes 1.10.x because every 2.x
//! needs pydantic-core). The build compares what it installed with one more pip
//! resolve of the same requirements for native Linux wheels (pip's `--report`), and
//! names each package that differs with the native dependency that holds it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use pep440_rs::Version;
use serde_json::{Value, json};

/// One distribution as pip's `--report` resolved it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub key: String,
    pub version: String,
    /// The wheel pip picked has native code (not tagged `none-any`).
    pub native: bool,
    /// Named in the requirements files, not pulled in by another package.
    pub requested: bool,
    /// Normalised names of its dependencies (extras left out).
    pub requires: Vec<String>,
}

/// A package the sandbox got older than native platforms would.
#[derive(Debug, Clone, PartialEq)]
pub struct Downgrade {
    pub name: String,
    /// The requirement line, or which packages pulled it in.
    pub asked: String,
    pub installed: String,
    pub newest: String,
    pub why: String,
}

/// What the check found, as kept in the deps cache so a warm rebuild says the same
/// without asking pip again.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Done(Vec<Downgrade>),
    /// The native resolve failed (offline, or a requirement with no wheel for
    /// native CPython 3.14 either): nothing is known about newer releases.
    Failed(String),
}

/// The file in a deps cache entry that holds the check's result.
pub const CHECK_FILE: &str = "newer-releases.json";

/// PEP 503 normalisation: `Typing_Extensions` and `typing-extensions` are one name.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Parses pip's installation report (`pip install --dry-run --report FILE`).
pub fn parse_report(text: &str) -> Result<Vec<Resolved>> {
    let report: Value = serde_json::from_str(text).context("pip's --report is not JSON")?;
    let items = report["install"]
        .as_array()
        .context("pip's --report has no \"install\" list")?;
    let mut out = Vec::new();
    for item in items {
        let meta = &item["metadata"];
        let (Some(name), Some(version)) = (meta["name"].as_str(), meta["version"].as_str()) else {
            bail!("pip's --report has an entry without a name or version");
        };
        let url = item["download_info"]["url"].as_str().unwrap_or_default();
        let file = url.rsplit('/').next().unwrap_or_default();
        let requires = meta["requires_dist"]
            .as_array()
            .map(|deps| {
                deps.iter()
                    .filter_map(|d| d.as_str())
                    .filter(|d| !d.replace(' ', "").contains("extra=="))
                    .map(|d| normalize(&super::deps::distribution_name(d.trim())))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Resolved {
            // pip reports names as each wheel spells them (`pydantic_core`); the
            // canonical form is the one users type.
            name: normalize(name),
            key: normalize(name),
            version: version.to_owned(),
            native: file.ends_with(".whl") && !is_pure_wheel(file),
            requested: item["requested"].as_bool().unwrap_or(false),
            requires,
        });
    }
    Ok(out)
}

/// `pydantic-2.14.4-py3-none-any.whl` is pure; `..-cp314-cp314-manylinux_2_17_x86_64.whl` is not.
fn is_pure_wheel(file: &str) -> bool {
    let stem = file.trim_end_matches(".whl");
    let mut tags = stem.rsplit('-');
    let platform = tags.next().unwrap_or_default();
    let abi = tags.next().unwrap_or_default();
    platform == "any" && abi == "none"
}

/// Name -> version of the distributions installed in a `pip install --target` tree.
pub fn installed_versions(site: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(site).with_context(|| format!("cannot read {}", site.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some((dist, version)) = name.strip_suffix(".dist-info").and_then(|s| s.rsplit_once('-')) {
            out.insert(normalize(dist), version.to_owned());
        }
    }
    Ok(out)
}

/// Each requirement line of the files, by normalised name, as the user wrote it.
pub fn requirement_lines(requirements: &[PathBuf]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for file in requirements {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines() {
            let line = line.split(" #").next().unwrap_or_default().trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('-') {
                continue;
            }
            out.entry(normalize(&super::deps::distribution_name(line)))
                .or_insert_with(|| line.to_owned());
        }
    }
    out
}

fn is_newer(newest: &str, installed: &str) -> bool {
    match (Version::from_str(newest), Version::from_str(installed)) {
        (Ok(n), Ok(i)) => n > i,
        // Not PEP 440 (ancient releases): differing is the best there is.
        _ => newest != installed,
    }
}

/// The packages the sandbox got older than the native resolve, by key.
fn older<'a>(native: &'a [Resolved], installed: &BTreeMap<String, String>) -> BTreeSet<&'a str> {
    native
        .iter()
        .filter(|r| installed.get(&r.key).is_some_and(|v| is_newer(&r.version, v)))
        .map(|r| r.key.as_str())
        .collect()
}

/// The native distributions (`markupsafe==3.0.4`) that hold an installed package back:
/// an older package itself when its newest release is native, or a native dependency
/// of an older package that the sandbox does not have at that version. pip never
/// builds their sdists when an older release of the package installs without them
/// (unpinned Werkzeug becomes 2.1.2, which needs no MarkupSafe), yet some of those
/// sdists fall back to pure Python without a compiler: the build tries each once.
pub fn native_blockers(native: &[Resolved], installed: &BTreeMap<String, String>) -> Vec<String> {
    let by_key: BTreeMap<&str, &Resolved> = native.iter().map(|r| (r.key.as_str(), r)).collect();
    let older = older(native, installed);
    let mut out = BTreeSet::new();
    for r in native.iter().filter(|r| older.contains(r.key.as_str())) {
        if r.native {
            out.insert(format!("{}=={}", r.name, r.version));
        }
        for d in r.requires.iter().filter_map(|k| by_key.get(k.as_str())) {
            if d.native && installed.get(&d.key) != Some(&d.version) {
                out.insert(format!("{}=={}", d.name, d.version));
            }
        }
    }
    out.into_iter().collect()
}

/// Compares the sandbox's install with the native resolve of the same requirements.
pub fn find(
    native: &[Resolved],
    installed: &BTreeMap<String, String>,
    asked: &BTreeMap<String, String>,
) -> Vec<Downgrade> {
    let by_key: BTreeMap<&str, &Resolved> = native.iter().map(|r| (r.key.as_str(), r)).collect();
    let older = older(native, installed);
    let mut out = Vec::new();
    for r in native.iter().filter(|r| older.contains(r.key.as_str())) {
        let deps: Vec<&Resolved> = r
            .requires
            .iter()
            .filter_map(|k| by_key.get(k.as_str()).copied())
            .collect();
        // A native dependency the sandbox does not have at that version.
        let native_deps: Vec<String> = deps
            .iter()
            .filter(|d| d.native && installed.get(&d.key) != Some(&d.version))
            .map(|d| format!("{} {}", d.name, d.version))
            .collect();
        let held_back: Vec<String> = deps
            .iter()
            .filter(|d| older.contains(d.key.as_str()))
            .map(|d| d.name.clone())
            .collect();
        let why = if r.native {
            format!("{} {} ships only native wheels", r.name, r.version)
        } else if !native_deps.is_empty() {
            format!(
                "{} {} needs {}, which {} only native wheels",
                r.name,
                r.version,
                native_deps.join(" and "),
                if native_deps.len() == 1 { "ships" } else { "ship" }
            )
        } else if !held_back.is_empty() {
            format!(
                "{} {} needs newer {} than runs in the sandbox",
                r.name,
                r.version,
                held_back.join(" and ")
            )
        } else {
            "pip chose it to fit the other requirements".to_owned()
        };
        let asked = if r.requested {
            format!("`{}`", asked.get(&r.key).cloned().unwrap_or_else(|| r.name.clone()))
        } else {
            let parents: Vec<&str> = native
                .iter()
                .filter(|p| p.requires.contains(&r.key))
                .map(|p| p.name.as_str())
                .collect();
            if parents.is_empty() {
                "as a dependency".to_owned()
            } else {
                format!("by {}", parents.join(", "))
            }
        };
        out.push(Downgrade {
            name: r.name.clone(),
            asked,
            installed: installed[&r.key].clone(),
            newest: r.version.clone(),
            why,
        });
    }
    out
}

impl Downgrade {
    pub fn line(&self) -> String {
        format!(
            "{}: asked {}, installed {} instead of the newest {}: {}",
            self.name, self.asked, self.installed, self.newest, self.why
        )
    }
}

impl Check {
    pub fn to_json(&self) -> String {
        let value = match self {
            Check::Done(found) => json!({
                "downgrades": found.iter().map(|d| json!({
                    "name": d.name, "asked": d.asked, "installed": d.installed,
                    "newest": d.newest, "why": d.why,
                })).collect::<Vec<_>>(),
            }),
            Check::Failed(error) => json!({ "failed": error }),
        };
        value.to_string()
    }

    pub fn from_json(text: &str) -> Option<Check> {
        let value: Value = serde_json::from_str(text).ok()?;
        if let Some(error) = value["failed"].as_str() {
            return Some(Check::Failed(error.to_owned()));
        }
        let field = |d: &Value, k: &str| d[k].as_str().map(str::to_owned);
        let found = value["downgrades"]
            .as_array()?
            .iter()
            .map(|d| {
                Some(Downgrade {
                    name: field(d, "name")?,
                    asked: field(d, "asked")?,
                    installed: field(d, "installed")?,
                    newest: field(d, "newest")?,
                    why: field(d, "why")?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Check::Done(found))
    }

    /// Says what was found; with `strict`, anything older (or not knowing) fails the build.
    pub fn report(&self, strict: bool) -> Result<()> {
        match self {
            Check::Done(found) if found.is_empty() => Ok(()),
            Check::Done(found) => {
                let lines: Vec<String> = found.iter().map(|d| format!("    {}", d.line())).collect();
                let pins: Vec<String> = found.iter().map(|d| format!("{}=={}", d.name, d.installed)).collect();
                if strict {
                    bail!(
                        "--strict: the sandbox would get older releases than native platforms get, because newer \
                         ones need native code (which the sandbox's CPython cannot load):\n{}\n  To accept these \
                         versions, pin them ({}); otherwise replace these packages",
                        lines.join("\n"),
                        pins.join(", ")
                    );
                }
                eprintln!(
                    "warning: older releases than native platforms get, because newer ones need native code \
                     (which the sandbox's CPython cannot load):\n{}\n  To accept these versions, pin them ({}); \
                     pass --strict to fail the build instead",
                    lines.join("\n"),
                    pins.join(", ")
                );
                Ok(())
            }
            Check::Failed(error) if strict => bail!(
                "--strict: cannot tell whether newer releases exist for native platforms ({error}); \
                 build without --strict to go on anyway"
            ),
            Check::Failed(error) => {
                eprintln!("warning: cannot tell whether newer releases exist for native platforms: {error}");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NATIVE_REPORT: &str = r#"{"install": [
      {"download_info": {"url": "https://example/pydantic-2.14.4-py3-none-any.whl"}, "requested": true,
       "metadata": {"name": "pydantic", "version": "2.14.4", "requires_dist": ["annotated-types>=0.6.0",
         "pydantic-core==2.50.5", "typing-extensions>=4.16.0", "email-validator>=2.0.0; extra == 'email'"]}},
      {"download_info": {"url": "https://example/pydantic_core-2.50.5-cp314-cp314-manylinux_2_17_x86_64.whl"},
       "requested": false, "metadata": {"name": "pydantic_core", "version": "2.50.5",
         "requires_dist": ["typing-extensions>=4.16.0"]}},
      {"download_info": {"url": "https://example/annotated_types-0.8.0-py3-none-any.whl"}, "requested": false,
       "metadata": {"name": "annotated-types", "version": "0.8.0"}},
      {"download_info": {"url": "https://example/typing_extensions-4.16.0-py3-none-any.whl"}, "requested": false,
       "metadata": {"name": "typing_extensions", "version": "4.16.0"}},
      {"download_info": {"url": "https://example/Flask-3.1.3-py3-none-any.whl"}, "requested": true,
       "metadata": {"name": "Flask", "version": "3.1.3"}}
    ]}"#;

    #[test]
    fn names_the_native_dependency_that_holds_a_package_back() {
        let native = parse_report(NATIVE_REPORT).unwrap();
        let installed: BTreeMap<String, String> = [
            ("pydantic", "1.10.27"),
            ("typing-extensions", "4.16.0"),
            ("flask", "3.1.3"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        let asked: BTreeMap<String, String> = [("pydantic".to_owned(), "pydantic>=1".to_owned())].into();
        let found = find(&native, &installed, &asked);
        assert_eq!(
            found,
            vec![Downgrade {
                name: "pydantic".into(),
                asked: "`pydantic>=1`".into(),
                installed: "1.10.27".into(),
                newest: "2.14.4".into(),
                why: "pydantic 2.14.4 needs pydantic-core 2.50.5, which ships only native wheels".into(),
            }]
        );
        let check = Check::Done(found);
        assert_eq!(Check::from_json(&check.to_json()), Some(check));
        assert_eq!(native_blockers(&native, &installed), ["pydantic-core==2.50.5"]);
        // Once the sandbox has the newest pydantic, nothing holds it back.
        let caught_up: BTreeMap<String, String> = [("pydantic", "2.14.4"), ("pydantic-core", "2.50.5")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert!(native_blockers(&native, &caught_up).is_empty());
    }

    #[test]
    fn a_newer_sandbox_version_or_pep440_spelling_is_no_downgrade() {
        assert!(is_newer("2.0", "1.10.27"));
        assert!(!is_newer("1.0", "1.0.0"));
        assert!(!is_newer("1.0", "1.1"));
        assert_eq!(normalize("Typing__Extensions.x"), "typing-extensions-x");
        assert!(is_pure_wheel("a-1-py2.py3-none-any.whl"));
        assert!(!is_pure_wheel("a-1-cp314-abi3-manylinux_2_17_x86_64.whl"));
    }
}
