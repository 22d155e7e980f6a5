//! Runtime tests: a real component loaded and called in-process through the
//! library, no sockets.

#[path = "../support/mod.rs"]
mod support;

mod rewind;

use std::time::Duration;

use http_body_util::BodyExt;
use wsgi_wasm::runtime::{App, AppConfig, Isolation, Runtime, engine};
use wsgi_wasm::wsgi::body::ClientProgress;
use wsgi_wasm::wsgi::environ::Environ;
use wsgi_wasm::wsgi::exchange::{Exchange, Outcome};
use wsgi_wasm::wsgi::request_body::RequestBody;

fn runtime() -> Runtime {
    Runtime::new(
        engine::EngineSettings {
            max_instances: 4,
            max_memory: 256 << 20,
            keep_resident: engine::REQUEST_ISOLATION_KEEP_RESIDENT,
        },
        Some(support::components::aot_cache_dir()),
    )
    .unwrap()
}

fn config() -> AppConfig {
    AppConfig {
        isolation: Isolation::Pooled,
        max_memory: 256 << 20,
        max_instances: 2,
        max_queue: 16,
        cpu_timeout: Duration::from_secs(30),
        max_requests_per_instance: 1000,
        idle_timeout: Duration::from_secs(60),
        grants: Default::default(),
        validate: None,
        record: None,
    }
}

fn environ(method: &str, path: &str, query: &str) -> Environ {
    let target = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    wsgi_wasm::wsgi::environ::synthetic(method, &target)
}

async fn call(app: &std::sync::Arc<App>, env: Environ, body: &[u8]) -> (u16, Vec<u8>, Outcome) {
    let (exchange, reply) = Exchange::new(
        RequestBody::from_bytes(body.to_vec()),
        false,
        Duration::from_secs(10),
        ClientProgress::default(),
    );
    let done = app.call(env, exchange).await;
    let outcome = done.outcome;
    done.exchange.finish(&outcome).await;
    let response = reply.await.expect("a response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("complete body")
        .to_bytes()
        .to_vec();
    (status, body, outcome)
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_component_answers_in_process() {
    let host = runtime();
    let (app, _) = App::load(&host, &support::components::demo(), None, config()).unwrap();
    let (status, body, outcome) = call(&app, environ("GET", "/xyz", "abc"), b"").await;
    assert!(matches!(outcome, Outcome::Completed), "{outcome:?}");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with("Hello world!\n\n"), "{text}");
    assert!(text.contains("PATH_INFO = '/xyz'\n"), "{text}");
    assert!(text.contains("QUERY_STRING = 'abc'\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pooled_instance_serves_many_calls_and_reads_bodies() {
    let host = runtime();
    let (app, _) = App::load(&host, &support::components::python_fixtures(), None, config()).unwrap();
    for i in 0..20 {
        let body = format!("request body {i}").into_bytes();
        let (status, echoed, _) = call(&app, environ("POST", "/echo", ""), &body).await;
        assert_eq!(status, 200);
        assert_eq!(echoed, body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fixture_is_an_ordinary_404() {
    let host = runtime();
    let (app, _) = App::load(&host, &support::components::python_fixtures(), None, config()).unwrap();
    let (status, body, _) = call(&app, environ("GET", "/nope", ""), b"").await;
    assert_eq!(status, 404);
    assert_eq!(body, b"no fixture named 'nope'\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_instances_are_reclaimed_after_the_idle_timeout() {
    let host = runtime();
    let mut quick = config();
    quick.idle_timeout = Duration::from_millis(500);
    let (app, _) = App::load(&host, &support::components::python_fixtures(), None, quick).unwrap();
    let (status, _, _) = call(&app, environ("GET", "/hello", ""), b"").await;
    assert_eq!(status, 200);
    assert_eq!(app.idle_instances(), 1, "the instance is kept warm after a request");
    assert_eq!(host.capacity.in_use(), 1);
    // The reaper looks once a second.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(app.idle_instances(), 0, "reclaimed after idle-timeout");
    assert_eq!(host.capacity.in_use(), 0, "its slot is free again");
    let (status, _, _) = call(&app, environ("GET", "/hello", ""), b"").await;
    assert_eq!(status, 200, "a request after that creates a new instance");
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_share_compiled_code_and_take_idle_slots_from_each_other() {
    // Four slots for six apps of the same component.
    let host = runtime();
    let mut apps: Vec<std::sync::Arc<App>> = Vec::new();
    for i in 0..6 {
        let name = format!("tenant{i}");
        let (app, report) = App::load(&host, &support::components::python_fixtures(), Some(&name), config()).unwrap();
        if i > 0 {
            assert_eq!(report.source, wsgi_wasm::runtime::cache::Source::Shared);
            assert!(std::sync::Arc::ptr_eq(app.linked(), apps[0].linked()));
        }
        let (status, _, _) = call(&app, environ("GET", "/hello", ""), b"").await;
        assert_eq!(status, 200, "{name} is served although only 4 slots exist");
        // Instances are counted per app, not by the slot semaphore itself.
        let alive: usize = apps.iter().chain([&app]).map(|a| a.idle_instances()).sum();
        assert!(
            alive <= 4,
            "{alive} instances alive after {name}'s request, with 4 slots"
        );
        apps.push(app);
    }
    assert_eq!(host.capacity.in_use(), 4);
    // The least recently used tenants gave their instances up.
    assert_eq!(apps[0].idle_instances(), 0);
    assert_eq!(apps[5].idle_instances(), 1);
}
