//! The guest's clocks and random generators, taped: while a request is recorded
//! (`serve --record`) every value they hand the guest is noted; while one is
//! replayed (`wsgi-wasm replay`) they hand back the recorded values in order.
//! Between requests, and for apps not recorded, they are the host's own.
//!
//! One [`Tape`] belongs to an instance and is shared by its WASI context's clock
//! and generator wrappers; the call loads it before the guest runs and takes it
//! after, so a pooled instance records each request into its own log.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_core::TryRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, Rng, WasiCtxBuilder};

use crate::wsgi::recording::{HostValues, MAX_RECORDING_BYTES};

#[derive(Clone, Default)]
pub struct Tape(Arc<Mutex<Mode>>);

#[derive(Default)]
enum Mode {
    /// The host's own clocks and generators.
    #[default]
    Off,
    Recording(HostValues),
    Replaying(Replay),
}

/// Recorded values being handed back, with a cursor per source.
struct Replay {
    values: HostValues,
    wall_clock: usize,
    monotonic_clock: usize,
    secure_random: usize,
    insecure_random: usize,
    /// The first source the guest asked more of than was recorded.
    ran_out: Option<String>,
}

impl Tape {
    /// Installs the taped clocks and generators in a WASI context being built.
    /// `seed` is the instance's `insecure-seed` (a replay gives the recorded one).
    pub fn install(&self, builder: &mut WasiCtxBuilder, seed: u128) {
        builder
            .wall_clock(TapedWallClock {
                tape: self.clone(),
                host: wasmtime_wasi::clocks::wall_clock(),
            })
            .monotonic_clock(TapedMonotonicClock {
                tape: self.clone(),
                host: wasmtime_wasi::clocks::monotonic_clock(),
            })
            .secure_random(TapedRandom {
                tape: self.clone(),
                source: Source::Secure,
                host: wasmtime_wasi::thread_rng(),
            })
            .insecure_random(TapedRandom {
                tape: self.clone(),
                source: Source::Insecure,
                host: wasmtime_wasi::thread_rng(),
            })
            .insecure_random_seed(seed);
    }

    pub fn start_recording(&self) {
        *self.0.lock().unwrap() = Mode::Recording(HostValues::default());
    }

    pub fn start_replaying(&self, values: HostValues) {
        *self.0.lock().unwrap() = Mode::Replaying(Replay {
            values,
            wall_clock: 0,
            monotonic_clock: 0,
            secure_random: 0,
            insecure_random: 0,
            ran_out: None,
        });
    }

    /// Notes a host service whose results are not recorded (outbound I/O).
    pub fn note_unrecorded(&self, what: &str) {
        if let Mode::Recording(values) = &mut *self.0.lock().unwrap()
            && !values.unrecorded.iter().any(|w| w == what)
        {
            values.unrecorded.push(what.to_owned());
        }
    }

    /// Ends a recording: the values the guest got.
    pub fn take_recording(&self) -> Option<HostValues> {
        match std::mem::take(&mut *self.0.lock().unwrap()) {
            Mode::Recording(values) => Some(values),
            _ => None,
        }
    }

    /// Ends a replay: which recorded source ran out first, if any did.
    pub fn take_replay_shortfall(&self) -> Option<String> {
        match std::mem::take(&mut *self.0.lock().unwrap()) {
            Mode::Replaying(replay) => replay.ran_out,
            _ => None,
        }
    }

    /// Runs `record` on a recording, `replay` on a replay (None: ran out), or
    /// returns Host when the tape is off or full (the caller asks the host).
    fn with<T>(
        &self,
        record: impl FnOnce(&mut HostValues),
        replay: impl FnOnce(&mut Replay) -> Option<T>,
    ) -> Tapped<T> {
        match &mut *self.0.lock().unwrap() {
            Mode::Off => Tapped::Host,
            Mode::Recording(values) if is_full(values) => Tapped::Host,
            Mode::Recording(values) => {
                record(values);
                Tapped::Recorded
            }
            Mode::Replaying(state) => match replay(state) {
                Some(value) => Tapped::Replayed(value),
                None => Tapped::RanOut,
            },
        }
    }
}

enum Tapped<T> {
    Host,
    Recorded,
    Replayed(T),
    RanOut,
}

/// A recording past MAX_RECORDING_BYTES will not be written (the transcript
/// drops it when the request ends), so taping more would only grow host memory
/// for as long as the guest keeps asking: a full tape stops noting values.
fn is_full(values: &HostValues) -> bool {
    values.size() > MAX_RECORDING_BYTES
}

impl Replay {
    fn ran_out(&mut self, what: String) {
        self.ran_out.get_or_insert(what);
    }
}

struct TapedWallClock {
    tape: Tape,
    host: Box<dyn HostWallClock + Send>,
}

impl HostWallClock for TapedWallClock {
    fn resolution(&self) -> Duration {
        self.host.resolution()
    }

