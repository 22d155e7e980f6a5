//! The packed environ: how the host hands a request's CGI keys to the guest's
//! `call` export in one string (see `call` in guest-sdk/wit/wsgi.wit), and back.
//!
//! ```text
//! CONTEXT SEP CODES SEP value SEP value ... SEP key SEP value SEP ... SEP
//! CONTEXT = FLAGS CONTEXT-CODES (CONTEXT-SEP value)*
//! ```
//!
//! - SEP is the string's last char: NUL, or U+0100 when a key or value holds a NUL
//!   (a percent-decoded path can). Values are native (latin-1) strings, so with NUL
//!   out of the way the whole string stays latin-1, which a Python guest splits
//!   without widening and narrowing every piece.
//! - CONTEXT holds what is the same for every request on one listener and mount:
//!   FLAGS, one char for wsgi.multithread, wsgi.multiprocess and wsgi.run_once
//!   (see [`flags_code`]), then the [`CONTEXT_KEYS`] the request has as codes, then
//!   their values, each after [`CONTEXT_SEPARATOR`]. A guest may build the entries
//!   of a context once and copy them for each request that sends the same one.
//! - CODES holds one char per other well-known key ([`WELL_KNOWN_KEYS`]); their
//!   values follow in the same order. A Python guest maps each one-char code
//!   (CPython keeps every one-char latin-1 string cached) to its interned key, so
//!   the keys most requests have cost no allocation and no hashing.
//! - Every other entry follows as a key and a value.
//!
//! The Python SDK's decoder (guest-sdk/python/wsgi_wasm/environ.py) mirrors
//! [`unpack`]; the host's unit tests check that it holds the same tables.

/// The separator, unless a key or value holds a NUL.
pub const SEPARATOR: char = '\0';

/// The separator when a key or value holds a NUL: no native string holds U+0100.
pub const WIDE_SEPARATOR: char = '\u{100}';

/// Separates the values in CONTEXT. A context value holding it (or a NUL) is sent
/// with the other coded entries instead.
pub const CONTEXT_SEPARATOR: char = '\u{1}';

/// Keys sent in CONTEXT when the request has them: set by the listener, the mount
/// and the connection's scheme, not by the request.
pub const CONTEXT_KEYS: [&str; 8] = [
    "SCRIPT_NAME",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
    "GATEWAY_INTERFACE",
    "HTTPS",
    "wsgi.url_scheme",
];

/// The wsgi.* flags the FLAGS char carries, as the host's environ has them
/// ("1" or "0"); a guest SDK turns them into its language's booleans.
pub const FLAG_KEYS: [&str; 3] = ["wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"];

/// The keys sent as a one-char code, with the code: the CGI keys every request
/// has and the request headers most clients send. Codes are fixed: a component
/// built by one version of wsgi-wasm runs on the next, so codes may be added but
/// never changed or reused.
pub const WELL_KNOWN_KEYS: &[(char, &str)] = &[
    ('A', "REQUEST_METHOD"),
    ('B', "SCRIPT_NAME"),
    ('C', "PATH_INFO"),
    ('D', "QUERY_STRING"),
    ('E', "CONTENT_TYPE"),
    ('F', "CONTENT_LENGTH"),
    ('G', "SERVER_NAME"),
    ('H', "SERVER_PORT"),
    ('I', "SERVER_PROTOCOL"),
    ('J', "SERVER_SOFTWARE"),
    ('K', "GATEWAY_INTERFACE"),
    ('L', "REMOTE_ADDR"),
    ('M', "REMOTE_PORT"),
    ('N', "HTTPS"),
    ('O', "wsgi.url_scheme"),
    ('P', "HTTP_HOST"),
    ('Q', "HTTP_USER_AGENT"),
    ('R', "HTTP_ACCEPT"),
    ('S', "HTTP_ACCEPT_ENCODING"),
    ('T', "HTTP_ACCEPT_LANGUAGE"),
    ('U', "HTTP_CONNECTION"),
    ('V', "HTTP_COOKIE"),
    ('W', "HTTP_REFERER"),
    ('X', "HTTP_ORIGIN"),
    ('Y', "HTTP_AUTHORIZATION"),
    ('Z', "HTTP_CACHE_CONTROL"),
    ('a', "HTTP_PRAGMA"),
    ('b', "HTTP_IF_NONE_MATCH"),
    ('c', "HTTP_IF_MODIFIED_SINCE"),
    ('d', "HTTP_RANGE"),
    ('e', "HTTP_UPGRADE_INSECURE_REQUESTS"),
    ('f', "HTTP_DNT"),
    ('g', "HTTP_SEC_FETCH_DEST"),
    ('h', "HTTP_SEC_FETCH_MODE"),
    ('i', "HTTP_SEC_FETCH_SITE"),
    ('j', "HTTP_SEC_FETCH_USER"),
    ('k', "HTTP_SEC_CH_UA"),
    ('l', "HTTP_SEC_CH_UA_MOBILE"),
    ('m', "HTTP_SEC_CH_UA_PLATFORM"),
    ('n', "HTTP_X_FORWARDED_FOR"),
    ('o', "HTTP_X_FORWARDED_PROTO"),
    ('p', "HTTP_X_FORWARDED_HOST"),
    ('q', "HTTP_X_REAL_IP"),
    ('r', "HTTP_X_REQUEST_ID"),
    ('s', "HTTP_X_REQUESTED_WITH"),
    ('t', "HTTP_FORWARDED"),
    ('u', "HTTP_EXPECT"),
    ('v', "HTTP_PRIORITY"),
];

