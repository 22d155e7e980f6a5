//! `serve --record DIR` and `wsgi-wasm replay`: one request as a file.
//!
//! A recording holds what crossed the sandbox's boundary during one call: the
//! environ and request body going in, the values the host handed the guest
//! (clock readings, random bytes; see [`HostValues`], filled by the runtime), and
//! the response that came out. Replaying feeds the same inputs to the app and
//! compares the responses. The exchange ([`super::exchange::Exchange`]) keeps the
//! [`Transcript`] of a request while it runs; the [`Recorder`] of the app decides
//! whether to keep it and writes it. What is not recorded is said in README.md
//! ("Record and replay").

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use hyper::Response;
use serde::{Deserialize, Serialize};

use super::body::ResponseBody;
use super::environ::{Environ, latin1};
use crate::log;

/// The file format's version; replay refuses other versions rather than guessing.
/// Format 2: `secure_random` and `insecure_random` hold the generators' 64-bit
/// draws, eight bytes each, one draw per eight bytes the guest got (see
/// runtime::random). Format 1 held four bytes for each byte the guest got, as
/// wasmtime-wasi drew them, so a format 1 recording cannot be replayed.
pub const FORMAT_VERSION: u32 = 2;

/// Largest recording written, counting the bodies and host values it holds (the
/// file is about 4/3 of that, base64). Recording keeps a request's bodies in
/// memory until the response is done, so this bounds what each recorded request
/// adds to the server's memory (times the instances running at once), and replay
/// reads the file whole. 8 MiB holds form posts, JSON APIs and ordinary pages;
/// a large upload or download is not what a recording is for.
pub const MAX_RECORDING_BYTES: usize = 8 << 20;

/// Which requests `--record` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordOnly {
    /// Every (sampled) request.
    All,
    /// Only requests answered with a 5xx status.
    Errors,
}

/// `--record DIR`, `--record-only`, `--record-sample` for one app.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSettings {
    pub dir: PathBuf,
    pub only: RecordOnly,
    /// Record one request in this many (1: every request).
    pub sample: u64,
}

/// What the host handed the guest during one call, in the order the guest got
/// them, per source. Filled by the runtime (runtime::tape).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostValues {
    /// `wasi:clocks/wall-clock.now`: [seconds, nanoseconds] since the epoch.
    pub wall_clock: Vec<(u64, u32)>,
    /// `wasi:clocks/monotonic-clock.now`, nanoseconds.
    pub monotonic_clock: Vec<u64>,
    /// The secure generator's draws (`wasi:random/random`), in order, eight
    /// little-endian bytes each: one per `get-random-u64`, and one per eight
    /// bytes (or fewer, at the end) of a `get-random-bytes` list.
    #[serde(with = "b64")]
    pub secure_random: Vec<u8>,
    /// The same for the insecure generator (`wasi:random/insecure`).
    #[serde(with = "b64")]
    pub insecure_random: Vec<u8>,
    /// `wasi:random/insecure-seed` of the instance, as decimal (JSON numbers
    /// cannot carry 128 bits).
    pub insecure_seed: String,
    /// Host services the call used whose results are not in the recording
    /// (outbound connections, files sent by the host): a replay cannot be exact.
    pub unrecorded: Vec<String>,
}

impl HostValues {
    /// Bytes these values add to a recording (what MAX_RECORDING_BYTES counts).
    pub fn size(&self) -> usize {
        self.wall_clock.len() * 12
            + self.monotonic_clock.len() * 8
            + self.secure_random.len()
            + self.insecure_random.len()
    }
}

/// How the app was served when the request was recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppContext {
    /// The app's name in the server's log.
    pub name: String,
    /// `pooled` or `request`: in pooled mode earlier requests may have left state
    /// in the instance that the recording does not hold.
    pub isolation: String,
    /// `--validate`'s mode, if on: the SDK behaves differently with it.
    pub validate: Option<String>,
    /// The `--env` variables the app saw (replay gives it the same).
    pub env: Vec<(String, String)>,
    /// Grants whose I/O is not recorded (`--dir`, `--allow-connect`, `--allow-http`).
    pub unrecorded_grants: Vec<String>,
}