    fn now(&self) -> Duration {
        let mut now = None;
        let host = || self.host.now();
        let tapped = self.tape.with(
            |values| {
                let reading = host();
                values.wall_clock.push((reading.as_secs(), reading.subsec_nanos()));
                now = Some(reading);
            },
            |replay| {
                let reading = replay.values.wall_clock.get(replay.wall_clock).copied();
                replay.wall_clock += 1;
                if reading.is_none() {
                    let n = replay.values.wall_clock.len();
                    replay.ran_out(format!("the wall clock (the recording has {n} readings)"));
                }
                reading
            },
        );
        match tapped {
            Tapped::Host => self.host.now(),
            Tapped::Recorded => now.unwrap_or_default(),
            Tapped::Replayed((secs, nanos)) => Duration::new(secs, nanos.min(999_999_999)),
            // Any value: the replay is reported as failed once the call returns.
            Tapped::RanOut => Duration::ZERO,
        }
    }
}

struct TapedMonotonicClock {
    tape: Tape,
    host: Box<dyn HostMonotonicClock + Send>,
}

impl HostMonotonicClock for TapedMonotonicClock {
    fn resolution(&self) -> u64 {
        self.host.resolution()
    }

    fn now(&self) -> u64 {
        let mut now = 0;
        let tapped = self.tape.with(
            |values| {
                now = self.host.now();
                values.monotonic_clock.push(now);
            },
            |replay| {
                let reading = replay.values.monotonic_clock.get(replay.monotonic_clock).copied();
                replay.monotonic_clock += 1;
                if reading.is_none() {
                    let n = replay.values.monotonic_clock.len();
                    replay.ran_out(format!("the monotonic clock (the recording has {n} readings)"));
                }
                reading
            },
        );
        match tapped {
            Tapped::Host => self.host.now(),
            Tapped::Recorded => now,
            Tapped::Replayed(reading) => reading,
            Tapped::RanOut => 0,
        }
    }
}

#[derive(Clone, Copy)]
enum Source {
    Secure,
    Insecure,
}

struct TapedRandom {
    tape: Tape,
    source: Source,
    host: Box<dyn Rng + Send>,
}

impl TapedRandom {
    /// Fills `dest` from the host, the recording, or (ran out) with zeros.
    fn fill(&mut self, dest: &mut [u8]) {
        let mut mode = self.tape.0.lock().unwrap();
        match &mut *mode {
            Mode::Off => self.host.fill_bytes(dest),
            Mode::Recording(values) if is_full(values) => self.host.fill_bytes(dest),
            Mode::Recording(values) => {
                self.host.fill_bytes(dest);
                match self.source {
                    Source::Secure => values.secure_random.extend_from_slice(dest),
                    Source::Insecure => values.insecure_random.extend_from_slice(dest),
                }
            }
            Mode::Replaying(replay) => {
                let (bytes, cursor, name) = match self.source {
                    Source::Secure => (&replay.values.secure_random, &mut replay.secure_random, "secure"),
                    Source::Insecure => (&replay.values.insecure_random, &mut replay.insecure_random, "insecure"),
                };
                match bytes.get(*cursor..*cursor + dest.len()) {
                    Some(recorded) => {
                        dest.copy_from_slice(recorded);
                        *cursor += dest.len();
                    }
                    None => {
                        let n = bytes.len();
                        // Any bytes: the replay is reported as failed once the call returns.
                        dest.fill(0);
                        replay.ran_out(format!("the {name} random bytes (the recording has {n})"));
                    }
                }
            }
        }
    }
}

impl TryRng for TapedRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        self.fill(dest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_what_was_recorded_and_names_what_ran_out() {
        let tape = Tape::default();
        let mut random = TapedRandom {
            tape: tape.clone(),
            source: Source::Secure,
            host: wasmtime_wasi::thread_rng(),
        };
        let clock = TapedMonotonicClock {
            tape: tape.clone(),
            host: wasmtime_wasi::clocks::monotonic_clock(),
        };
        tape.start_recording();
        let (a, t) = (random.next_u64(), clock.now());
        let values = tape.take_recording().unwrap();
        assert_eq!(values.secure_random.len(), 8);
        assert_eq!(values.monotonic_clock, vec![t]);

        tape.start_replaying(values);
        assert_eq!((random.next_u64(), clock.now()), (a, t));
        assert_eq!(tape.take_replay_shortfall(), None);

        tape.start_replaying(HostValues::default());
        random.next_u32();
        clock.now();
        let shortfall = tape.take_replay_shortfall().unwrap();
        assert!(shortfall.contains("secure random bytes"), "{shortfall}");
    }

    #[test]
    fn a_recording_stops_growing_past_the_size_no_recording_may_have() {
        let tape = Tape::default();
        let mut random = TapedRandom {
            tape: tape.clone(),
            source: Source::Insecure,
            host: wasmtime_wasi::thread_rng(),
        };
        let clock = TapedWallClock {
            tape: tape.clone(),
            host: wasmtime_wasi::clocks::wall_clock(),
        };
        tape.start_recording();
        const PIECE: usize = 64 * 1024;
        let mut piece = vec![0u8; PIECE];
        for _ in 0..(3 * MAX_RECORDING_BYTES / PIECE) {
            random.fill_bytes(&mut piece);
        }
        // Past the tape's end the guest still gets the host's values.
        assert!(piece.iter().any(|&b| b != 0));
        assert!(clock.now() > Duration::from_secs(1_700_000_000));
        let values = tape.take_recording().unwrap();
        assert!(
            values.size() > MAX_RECORDING_BYTES,
            "the transcript must see it is too large"
        );
        assert!(
            values.size() <= MAX_RECORDING_BYTES + PIECE,
            "{} bytes taped",
            values.size()
        );
        assert!(values.wall_clock.is_empty());
    }
}
