//! Key derivation lent to guests: `hashlib.pbkdf2_hmac`, which the sandbox's
//! CPython lacks (no OpenSSL) and which is ~10x slower written in Python.
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
