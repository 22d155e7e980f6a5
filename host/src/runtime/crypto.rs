//! Key derivation lent to guests: `hashlib.pbkdf2_hmac` and `hashlib.scrypt`,
//! which the sandbox's CPython lacks (no OpenSSL); PBKDF2 is ~10x slower written
//! in Python, and scrypt's memory-hard loop would be slower still.
//!
//! The loop is written here over the RustCrypto `hmac` and `sha1`/`sha2` crates
//! rather than taken from the `pbkdf2` crate because it must stop when the
//! request's CPU budget runs out: a guest asking for 2^32 rounds must not get
//! unlimited host CPU, and the `pbkdf2` crate's loop cannot be interrupted.

use std::time::Instant;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};

/// Largest derived key: 16 blocks of SHA-512. Real uses ask for one hash length
/// (32-64 bytes); a larger request is most likely a way to burn host CPU.
pub const MAX_DERIVED_KEY_BYTES: u32 = 1024;
/// Rounds between checks of the deadline: ~1-3 ms of work, so a stopped call
/// overruns its budget by about one epoch tick.
const ROUNDS_PER_DEADLINE_CHECK: u32 = 4096;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Pbkdf2Error {
    #[error("unsupported hash type {0} (the host offers sha1, sha224, sha256, sha384 and sha512)")]
    UnknownHash(String),
    #[error("iteration value must be greater than 0.")]
    NoIterations,
    #[error("key length must be between 1 and {MAX_DERIVED_KEY_BYTES} bytes")]
    BadLength,
    #[error("stopped: the request's CPU time ran out")]
    DeadlinePassed,
}

/// PBKDF2-HMAC-`hash` (RFC 8018 section 5.2), stopping with DeadlinePassed once
/// `deadline` has passed.
pub fn pbkdf2_hmac(
    hash: &str,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    dklen: u32,
    deadline: Instant,
) -> Result<Vec<u8>, Pbkdf2Error> {
    if iterations == 0 {
        return Err(Pbkdf2Error::NoIterations);
    }
    if dklen == 0 || dklen > MAX_DERIVED_KEY_BYTES {
        return Err(Pbkdf2Error::BadLength);
    }
    let mut key = vec![0; dklen as usize];
    let args = (password, salt, iterations, deadline);
    match hash.to_ascii_lowercase().as_str() {
        "sha1" => derive::<Hmac<sha1::Sha1>>(args, &mut key)?,
        "sha224" => derive::<Hmac<sha2::Sha224>>(args, &mut key)?,
        "sha256" => derive::<Hmac<sha2::Sha256>>(args, &mut key)?,
        "sha384" => derive::<Hmac<sha2::Sha384>>(args, &mut key)?,
        "sha512" => derive::<Hmac<sha2::Sha512>>(args, &mut key)?,
        _ => return Err(Pbkdf2Error::UnknownHash(hash.to_owned())),
    }
    Ok(key)
}

fn derive<M: Mac + KeyInit + Clone>(
    (password, salt, iterations, deadline): (&[u8], &[u8], u32, Instant),
    key: &mut [u8],
) -> Result<(), Pbkdf2Error> {
    let prf = <M as KeyInit>::new_from_slice(password).expect("HMAC takes keys of any length");
    let block_size = <M as hmac::digest::OutputSizeUser>::output_size();
    for (index, block) in key.chunks_mut(block_size).enumerate() {
        let mut mac = prf.clone();
        mac.update(salt);
        mac.update(&(index as u32 + 1).to_be_bytes());
        let mut u = mac.finalize().into_bytes();
        let mut t = u.clone();
        for round in 1..iterations {
            if round % ROUNDS_PER_DEADLINE_CHECK == 0 && Instant::now() > deadline {
                return Err(Pbkdf2Error::DeadlinePassed);
            }
            let mut mac = prf.clone();
            mac.update(&u);
            u = mac.finalize().into_bytes();
            t.iter_mut().zip(u.iter()).for_each(|(t, u)| *t ^= u);
        }
        block.copy_from_slice(&t[..block.len()]);
    }
    Ok(())
}

