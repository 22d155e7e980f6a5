//! Hello, world! as a wasi:http component, for `wasmtime serve`: the same response as
//! apps/hello-rust (status 200, `Content-Type: text/plain`, a 14-byte body with its
//! Content-Length), so the benchmark compares the two servers and not the apps.

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

const BODY: &[u8] = b"Hello, world!\n";

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let length = BODY.len().to_string();
        let headers = Fields::from_list(&[
            ("content-type".to_string(), b"text/plain".to_vec()),
            ("content-length".to_string(), length.into_bytes()),
        ])
        .expect("valid headers");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let out = body.write().expect("stream is taken once");
        out.blocking_write_and_flush(BODY).expect("client took the body");
        drop(out);
        OutgoingBody::finish(body, None).expect("body matches its Content-Length");
    }
}

wasip2::http::proxy::export!(Hello);
