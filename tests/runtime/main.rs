//! Runtime tests: a real component loaded and called in-process through the
//! library, no sockets.

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use http_body_util::BodyExt;
use wsgi_wasm::http::exchange::{Exchange, Outcome};
use wsgi_wasm::http::request_body::RequestBody;
use wsgi_wasm::runtime::{App, AppConfig, Isolation, engine};

fn config() -> AppConfig {
    AppConfig {
        isolation: Isolation::Pooled,
        max_memory: 256 << 20,
        max_instances: 2,
        max_queue: 16,
        cpu_timeout: Duration::from_secs(30),
        max_requests_per_instance: 1000,
        grants: Default::default(),
    }
}

fn environ(method: &str, path: &str, query: &str) -> Vec<(String, String)> {
    let target = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    wsgi_wasm::environ::synthetic(method, &target)
}

async fn call(app: &std::sync::Arc<App>, env: Vec<(String, String)>, body: &[u8]) -> (u16, Vec<u8>, Outcome) {
    let (exchange, reply) = Exchange::new(RequestBody::from_bytes(body.to_vec()), false, Duration::from_secs(10));
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
    let engine = engine::new_engine(engine::EngineSettings {
        max_instances: 4,
        max_memory: 256 << 20,
    })
    .unwrap();
    let cache = support::components::aot_cache_dir();
    let (app, _) = App::load(&engine, &support::components::demo(), config(), Some(&cache)).unwrap();
    let app = std::sync::Arc::new(app);
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
    let engine = engine::new_engine(engine::EngineSettings {
        max_instances: 4,
        max_memory: 256 << 20,
    })
    .unwrap();
    let cache = support::components::aot_cache_dir();
    let (app, _) = App::load(&engine, &support::components::python_fixtures(), config(), Some(&cache)).unwrap();
    let app = std::sync::Arc::new(app);
    for i in 0..20 {
        let body = format!("request body {i}").into_bytes();
        let (status, echoed, _) = call(&app, environ("POST", "/echo", ""), &body).await;
        assert_eq!(status, 200);
        assert_eq!(echoed, body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fixture_is_an_ordinary_404() {
    let engine = engine::new_engine(engine::EngineSettings {
        max_instances: 4,
        max_memory: 256 << 20,
    })
    .unwrap();
    let (app, _) = App::load(
        &engine,
        &support::components::python_fixtures(),
        config(),
        Some(&support::components::aot_cache_dir()),
    )
    .unwrap();
    let app = std::sync::Arc::new(app);
    let (status, body, _) = call(&app, environ("GET", "/nope", ""), b"").await;
    assert_eq!(status, 404);
    assert_eq!(body, b"no fixture named 'nope'\n");
}