/// The code of a well-known key. The host looks up every key of every request:
/// comparing lengths first makes most of the ~50 misses one integer test.
pub fn key_code(key: &str) -> Option<char> {
    WELL_KNOWN_KEYS
        .iter()
        .find(|(_, known)| known.len() == key.len() && *known == key)
        .map(|(code, _)| *code)
}

/// The key a code stands for.
pub fn key_of(code: char) -> Option<&'static str> {
    WELL_KNOWN_KEYS.iter().find(|(c, _)| *c == code).map(|(_, key)| *key)
}

/// The FLAGS char: '0' plus multithread (1), multiprocess (2) and run_once (4).
pub fn flags_code(multithread: bool, multiprocess: bool, run_once: bool) -> char {
    char::from(b'0' + u8::from(multithread) + 2 * u8::from(multiprocess) + 4 * u8::from(run_once))
}

/// The environ's pairs packed for `call`. The flags are read from their "1"/"0"
/// entries (absent: "0"); every other pair is sent as it is, in its order.
pub fn pack<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let has_nul = pairs
        .iter()
        .any(|(k, v)| k.as_ref().contains('\0') || v.as_ref().contains('\0'));
    let sep = if has_nul { WIDE_SEPARATOR } else { SEPARATOR };
    let in_context = |key: &str, value: &str| CONTEXT_KEYS.contains(&key) && !value.contains(['\0', CONTEXT_SEPARATOR]);

    // Where each pair goes, worked out once: the lookups are the costly part.
    enum Place {
        Context(char),
        Coded(char),
        Other,
        Flag(bool),
    }
    let places: Vec<Place> = pairs
        .iter()
        .map(|(k, v)| match key_code(k.as_ref()) {
            Some(code) if in_context(k.as_ref(), v.as_ref()) => Place::Context(code),
            Some(code) => Place::Coded(code),
            None if FLAG_KEYS.contains(&k.as_ref()) => Place::Flag(v.as_ref() == "1"),
            None => Place::Other,
        })
        .collect();
    let placed = || pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).zip(&places);

    let size: usize = pairs.iter().map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 4).sum();
    let mut packed = String::with_capacity(size + 8);
    let flag = |name: &str| placed().any(|((key, _), place)| matches!(place, Place::Flag(true)) && key == name);
    packed.push(flags_code(flag(FLAG_KEYS[0]), flag(FLAG_KEYS[1]), flag(FLAG_KEYS[2])));
    for (_, place) in placed() {
        if let Place::Context(code) = place {
            packed.push(*code);
        }
    }
    for ((_, value), place) in placed() {
        if let Place::Context(_) = place {
            packed.push(CONTEXT_SEPARATOR);
            packed.push_str(value);
        }
    }
    packed.push(sep);
    for (_, place) in placed() {
        if let Place::Coded(code) = place {
            packed.push(*code);
        }
    }
    packed.push(sep);
    for ((_, value), place) in placed() {
        if let Place::Coded(_) = place {
            packed.push_str(value);
            packed.push(sep);
        }
    }
    for ((key, value), place) in placed() {
        if let Place::Other = place {
            packed.push_str(key);
            packed.push(sep);
            packed.push_str(value);
            packed.push(sep);
        }
    }
    packed
}

