//! End-to-end tests: the real `wsgi-wasm` binary on port 0, real guest components,
//! real HTTP clients over real sockets.

#[path = "../support/mod.rs"]
mod support;

mod edge;
mod environ;
mod file_wrapper;
mod frameworks;
mod grants;
mod h2_limits;
mod host_services;
mod hostile;
mod hosting;
mod http11;
mod input;
mod install;
mod isolation;
mod limits;
mod listen;
mod operations;
mod outbound;
mod packages;
mod proxies;
mod record;
mod response;
mod rolling;
mod shutdown;
mod skeleton;
mod soak;
mod static_files;
mod tls;
mod validate;
mod validator;
