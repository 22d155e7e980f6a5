//! Measures what `--isolation request` costs over `pooled`: calls one component
//! in-process, N times each way, and prints the mean time per call.
//!
//!     cargo run --release --example isolation_cost -- APP.wasm [N] [PATH] [pooled|request]
//!
//! In-process, without HTTP, so the difference is the instance lifecycle alone:
//! rewinding the instance to its fresh state after each call (its written pages
//! reset from the image, tables and globals restored), or, where an instance
//! cannot be rewound, creating one from the InstancePre and tearing it down.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use wsgi_wasm::runtime::engine::{EngineSettings, REQUEST_ISOLATION_KEEP_RESIDENT};
use wsgi_wasm::runtime::{App, AppConfig, Isolation, Runtime};
use wsgi_wasm::wsgi::body::ClientProgress;
use wsgi_wasm::wsgi::environ;
use wsgi_wasm::wsgi::exchange::{Exchange, Outcome};
use wsgi_wasm::wsgi::request_body::RequestBody;

async fn run(app: &std::sync::Arc<App>, n: usize, path: &str) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let (exchange, reply) = Exchange::new(
            RequestBody::from_bytes(Vec::new()),
            false,
            Duration::from_secs(10),
            ClientProgress::default(),
        );
        // The body is read while the app writes it: a streamed response larger
        // than the exchange's buffer waits for its reader.
        let call = async {
            let done = app.call(environ::synthetic("GET", path), exchange).await;
            assert!(matches!(done.outcome, Outcome::Completed), "{:?}", done.outcome);
            done.exchange.finish(&done.outcome).await;
        };
        let read = async { reply.await.unwrap().into_body().collect().await.unwrap() };
        let ((), body) = tokio::join!(call, read);
        std::hint::black_box(body);
    }
    started.elapsed() / n as u32
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: isolation_cost APP.wasm [N] [PATH]");
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let request_path = args.next().unwrap_or_else(|| "/".into());
    let only = args.next();
    let cache = std::env::temp_dir().join("wsgi-wasm-isolation-cost");
    let host = Runtime::new(
        EngineSettings {
            max_instances: 4,
            max_memory: 256 << 20,
            // What `serve` keeps when an app uses request isolation.
            keep_resident: REQUEST_ISOLATION_KEEP_RESIDENT,
        },
        Some(cache),
    )?;
    let mut results = Vec::new();
    for isolation in [Isolation::Pooled, Isolation::Request] {
        if only
            .as_deref()
            .is_some_and(|o| !format!("{isolation:?}").eq_ignore_ascii_case(o))
        {
            continue;
        }
        let config = AppConfig {
            isolation,
            max_memory: 256 << 20,
            max_instances: 1,
            max_queue: 1,
            cpu_timeout: Duration::from_secs(30),
            max_requests_per_instance: u64::MAX,
            idle_timeout: Duration::from_secs(3600),
            grants: Default::default(),
            validate: None,
            record: None,
        };
        let (app, _) = App::load(&host, std::path::Path::new(&path), None, config)?;
        app.warm_up().await?;
        run(&app, n / 10 + 1, &request_path).await;
        let per_call = run(&app, n, &request_path).await;
        println!("{isolation:?}: {:.1} us per call", per_call.as_secs_f64() * 1e6);
        results.push(per_call);
    }
    if let [pooled, request] = results[..] {
        let added = request.as_secs_f64() - pooled.as_secs_f64();
        println!("request isolation adds {:.1} us per request", added * 1e6);
    }
    Ok(())
}
