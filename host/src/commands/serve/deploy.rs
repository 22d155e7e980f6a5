//! Apps in, routing table out: loading the apps a plan names, and on reload,
//! loading only what changed, off the request path, so the switch to the new
//! table is one atomic store. A request in flight keeps the app it started on (an
//! `Arc`); the old version goes away when its last request is done.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::options::AppOptions;
use wsgi_wasm::http::router::{HostPattern, Mount, Route, Router};
use wsgi_wasm::log;
use wsgi_wasm::runtime::cache::Source;
use wsgi_wasm::runtime::{App, AppConfig, Isolation, Runtime};
use wsgi_wasm::wsgi::environ::MountPoint;

/// One app as a plan asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// Its name in the log; None: the file's stem.
    pub name: Option<String>,
    pub component: PathBuf,
    /// Empty: any host no other app names.
    pub hosts: Vec<HostPattern>,
    pub prefix: String,
    pub config: AppConfig,
    /// Where it was given (config file and line, or the argument), for messages.
    pub location: String,
    /// From a config file: messages name the file and line (an argument's
    /// messages name its component file already).
    pub in_config: bool,
}

impl Tenant {
    pub fn new(
        name: Option<String>,
        component: PathBuf,
        hosts: Vec<HostPattern>,
        prefix: String,
        options: &AppOptions,
        location: String,
    ) -> Result<Tenant, String> {
        let config = options.to_config().map_err(|e| format!("{location}: {e}"))?;
        Ok(Tenant {
            in_config: name.is_some(),
            name,
            component,
            hosts,
            prefix,
            config,
            location,
        })
    }

    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.component
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }

    fn host_patterns(&self) -> Vec<HostPattern> {
        if self.hosts.is_empty() {
            vec![HostPattern::Any]
        } else {
            self.hosts.clone()
        }
    }
}

/// Apps from files with the same stem, given on the command line, are told apart
/// in the log by their prefix.
pub fn name_apart(mut tenants: Vec<Tenant>) -> Vec<Tenant> {
    let names: Vec<String> = tenants.iter().map(Tenant::name).collect();
    for (tenant, name) in tenants.iter_mut().zip(&names) {
        if names.iter().filter(|n| *n == name).count() > 1 {
            let prefix = if tenant.prefix.is_empty() { "/" } else { &tenant.prefix };
            tenant.name = Some(format!("{name}@{prefix}"));
        }
    }
    tenants
}

/// Two apps at the same host and prefix: refused before anything is loaded.
pub fn check_routes(tenants: &[Tenant]) -> Result<(), String> {
    let mut claimed: HashMap<(HostPattern, &str), &Tenant> = HashMap::new();
    for tenant in tenants {
        for host in tenant.host_patterns() {
            if let Some(first) = claimed.insert((host.clone(), tenant.prefix.as_str()), tenant) {
                let prefix = if tenant.prefix.is_empty() { "/" } else { &tenant.prefix };
                return Err(if tenant.in_config {
                    format!(
                        "{}: two apps are mounted at {prefix} for {host}: {} and {} ({}); give one of them \
                         other hosts or a different prefix",
                        tenant.location,
                        tenant.name(),
                        first.name(),
                        first.location
                    )
                } else {
                    format!("two apps are mounted at {prefix}; give each a different PREFIX= (e.g. /shop=shop.wasm)")
                });
            }
        }
    }
    Ok(())
}

/// The apps being served, with what each was loaded from.
pub struct Deployment {
    runtime: Arc<Runtime>,
    live: Vec<(Tenant, Arc<App>)>,
}

impl Deployment {
    pub fn new(runtime: Arc<Runtime>) -> Deployment {
        Deployment {
            runtime,
            live: Vec::new(),
        }
    }

    /// Loads every app and checks that each starts; any failure stops the server
    /// from starting, with the app's location in the message.
    pub async fn start(&mut self, tenants: Vec<Tenant>) -> Result<Router> {
        for tenant in tenants {
            let loaded = self.load(&tenant).await;
            let app = if tenant.in_config {
                loaded.with_context(|| format!("{} (app {})", tenant.location, tenant.name()))?
            } else {
                loaded?
            };
            self.live.push((tenant, app));
        }
        self.router().map_err(anyhow::Error::msg)
    }