/// Most memory one scrypt call may use (128 * r * (n + p + 2) bytes, the
/// figure OpenSSL checks `maxmem` against): 4x Django's default (n=2^14, r=8:
/// 16 MiB). It is host memory, outside the guest's --max-memory, so it is capped
/// well below what a guest could ask (Python allows maxmem up to 2 GiB).
pub const MAX_SCRYPT_MEMORY: u64 = 64 << 20;
/// Python's (OpenSSL's) default `maxmem` when the caller passes 0.
const DEFAULT_SCRYPT_MAXMEM: u64 = 32 << 20;
/// Most work one scrypt call may do, as the bytes its mixing loops pass over
/// (128 * r * n * p): 16x Django's default. The crate's loop cannot be stopped
/// midway, so this bounds how far one call can run past the request's CPU
/// limit (the deadline is checked before it starts).
pub const MAX_SCRYPT_WORK: u64 = 256 << 20;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScryptError {
    #[error("n must be a power of 2.")]
    BadN,
    #[error("Invalid parameter combination for n, r, p, maxmem.")]
    BadCombination,
    #[error(
        "n, r and p ask for more than the host lends one call ({} MiB of memory, {} MiB of work)",
        MAX_SCRYPT_MEMORY >> 20,
        MAX_SCRYPT_WORK >> 20
    )]
    TooCostly,
    #[error("key length must be between 1 and {MAX_DERIVED_KEY_BYTES} bytes")]
    BadLength,
    #[error("stopped: the request's CPU time ran out")]
    DeadlinePassed,
}