/// The response as the client got it: status, headers in order, body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedResponse {
    pub status: u16,
    pub reason: String,
    /// Values as latin-1 text, as WSGI has them.
    pub headers: Vec<(String, String)>,
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    /// False when the response was cut off (an error after the headers were sent).
    pub complete: bool,
}

impl RecordedResponse {
    /// Status, reason and headers of a response about to be sent (body empty).
    pub fn head_of(response: &Response<ResponseBody>) -> RecordedResponse {
        let status = response.status();
        let reason = match response.extensions().get::<hyper::ext::ReasonPhrase>() {
            Some(reason) => latin1(reason.as_bytes()),
            None => status.canonical_reason().unwrap_or_default().to_owned(),
        };
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), latin1(value.as_bytes())))
            .collect();
        RecordedResponse {
            status: status.as_u16(),
            reason,
            headers,
            body: Vec::new(),
            complete: true,
        }
    }
}

/// One recorded request: the file's whole content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    pub format: u32,
    /// When the request finished, RFC 3339.
    pub recorded_at: String,
    #[serde(rename = "app")]
    pub context: AppContext,
    /// Requests the instance had served before this one: in pooled isolation,
    /// those may have left state behind that this recording does not hold.
    pub instance_calls_before: u64,
    pub environ: Vec<(String, String)>,
    #[serde(with = "b64")]
    pub request_body: Vec<u8>,
    pub host: HostValues,
    pub response: RecordedResponse,
}

impl Recording {
    /// Reads and checks a recording file: a clear error, never a panic, for a file
    /// that is not one (or was cut short, or tampered with).
    pub fn read(path: &Path) -> Result<Recording, String> {
        let shown = path.display();
        let size = fs::metadata(path)
            .map_err(|e| format!("cannot read {shown}: {e}"))?
            .len();
        // Base64 makes a file up to 4/3 of its content, plus JSON syntax.
        if size > (MAX_RECORDING_BYTES as u64) * 2 {
            return Err(format!(
                "{shown} is {size} bytes: larger than any recording (at most {MAX_RECORDING_BYTES} bytes of content)"
            ));
        }
        let text = fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        // The version first, so a newer format is named as such rather than as
        // whichever field it added.
        #[derive(Deserialize)]
        struct Version {
            format: Option<u32>,
        }
        let version: Version =
            serde_json::from_slice(&text).map_err(|e| format!("{shown} is not a wsgi-wasm recording: {e}"))?;
        match version.format {
            Some(FORMAT_VERSION) => {}
            Some(other) if other < FORMAT_VERSION => {
                return Err(format!(
                    "{shown} is recording format {other}, made by an earlier wsgi-wasm; this one reads format {FORMAT_VERSION}: record the request again"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "{shown} is recording format {other}; this wsgi-wasm reads format {FORMAT_VERSION}"
                ));
            }
            None => return Err(format!("{shown} is not a wsgi-wasm recording: no \"format\" field")),
        }
        let recording: Recording =
            serde_json::from_slice(&text).map_err(|e| format!("{shown} is not a valid recording: {e}"))?;
        recording.host.insecure_seed.parse::<u128>().map_err(|_| {
            format!(
                "{shown} is not a valid recording: insecure_seed {:?} is not a number",
                recording.host.insecure_seed
            )
        })?;
        // An environ holds native strings: a character above latin-1 is not from a
        // server (and could not be packed for the guest).
        let invalid = |text: &String| text.chars().any(|c| u32::from(c) > 0xff);
        if let Some((key, _)) = recording.environ.iter().find(|(k, v)| invalid(k) || invalid(v)) {
            return Err(format!(
                "{shown} is not a valid recording: the environ entry {key:?} holds a character no environ can"
            ));
        }
        if !(100..=999).contains(&recording.response.status) {
            return Err(format!(
                "{shown} is not a valid recording: status {}",
                recording.response.status
            ));
        }
        Ok(recording)
    }
}

/// What one request's exchange collects while recording. Bodies stop being
/// collected once the recording would pass [`MAX_RECORDING_BYTES`].
pub struct Transcript {
    recorder: Arc<Recorder>,
    environ: Environ,
    request_body: Vec<u8>,
    pub host: HostValues,
    /// Set by the runtime: see [`Recording::instance_calls_before`].
    pub instance_calls_before: u64,
    response: RecordedResponse,
    size: usize,
    too_large: bool,
}