    /// Loads what changed in `tenants` (new apps, changed options, component files
    /// that changed on disk) and returns the new routing table; apps that did not
    /// change keep their warm instances. An app whose new version fails to load or
    /// start is logged and keeps its old version; a new app that fails is left out.
    /// None when nothing could be routed (the old table stays).
    pub async fn reload(&mut self, tenants: Vec<Tenant>) -> Option<Router> {
        let mut live = Vec::new();
        let (mut added, mut changed, mut kept, mut failed) = (0, 0, 0, 0);
        for tenant in tenants {
            let old = self.live.iter().find(|(t, _)| t.name() == tenant.name());
            let same_file = match old {
                Some((t, app)) if *t == tenant => self.runtime.components.is_current(&tenant.component, app),
                _ => false,
            };
            if same_file {
                kept += 1;
                live.push(old.cloned().unwrap());
                continue;
            }
            match self.load(&tenant).await {
                Ok(app) => {
                    if old.is_some() {
                        changed += 1;
                        log::server(format!(
                            "app {} deployed from {}",
                            tenant.name(),
                            tenant.component.display()
                        ));
                    } else {
                        added += 1;
                    }
                    live.push((tenant, app));
                }
                Err(e) => {
                    failed += 1;
                    match old {
                        Some(old) => {
                            log::server(format!(
                                "app {}: new version refused, the old one keeps serving: {}: {e:#}",
                                tenant.name(),
                                tenant.location
                            ));
                            live.push(old.clone());
                        }
                        None => log::server(format!("app {} not added: {}: {e:#}", tenant.name(), tenant.location)),
                    }
                }
            }
        }
        let removed = self
            .live
            .iter()
            .filter(|(t, _)| !live.iter().any(|(n, _)| n.name() == t.name()))
            .count();
        let previous = std::mem::replace(&mut self.live, live);
        match self.router() {
            Ok(router) => {
                log::server(format!(
                    "reloaded: {} apps ({added} added, {changed} changed, {removed} removed, {kept} unchanged, \
                     {failed} failed)",
                    self.live.len()
                ));
                Some(router)
            }
            Err(e) => {
                log::server(format!("reload refused, nothing changed: {e}"));
                self.live = previous;
                None
            }
        }
    }

    async fn load(&self, tenant: &Tenant) -> Result<Arc<App>> {
        let runtime = self.runtime.clone();
        if tenant.config.max_memory > runtime.settings.max_memory {
            anyhow::bail!(
                "max-memory {} MiB is more than this server's instance slots hold ({} MiB, set at start); \
                 restart the server to raise it",
                tenant.config.max_memory >> 20,
                runtime.settings.max_memory >> 20
            );
        }
        let (path, name, config) = (tenant.component.clone(), tenant.name(), tenant.config.clone());
        let (app, report) =
            tokio::task::spawn_blocking(move || App::load(&runtime, &path, Some(&name), config)).await??;
        let how = match report.source {
            Source::Cached => "loaded from cache",
            Source::Compiled => "compiled",
            Source::Shared => "shared with another app",
        };
        // Creating one instance proves the component starts, and leaves it warm
        // for the first request (reclaimed after idle-timeout like any other). A
        // component another app already runs has proven that: its other tenants
        // create their first instance on their first request (a millisecond or
        // so), which keeps a start with a thousand tenants on a few components short.
        if report.source != Source::Shared {
            app.warm_up().await?;
        }
        let config = app.config();
        let hosts = tenant
            .host_patterns()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        log::server(format!(
            "app {} ({} {how} in {:.0?}) for {hosts} at {}: {:?} isolation, {} instances, {} MiB memory, \
             {:?} CPU per request",
            app.name(),
            tenant.component.display(),
            report.load_time,
            if tenant.prefix.is_empty() { "/" } else { &tenant.prefix },
            config.isolation,
            config.max_instances,
            config.max_memory >> 20,
            config.cpu_timeout,
        ));
        Ok(app)
    }

    /// The apps being served now.
    pub fn apps(&self) -> Vec<Arc<App>> {
        self.live.iter().map(|(_, app)| app.clone()).collect()
    }

    fn router(&self) -> Result<Router, String> {
        let mut routes = Vec::new();
        for (tenant, app) in &self.live {
            for host in tenant.host_patterns() {
                routes.push(Route {
                    host,
                    mount: Mount {
                        app: app.clone(),
                        point: MountPoint {
                            script_name: tenant.prefix.clone(),
                            run_once: app.config().isolation == Isolation::Request,
                        },
                    },
                });
            }
        }
        Router::new(routes)
    }
}
