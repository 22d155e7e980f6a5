//! What the admin listener's /metrics shows, in the Prometheus text format.
//!
//! Built on the `prometheus` crate (the Rust client most exporters use, kept by
//! TiKV): typed counters, gauges and histograms with labels, the text encoder,
//! and its process collector, which reads /proc for the standard process_*
//! figures (CPU, resident memory, open and maximum fds, threads, start time)
//! under the names every Prometheus dashboard expects.

use std::sync::{Arc, Mutex};

use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::http::access_log::Record;
use crate::runtime::App;

/// The app label of requests no app ran: static files, paths nothing is mounted
/// at, requests refused before routing.
pub const NO_APP: &str = "-";

/// Request latency buckets, in seconds: from a fast hello (~1 ms) to requests
/// near the default 30 s CPU limit; finer where web requests usually fall.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    traps: IntCounterVec,
    limit_hits: IntCounterVec,
    bytes_received: IntCounterVec,
    bytes_sent: IntCounterVec,
    guest_cpu: CounterVec,
    instances: IntGaugeVec,
    instances_created: IntCounterVec,
    instances_rewound: IntCounterVec,
    queue: IntGaugeVec,
    log_dropped: IntCounter,
    apps: Mutex<Vec<Served>>,
}

/// An app being served, and how much of its own instance counts the counters
/// above already hold (a reloaded app starts its counts again from zero).
struct Served {
    app: Arc<App>,
    created: u64,
    rewound: u64,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let app = &["app"];
        let requests = IntCounterVec::new(
            Opts::new(
                "wsgi_wasm_requests_total",
                "Requests answered, by app and status class (2xx, 4xx...).",
            ),
            &["app", "class"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "wsgi_wasm_request_duration_seconds",
                "Time from the request head to the end of the response.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            app,
        )?;
        let traps = IntCounterVec::new(
            Opts::new(
                "wsgi_wasm_traps_total",
                "Guest calls that trapped (the instance is discarded).",
            ),
            app,
        )?;
        let limit_hits = IntCounterVec::new(
            Opts::new(
                "wsgi_wasm_limit_hits_total",
                "Requests stopped or refused by a limit: cpu, memory, queue, body-size.",
            ),
            &["app", "limit"],
        )?;
        let bytes_received = IntCounterVec::new(
            Opts::new("wsgi_wasm_request_body_bytes_total", "Request body bytes apps read."),
            app,
        )?;
        let bytes_sent = IntCounterVec::new(
            Opts::new("wsgi_wasm_response_body_bytes_total", "Response body bytes sent."),
            app,
        )?;
        let guest_cpu = CounterVec::new(
            Opts::new(
                "wsgi_wasm_guest_cpu_seconds_total",
                "CPU time guests used, counted in 10 ms epoch ticks.",
            ),
            app,
        )?;
        let instances = IntGaugeVec::new(
            Opts::new(
                "wsgi_wasm_instances",
                "Instances by state: busy (serving a request) or idle (warm, waiting).",
            ),
            &["app", "state"],
        )?;
        let instances_created = IntCounterVec::new(
            Opts::new("wsgi_wasm_instances_created_total", "Instances created."),
            app,
        )?;
        let instances_rewound = IntCounterVec::new(
            Opts::new(
                "wsgi_wasm_instances_rewound_total",
                "Request isolation: instances put back as instantiation left them for another request, instead of creating one.",
            ),
            app,
        )?;
        let queue = IntGaugeVec::new(
            Opts::new("wsgi_wasm_queue_depth", "Requests waiting for a free instance."),
            app,
        )?;
        let log_dropped = IntCounter::new(
            "wsgi_wasm_log_lines_dropped_total",
            "Log lines dropped because stderr could not keep up.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(traps.clone()))?;
        registry.register(Box::new(limit_hits.clone()))?;
        registry.register(Box::new(bytes_received.clone()))?;
        registry.register(Box::new(bytes_sent.clone()))?;
        registry.register(Box::new(guest_cpu.clone()))?;
        registry.register(Box::new(instances.clone()))?;
        registry.register(Box::new(instances_created.clone()))?;
        registry.register(Box::new(instances_rewound.clone()))?;
        registry.register(Box::new(queue.clone()))?;
        registry.register(Box::new(log_dropped.clone()))?;
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            traps,
            limit_hits,
            bytes_received,
            bytes_sent,
            guest_cpu,
            instances,
            instances_created,
            instances_rewound,
            queue,
            log_dropped,
            apps: Mutex::new(Vec::new()),
        })
    }

    /// The apps being served (at start, and after each reload): each app's series
    /// exist from the start (at zero), and its pool figures are part of every
    /// scrape. An app a reload removed keeps its counters but no pool figures.
    pub fn set_apps(&self, apps: Vec<Arc<App>>) {
        for app in &apps {
            let name = app.name();
            for class in ["2xx", "3xx", "4xx", "5xx"] {
                self.requests.with_label_values(&[name, class]);
            }
            self.traps.with_label_values(&[name]);
            self.instances_created.with_label_values(&[name]);
            self.instances_rewound.with_label_values(&[name]);
            for limit in ["cpu", "memory", "queue", "body-size"] {
                self.limit_hits.with_label_values(&[name, limit]);
            }
        }
        let mut served = self.apps.lock().unwrap();
        // Apps still served keep what their counters already hold.
        let counted: Vec<Served> = apps
            .into_iter()
            .map(|app| {
                let before = served.iter().find(|s| Arc::ptr_eq(&s.app, &app));
                let (created, rewound) = before.map_or((0, 0), |s| (s.created, s.rewound));
                Served { app, created, rewound }
            })
            .collect();
        *served = counted;
    }

    /// Counts one finished request. `trapped`: its guest trapped.
    pub fn observe(&self, r: &Record<'_>, body_received: u64, trapped: bool) {
        let app = r.app.unwrap_or(NO_APP);
        let class = match r.status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.with_label_values(&[app, class]).inc();
        self.duration
            .with_label_values(&[app])
            .observe(r.duration.as_secs_f64());
        self.bytes_sent.with_label_values(&[app]).inc_by(r.body_bytes);
        self.bytes_received.with_label_values(&[app]).inc_by(body_received);
        if trapped {
            self.traps.with_label_values(&[app]).inc();
        }
        if let Some(limit) = r.limit {
            self.limit_hits.with_label_values(&[app, limit.as_str()]).inc();
        }
        if let Some(usage) = r.usage {
            self.guest_cpu.with_label_values(&[app]).inc_by(usage.cpu.as_secs_f64());
        }
    }

    /// The Prometheus text exposition of everything, pool figures as of now.
    pub fn render(&self) -> String {
        for served in self.apps.lock().unwrap().iter_mut() {
            let pool = served.app.pool_stats();
            let name = served.app.name();
            self.instances.with_label_values(&[name, "busy"]).set(pool.busy as i64);
            self.instances.with_label_values(&[name, "idle"]).set(pool.idle as i64);
            self.queue.with_label_values(&[name]).set(pool.queued as i64);
            self.instances_created
                .with_label_values(&[name])
                .inc_by(pool.created.saturating_sub(served.created));
            self.instances_rewound
                .with_label_values(&[name])
                .inc_by(pool.rewound.saturating_sub(served.rewound));
            served.created = pool.created;
            served.rewound = pool.rewound;
        }
        let dropped = crate::log::dropped_lines();
        self.log_dropped.inc_by(dropped.saturating_sub(self.log_dropped.get()));
        let mut out = Vec::new();
        // Encoding into memory fails only on a metric the encoder cannot express,
        // which none registered here is.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