impl Transcript {
    pub fn add_request_body(&mut self, bytes: &[u8]) {
        if self.grow(bytes.len()) {
            self.request_body.extend_from_slice(bytes);
        }
    }

    pub fn set_head(&mut self, head: RecordedResponse) {
        self.response = head;
    }

    pub fn add_response_body(&mut self, bytes: &[u8]) {
        if self.grow(bytes.len()) {
            self.response.body.extend_from_slice(bytes);
        }
    }

    pub fn set_incomplete(&mut self) {
        self.response.complete = false;
    }

    fn grow(&mut self, more: usize) -> bool {
        self.size = self.size.saturating_add(more);
        if self.size > MAX_RECORDING_BYTES && !self.too_large {
            self.too_large = true;
            self.request_body = Vec::new();
            self.response.body = Vec::new();
        }
        !self.too_large
    }

    /// The request is over: the recorder keeps it or not, off the async threads.
    pub fn finish(mut self) {
        let recorder = self.recorder.clone();
        if recorder.only == RecordOnly::Errors && self.response.status < 500 {
            return;
        }
        let host_size = self.host.size();
        self.grow(host_size);
        if self.too_large {
            log::app(
                &recorder.context.name,
                "record",
                format!(
                    "request to {} not recorded: its recording would be over {} MiB",
                    path_of(&self.environ),
                    MAX_RECORDING_BYTES >> 20
                ),
            );
            return;
        }
        let recording = Recording {
            format: FORMAT_VERSION,
            recorded_at: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            context: recorder.context.clone(),
            instance_calls_before: self.instance_calls_before,
            environ: self
                .environ
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            request_body: self.request_body,
            host: self.host,
            response: self.response,
        };
        let write = move || {
            if let Err(e) = recorder.write(&recording) {
                log::app(&recorder.context.name, "record", format!("recording not written: {e}"));
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(write)),
            Err(_) => write(),
        }
    }
}

fn path_of(environ: &Environ) -> String {
    let get = |key: &str| {
        environ
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
            .unwrap_or_default()
    };
    format!("{}{}", get("SCRIPT_NAME"), get("PATH_INFO"))
}

/// Where one app's recordings go, and which requests are kept.
pub struct Recorder {
    dir: PathBuf,
    only: RecordOnly,
    sample: u64,
    context: AppContext,
    /// Requests seen, for sampling; also makes file names unique in the process.
    seen: AtomicU64,
    written: AtomicU64,
}

