//! The access log's formats: NCSA common and combined (what log analysers read),
//! and JSON. Combined and JSON add what no other WSGI server can show: the app,
//! the request's duration, the guest CPU time it used, its instance's peak linear
//! memory, and which limit stopped it.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use hyper::{Method, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// `HOST - - [DATE] "REQUEST" STATUS BYTES`, exactly the NCSA common log format.
    Common,
    /// Combined (common + "REFERER" "USER-AGENT"), then app=, time=, cpu=, mem=,
    /// limit= and (aborted) when they apply.
    Combined,
    /// One JSON object per request with all of the above as fields.
    Json,
}

pub use crate::wsgi::{Limit, Usage};

/// One finished request, as the access log and the metrics see it.
pub struct Record<'a> {
    pub client: Option<IpAddr>,
    pub method: &'a Method,
    pub target: &'a str,
    pub version: Version,
    pub status: u16,
    pub body_bytes: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub duration: Duration,
    pub app: Option<&'a str>,
    pub usage: Option<Usage>,
    pub aborted: bool,
    pub limit: Option<Limit>,
}

pub fn format(format: AccessLogFormat, r: &Record<'_>, now: SystemTime) -> String {
    let client = r
        .client
        .map_or_else(|| "-".to_owned(), |ip| ip.to_canonical().to_string());
    let version = crate::wsgi::environ::protocol(r.version);
    let ms = r.duration.as_secs_f64() * 1000.0;
    match format {
        AccessLogFormat::Common | AccessLogFormat::Combined => {
            let mut line = format!(
                "{client} - - [{}] \"{} {} {version}\" {} {}",
                clf_date(now),
                r.method,
                escape(r.target.as_bytes()),
                r.status,
                r.body_bytes
            );
            if format == AccessLogFormat::Common {
                return line;
            }
            let quoted = |v: Option<&[u8]>| v.map_or_else(|| "-".to_owned(), escape);
            let _ = write!(line, " \"{}\" \"{}\"", quoted(r.referer), quoted(r.user_agent));
            let _ = write!(line, " app={} time={ms:.2}ms", r.app.unwrap_or("-"));
            if let Some(usage) = r.usage {
                let _ = write!(
                    line,
                    " cpu={}ms mem={}KiB",
                    usage.cpu.as_millis(),
                    usage.peak_memory >> 10
                );
            }
            if let Some(limit) = r.limit {
                let _ = write!(line, " limit={}", limit.as_str());
            }
            if r.aborted {
                line.push_str(" (aborted)");
            }
            line
        }
        AccessLogFormat::Json => {
            let text = |v: Option<&[u8]>| v.map(|v| String::from_utf8_lossy(v).into_owned());
            serde_json::json!({
                "time": humantime::format_rfc3339_millis(now).to_string(),
                "client": r.client.map(|ip| ip.to_canonical().to_string()),
                "method": r.method.as_str(),
                "target": r.target,
                "protocol": version,
                "status": r.status,
                "bytes": r.body_bytes,
                "referer": text(r.referer),
                "user_agent": text(r.user_agent),
                "app": r.app,
                "duration_ms": (ms * 100.0).round() / 100.0,
                "cpu_ms": r.usage.map(|u| u.cpu.as_millis() as u64),
                "peak_memory_bytes": r.usage.map(|u| u.peak_memory),
                "limit": r.limit.map(Limit::as_str),
                "aborted": r.aborted,
            })
            .to_string()
        }
    }
}

/// `[02/Dec/2026:05:11:46 +0000]`'s inside, in UTC.
fn clf_date(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // "2026-12-02T05:11:46Z"
    let iso = humantime::format_rfc3339_seconds(now).to_string();
    let month: usize = iso[5..7].parse().unwrap_or(1);
    format!(
        "{}/{}/{}:{} +0000",
        &iso[8..10],
        MONTHS[month.clamp(1, 12) - 1],
        &iso[0..4],
        &iso[11..19]
    )
}

/// As Apache does: `"` and `\` escaped, bytes outside printable ASCII as \xHH, so
/// a client cannot forge a field or a line.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_date_is_apache_style() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(971_186_136);
        assert_eq!(clf_date(t), "10/Oct/2000:13:55:36 +0000");
    }

    #[test]
    fn quotes_and_control_bytes_are_escaped() {
        assert_eq!(escape(b"a\"b\\c\n\xff"), "a\\\"b\\\\c\\x0a\\xff");
    }
}