/// The pairs of a packed environ: the context's entries, the coded keys, the
/// other pairs, then the three flags as "1"/"0". None if it is not in this format.
pub fn unpack(packed: &str) -> Option<Vec<(String, String)>> {
    let sep = packed.chars().next_back()?;
    if sep != SEPARATOR && sep != WIDE_SEPARATOR {
        return None;
    }
    let mut parts = packed[..packed.len() - sep.len_utf8()].split(sep);
    let mut context = parts.next()?.split(CONTEXT_SEPARATOR);
    let codes = parts.next()?;
    let (flags, context_codes) = context.next()?.split_at_checked(1)?;
    let bits = match flags.as_bytes() {
        [b @ b'0'..=b'7'] => b - b'0',
        _ => return None,
    };
    let mut pairs = Vec::with_capacity(codes.len() + 16);
    for code in context_codes.chars() {
        pairs.push((key_of(code)?.to_owned(), context.next()?.to_owned()));
    }
    if context.next().is_some() {
        return None;
    }
    for code in codes.chars() {
        pairs.push((key_of(code)?.to_owned(), parts.next()?.to_owned()));
    }
    while let Some(key) = parts.next() {
        pairs.push((key.to_owned(), parts.next()?.to_owned()));
    }
    for (i, key) in FLAG_KEYS.iter().enumerate() {
        let on = bits & (1 << i) != 0;
        pairs.push(((*key).to_owned(), if on { "1" } else { "0" }.to_owned()));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn codes_are_distinct_and_never_a_separator_or_a_flag() {
        for (i, (code, key)) in WELL_KNOWN_KEYS.iter().enumerate() {
            assert!(code.is_ascii_alphabetic(), "{code}");
            assert!(!FLAG_KEYS.contains(key));
            for (other_code, other_key) in &WELL_KNOWN_KEYS[i + 1..] {
                assert!(code != other_code && key != other_key, "{key} and {other_key}");
            }
            assert_eq!(key_code(key), Some(*code));
            assert_eq!(key_of(*code), Some(*key));
        }
        assert_eq!(key_code("HTTP_X_CUSTOM"), None);
    }

    #[test]
    fn a_plain_environ_is_latin1_with_nul_separators() {
        let env = pairs(&[
            ("REQUEST_METHOD", "GET"),
            ("PATH_INFO", "/caf\u{c3}\u{a9}"),
            ("wsgi.multithread", "0"),
            ("wsgi.multiprocess", "1"),
            ("wsgi.run_once", "1"),
            ("HTTP_X_CUSTOM", "v"),
            ("SERVER_PORT", "80"),
            ("wsgi.url_scheme", "http"),
        ]);
        let packed = pack(&env);
        assert_eq!(
            packed,
            "6HO\u{1}80\u{1}http\0AC\0GET\0/caf\u{c3}\u{a9}\0HTTP_X_CUSTOM\0v\0"
        );
        let mut expected = env.clone();
        expected.sort();
        let mut back = unpack(&packed).unwrap();
        back.sort();
        assert_eq!(back, expected);
    }

    #[test]
    fn a_nul_in_a_value_switches_to_the_wide_separator() {
        let env = pairs(&[
            ("PATH_INFO", "/a\0b\u{ff}"),
            ("SCRIPT_NAME", "/a\u{1}b"),
            ("X", ""),
            ("wsgi.multithread", "0"),
            ("wsgi.multiprocess", "0"),
            ("wsgi.run_once", "0"),
        ]);
        let packed = pack(&env);
        // SCRIPT_NAME holds the context separator, so it goes with the other codes.
        assert_eq!(
            packed,
            "0\u{100}CB\u{100}/a\0b\u{ff}\u{100}/a\u{1}b\u{100}X\u{100}\u{100}"
        );
        assert_eq!(unpack(&packed).unwrap(), env);
    }

    #[test]
    fn malformed_strings_are_refused() {
        for bad in [
            "",
            "0",
            "0\0",
            "9\0\0",
            "\0\0\0",
            "0\0?\0v\0",
            "0\0A\0",
            "0\0\0k\0",
            "0\u{101}",
            "0H\0\0\0",
            "0\u{1}x\0\0\0",
        ] {
            assert_eq!(unpack(bad), None, "{bad:?}");
        }
        assert_eq!(unpack("0\0\0").unwrap().len(), 3);
    }
}
