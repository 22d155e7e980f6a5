//! `--static PREFIX=DIR`: files answered by the host without entering a sandbox.
//!
//! tower-http's ServeDir does the HTTP work (Content-Type from the extension,
//! Last-Modified and If-Modified-Since, Range with 206 and 416, HEAD, precompressed
//! `.gz`/`.br` siblings chosen by Accept-Encoding): a well-kept implementation of
//! fiddly rules. Two things it does not do are added here: an ETag with
//! If-None-Match (304), and refusing what could leave DIR. ServeDir already
//! rejects `..` and absolute components, but it follows symlinks wherever they
//! point, and it decodes `%2F` into a path separator; so every file it could pick
//! for a request is resolved first and must lie inside DIR, and encoded slashes
//! are refused.

use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::wsgi::body::{BodyAborted, ResponseBody};

/// Bytes read from a static file per body chunk. ServeDir reads through tokio's
/// file API, one hop to the blocking thread pool per read; its default of 64 KiB
/// made a 1 MiB file sixteen hops. 256 KiB (the size of a guest's write pieces)
/// is four, and stays small beside the memory a connection may hold.
const STATIC_READ_CHUNK: usize = 256 * 1024;
use crate::wsgi::exchange::error_response;

pub struct StaticMount {
    /// Path prefix without a trailing slash ("" would be the whole site).
    prefix: String,
    /// Canonical: symlinks resolved, so containment is a prefix test.
    root: PathBuf,
    service: ServeDir,
}

/// `PREFIX=DIR`, checked at start: PREFIX a path, DIR an existing directory.
pub fn parse_mount(text: &str) -> Result<(String, PathBuf), String> {
    let (prefix, dir) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} should be PREFIX=DIR (e.g. /static=./static)"))?;
    let prefix = prefix.trim_end_matches('/');
    if !prefix.starts_with('/') || prefix.contains(['%', '?', '#']) {
        return Err(format!(
            "{text:?}: PREFIX must be a plain path starting with '/' (e.g. /static)"
        ));
    }
    let dir = PathBuf::from(dir);
    if !dir.is_dir() {
        return Err(format!("{text:?}: {} is not a directory", dir.display()));
    }
    Ok((prefix.to_owned(), dir))
}