impl Recorder {
    /// Creates the directory private to this user (0700) if it is missing.
    pub fn new(settings: &RecordSettings, context: AppContext) -> Result<Arc<Recorder>, String> {
        let dir = &settings.dir;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("--record {}: cannot create the directory: {e}", dir.display()))?;
        let mode = fs::metadata(dir)
            .map_err(|e| format!("--record {}: {e}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            log::app(
                &context.name,
                "record",
                format!(
                    "--record {}: the directory is readable by other users (mode {:o}); recordings may hold secrets",
                    dir.display(),
                    mode & 0o777
                ),
            );
        }
        Ok(Arc::new(Recorder {
            dir: dir.clone(),
            only: settings.only,
            sample: settings.sample.max(1),
            context,
            seen: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }))
    }

    /// A transcript for this request, if the sample takes it.
    pub fn begin(self: &Arc<Self>, environ: &Environ) -> Option<Transcript> {
        if !self.seen.fetch_add(1, Ordering::Relaxed).is_multiple_of(self.sample) {
            return None;
        }
        let size = environ.iter().map(|(k, v)| k.len() + v.len()).sum();
        Some(Transcript {
            recorder: self.clone(),
            environ: environ.clone(),
            request_body: Vec::new(),
            host: HostValues::default(),
            instance_calls_before: 0,
            response: RecordedResponse::default(),
            size,
            too_large: false,
        })
    }

    /// Writes the file under a name that sorts by time and is unique: the time,
    /// this process's id and a counter. Written beside it first and renamed, so a
    /// reader never sees half a file; created 0600, never replacing another file.
    /// Not synced to the disk: a recording is a debugging aid, not worth a disk
    /// flush per recorded request (one lost in a power cut is acceptable).
    fn write(&self, recording: &Recording) -> Result<PathBuf, String> {
        let json = serde_json::to_vec_pretty(recording).map_err(|e| e.to_string())?;
        let stamp: String = recording
            .recorded_at
            .chars()
            .filter(|c| *c != ':' && *c != '-')
            .collect();
        let sequence = self.written.fetch_add(1, Ordering::Relaxed);
        let name = format!("{stamp}-{}-{sequence:06}.json", std::process::id());
        let path = self.dir.join(&name);
        let partial = self.dir.join(format!(".{name}.partial"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        file.write_all(&json)
            .and_then(|()| fs::rename(&partial, &path))
            .map_err(|e| {
                let _ = fs::remove_file(&partial);
                format!("{}: {e}", path.display())
            })?;
        Ok(path)
    }
}

/// Bytes as base64 strings in the JSON.
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(dir: &Path, only: RecordOnly, sample: u64) -> Arc<Recorder> {
        let settings = RecordSettings {
            dir: dir.to_owned(),
            only,
            sample,
        };
        Recorder::new(&settings, AppContext::default()).unwrap()
    }

    #[test]
    fn samples_one_request_in_n() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = recorder(&dir.path().join("r"), RecordOnly::All, 3);
        let taken = (0..9).filter(|_| recorder.begin(&Vec::new()).is_some()).count();
        assert_eq!(taken, 3);
        let mode = fs::metadata(dir.path().join("r")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn bodies_stop_at_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut transcript = recorder(dir.path(), RecordOnly::All, 1).begin(&Vec::new()).unwrap();
        transcript.add_request_body(&vec![0; MAX_RECORDING_BYTES / 2]);
        assert!(!transcript.too_large);
        transcript.add_response_body(&vec![0; MAX_RECORDING_BYTES / 2 + 1]);
        assert!(transcript.too_large && transcript.request_body.is_empty());
    }

    #[test]
    fn written_files_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = recorder(dir.path(), RecordOnly::All, 1);
        let recording = Recording {
            format: FORMAT_VERSION,
            recorded_at: "2026-12-02T14:00:00.000001Z".into(),
            context: AppContext::default(),
            instance_calls_before: 0,
            environ: vec![("PATH_INFO".into(), "/".into())],
            request_body: b"body".to_vec(),
            host: HostValues {
                insecure_seed: "7".into(),
                ..Default::default()
            },
            response: RecordedResponse {
                status: 200,
                ..Default::default()
            },
        };
        let first = recorder.write(&recording).unwrap();
        let second = recorder.write(&recording).unwrap();
        assert!(first < second, "names sort in writing order");
        assert_eq!(fs::metadata(&first).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(Recording::read(&first).unwrap(), recording);
    }

    #[test]
    fn garbled_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        for (text, expect) in [
            ("not json", "not a wsgi-wasm recording"),
            ("{}", "no \"format\" field"),
            (
                r#"{"format": 99}"#,
                "is recording format 99; this wsgi-wasm reads format 2",
            ),
            (
                r#"{"format": 1}"#,
                "format 1, made by an earlier wsgi-wasm; this one reads format 2: record the request again",
            ),
            (r#"{"format": 2, "app": "x"}"#, "not a valid recording"),
        ] {
            fs::write(&path, text).unwrap();
            let error = Recording::read(&path).unwrap_err();
            assert!(error.contains(expect), "{text}: {error}");
        }
        let mut recording = Recording {
            format: FORMAT_VERSION,
            recorded_at: String::new(),
            context: AppContext::default(),
            instance_calls_before: 0,
            environ: vec![("HTTP_X".into(), "a\u{100}b".into())],
            request_body: Vec::new(),
            host: HostValues {
                insecure_seed: "1".into(),
                ..Default::default()
            },
            response: RecordedResponse {
                status: 200,
                ..Default::default()
            },
        };
        for value in ["a\u{100}b".to_owned(), "\u{20ac}".to_owned()] {
            recording.environ[0].1 = value;
            fs::write(&path, serde_json::to_vec(&recording).unwrap()).unwrap();
            let error = Recording::read(&path).unwrap_err();
            assert!(error.contains("\"HTTP_X\" holds a character no environ can"), "{error}");
        }
    }
}