/// scrypt (RFC 7914) with Python's parameter rules (`maxmem` 0 means 32 MiB),
/// refused before any work when it would pass the host's bounds or `deadline`
/// has already passed.
pub fn scrypt(
    password: &[u8],
    salt: &[u8],
    (n, r, p): (u64, u32, u32),
    maxmem: u64,
    dklen: u32,
    deadline: Instant,
) -> Result<Vec<u8>, ScryptError> {
    if n < 2 || !n.is_power_of_two() {
        return Err(ScryptError::BadN);
    }
    if dklen == 0 || dklen > MAX_DERIVED_KEY_BYTES {
        return Err(ScryptError::BadLength);
    }
    let maxmem = if maxmem == 0 { DEFAULT_SCRYPT_MAXMEM } else { maxmem };
    let block = 128 * u64::from(r);
    let memory = n
        .checked_add(u64::from(p) + 2)
        .and_then(|blocks| blocks.checked_mul(block))
        .ok_or(ScryptError::BadCombination)?;
    if r == 0 || p == 0 || memory > maxmem {
        return Err(ScryptError::BadCombination);
    }
    let work = block.saturating_mul(n).saturating_mul(u64::from(p));
    if memory > MAX_SCRYPT_MEMORY || work > MAX_SCRYPT_WORK {
        return Err(ScryptError::TooCostly);
    }
    if Instant::now() > deadline {
        return Err(ScryptError::DeadlinePassed);
    }
    // The crate's PHC key length (10..=64) is not the output length, which is
    // the buffer's: any valid one will do.
    let params = ::scrypt::Params::new(n.trailing_zeros() as u8, r, p, 32).map_err(|_| ScryptError::BadCombination)?;
    let mut key = vec![0; dklen as usize];
    ::scrypt::scrypt(password, salt, &params, &mut key).map_err(|_| ScryptError::BadLength)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn rfc_6070_vectors() {
        let cases = [
            (1, 20, "0c60c80f961f0e71f3a9b524af6012062fe037a6"),
            (2, 20, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"),
            (4096, 20, "4b007901b765489abead49d926f721d065a429c1"),
        ];
        for (iterations, dklen, expected) in cases {
            let key = pbkdf2_hmac("sha1", b"password", b"salt", iterations, dklen, later()).unwrap();
            assert_eq!(hex(&key), expected, "{iterations} iterations");
        }
        let key = pbkdf2_hmac(
            "SHA1",
            b"passwordPASSWORDpassword",
            b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
            4096,
            25,
            later(),
        )
        .unwrap();
        assert_eq!(hex(&key), "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038");
    }

    #[test]
    fn sha256_and_multi_block_keys_match_python() {
        // hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 1000, 40) natively.
        let key = pbkdf2_hmac("sha256", b"password", b"salt", 1000, 40, later()).unwrap();
        assert_eq!(
            hex(&key),
            "632c2812e46d4604102ba7618e9d6d7d2f8128f6266b4a03264d2a0460b7dcb388b3b1131f741bcb"
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert_eq!(
            pbkdf2_hmac("md5", b"p", b"s", 1, 16, later()),
            Err(Pbkdf2Error::UnknownHash("md5".into()))
        );
        assert_eq!(
            pbkdf2_hmac("sha256", b"p", b"s", 0, 32, later()),
            Err(Pbkdf2Error::NoIterations)
        );
        assert_eq!(
            pbkdf2_hmac("sha256", b"p", b"s", 1, 0, later()),
            Err(Pbkdf2Error::BadLength)
        );
        assert_eq!(
            pbkdf2_hmac("sha256", b"p", b"s", 1, MAX_DERIVED_KEY_BYTES + 1, later()),
            Err(Pbkdf2Error::BadLength)
        );
    }

    #[test]
    fn scrypt_matches_rfc_7914_and_python() {
        // RFC 7914 section 12, second and third vectors.
        let key = scrypt(b"password", b"NaCl", (1024, 8, 16), 0, 64, later()).unwrap();
        assert_eq!(
            hex(&key),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
        );
        let key = scrypt(b"pleaseletmein", b"SodiumChloride", (16384, 8, 1), 0, 64, later()).unwrap();
        assert_eq!(
            hex(&key),
            "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"
        );
        // hashlib.scrypt(b"pw", salt=b"s", n=16, r=1, p=1, dklen=10) natively.
        let key = scrypt(b"pw", b"s", (16, 1, 1), 0, 10, later()).unwrap();
        assert_eq!(hex(&key), "722af53bdb8825925201");
    }

    #[test]
    fn scrypt_refuses_bad_and_costly_parameters_before_working() {
        let run = |n, r, p, maxmem| scrypt(b"p", b"s", (n, r, p), maxmem, 32, later());
        assert_eq!(run(1000, 8, 1, 0), Err(ScryptError::BadN));
        assert_eq!(run(1, 8, 1, 0), Err(ScryptError::BadN));
        assert_eq!(run(1024, 0, 1, 0), Err(ScryptError::BadCombination));
        // 2^16 * 8 * 128 = 64 MiB: over Python's default maxmem of 32 MiB...
        assert_eq!(run(1 << 16, 8, 1, 0), Err(ScryptError::BadCombination));
        // ...and, with a larger maxmem, over what the host lends.
        assert_eq!(run(1 << 16, 8, 1, 1 << 30), Err(ScryptError::TooCostly));
        assert_eq!(run(1 << 14, 8, 64, 1 << 30), Err(ScryptError::TooCostly));
        assert_eq!(
            run(u64::MAX / 2 + 1, u32::MAX, u32::MAX, u64::MAX),
            Err(ScryptError::BadCombination)
        );
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(
            scrypt(b"p", b"s", (1024, 8, 1), 0, 32, past),
            Err(ScryptError::DeadlinePassed)
        );
    }

    #[test]
    fn a_passed_deadline_stops_the_loop() {
        let started = Instant::now();
        let result = pbkdf2_hmac(
            "sha256",
            b"p",
            b"s",
            u32::MAX,
            32,
            Instant::now() + Duration::from_millis(50),
        );
        assert_eq!(result, Err(Pbkdf2Error::DeadlinePassed));
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