impl StaticMount {
    pub fn new(prefix: String, dir: &Path) -> Result<StaticMount, String> {
        let root = dir
            .canonicalize()
            .map_err(|e| format!("--static {prefix}={}: {e}", dir.display()))?;
        let service = ServeDir::new(&root)
            .precompressed_gzip()
            .precompressed_br()
            .with_buf_chunk_size(STATIC_READ_CHUNK)
            .redirect_path_prefix(prefix.clone());
        Ok(StaticMount { prefix, root, service })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The part of a raw request path under this mount, if it is under it
    /// (whole segments: "/static" serves "/static/x", never "/staticx").
    pub fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(&self.prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    pub async fn serve(&self, parts: &hyper::http::request::Parts, rest: &str) -> Response<ResponseBody> {
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, "Static files take GET and HEAD.");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let Some(file) = self.contained_file(rest) else {
            return error_response(StatusCode::NOT_FOUND, "No such file.");
        };
        let mut request = Request::builder()
            .method(parts.method.clone())
            .uri(if rest.is_empty() { "/" } else { rest })
            .body(Empty::<Bytes>::new())
            .expect("method and path come from a parsed request");
        *request.headers_mut() = parts.headers.clone();
        // RFC 9110 section 13.2.2: If-None-Match decides when present, so
        // ServeDir must not answer 304 from If-Modified-Since alone.
        let if_none_match = request.headers_mut().remove(header::IF_NONE_MATCH);
        if if_none_match.is_some() {
            request.headers_mut().remove(header::IF_MODIFIED_SINCE);
        }
        let response = self
            .service
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let (mut head, body) = response.into_parts();
        if let Some(tag) = file
            .as_deref()
            .and_then(|f| entity_tag(f, head.headers.get(header::CONTENT_ENCODING)))
        {
            let tag = HeaderValue::from_str(&tag).expect("hex digits and quotes");
            let matched = if_none_match.as_ref().is_some_and(|inm| tag_matches(inm, &tag));
            head.headers.insert(header::ETAG, tag);
            if matched && head.status.is_success() {
                head.status = StatusCode::NOT_MODIFIED;
                for name in [header::CONTENT_LENGTH, header::CONTENT_RANGE, header::ACCEPT_RANGES] {
                    head.headers.remove(name);
                }
                return Response::from_parts(head, ResponseBody::Empty);
            }
        }
        let body = body
            .map_err(|_| BodyAborted("reading the static file failed"))
            .boxed_unsync();
        Response::from_parts(head, ResponseBody::Boxed(body))
    }

    /// Checks every file ServeDir could answer `rest` with (the path, an
    /// index.html under it, their .gz/.br siblings): each that exists must resolve
    /// inside the root. None if one escapes or the path is not acceptable;
    /// Some(path of the plain file, if it exists) otherwise.
    fn contained_file(&self, rest: &str) -> Option<Option<PathBuf>> {
        let lower = rest.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
            return None;
        }
        let decoded = percent_decode_str(rest).decode_utf8().ok()?;
        let mut path = self.root.clone();
        for component in Path::new(decoded.trim_start_matches('/')).components() {
            match component {
                Component::Normal(part) => path.push(part),
                Component::CurDir => {}
                _ => return None,
            }
        }
        let index = path.join("index.html");
        let mut plain = None;
        for candidate in [&path, &index] {
            for suffix in ["", ".gz", ".br"] {
                let mut name = candidate.as_os_str().to_owned();
                name.push(suffix);
                let name = PathBuf::from(name);
                if std::fs::symlink_metadata(&name).is_err() {
                    continue;
                }
                let resolved = name.canonicalize().ok()?;
                if !resolved.starts_with(&self.root) {
                    return None;
                }
                if suffix.is_empty() && plain.is_none() && resolved.is_file() {
                    plain = Some(resolved);
                }
            }
        }
        Some(plain)
    }
}

/// A weak validator from the file's size and modification time (what a change
/// of the file changes), distinct per content coding since the bytes differ.
fn entity_tag(file: &Path, coding: Option<&HeaderValue>) -> Option<String> {
    let meta = std::fs::metadata(file).ok()?;
    let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    let coding = coding
        .and_then(|c| c.to_str().ok())
        .map(|c| format!("-{c}"))
        .unwrap_or_default();
    let coding: String = coding
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Some(format!("W/\"{:x}-{:x}{coding}\"", meta.len(), modified.as_nanos()))
}

/// If-None-Match uses the weak comparison (RFC 9110 section 13.1.2).
fn tag_matches(if_none_match: &HeaderValue, tag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else { return false };
    let ours = tag.to_str().unwrap_or_default().trim_start_matches("W/");
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_and_match_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (prefix, _) = parse_mount(&format!("/static/={}", dir.path().display())).unwrap();
        assert_eq!(prefix, "/static");
        let mount = StaticMount::new(prefix, dir.path()).unwrap();
        assert_eq!(mount.strip("/static/a.css"), Some("/a.css"));
        assert_eq!(mount.strip("/static"), Some(""));
        assert_eq!(mount.strip("/staticx/a.css"), None);
        assert!(parse_mount("static=/tmp").unwrap_err().contains("starting with '/'"));
        assert!(parse_mount("/s=/no/such/dir").unwrap_err().contains("not a directory"));
        assert!(parse_mount("/s").unwrap_err().contains("PREFIX=DIR"));
    }

    #[test]
    fn weak_comparison() {
        let tag = HeaderValue::from_static("W/\"a-b\"");
        assert!(tag_matches(&HeaderValue::from_static("W/\"a-b\""), &tag));
        assert!(tag_matches(&HeaderValue::from_static("\"x\", \"a-b\""), &tag));
        assert!(tag_matches(&HeaderValue::from_static("*"), &tag));
        assert!(!tag_matches(&HeaderValue::from_static("\"a-c\""), &tag));
    }
}
