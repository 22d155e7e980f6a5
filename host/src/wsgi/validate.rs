//! `--validate`: PEP 3333 checks on both sides of the ABI for one app.
//!
//! Most rules can only be checked where the Python objects live (what the app
//! passes to start_response, what its iterable yields, how it uses wsgi.input and
//! wsgi.errors), so the host switches the Python SDK's checker on through one
//! environ key, which the SDK removes before the app sees the environ. The host's
//! own checks (response head, Content-Length) always run; under validation the SDK
//! names them as rules too. What a violation looks like in the log and what the
//! client gets is documented in README.md ("Validation").

use super::environ::{Environ, pack};

/// What a violation does to the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidateMode {
    /// The request fails with a 500 and the violation is logged: for test suites.
    Strict,
    /// The violation is logged as a warning and the response goes on as the server
    /// would send it without validation: for trying it on a running app.
    Warn,
}

impl ValidateMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidateMode::Strict => "strict",
            ValidateMode::Warn => "warn",
        }
    }
}

/// The environ key that turns the SDK's checker on (guest-sdk/python/wsgi_wasm/validate.py).
/// Not a CGI or `wsgi.` key, so no request header can produce it.
pub const ENVIRON_KEY: &str = "wsgi_wasm.validate";

/// The packed environ for the `call` export, with the checker switched on when `mode` says.
pub fn pack_for_call(environ: &Environ, mode: Option<ValidateMode>) -> String {
    match mode {
        None => pack(environ),
        Some(mode) => {
            let mut pairs: Vec<(&str, &str)> = environ.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
            pairs.push((ENVIRON_KEY, mode.as_str()));
            wsgi_wasm_rules::packed::pack(&pairs)
        }
    }
}

/// The rule a failed call broke, when the SDK's checker stopped it: its error
/// message starts with "PEP 3333 violation [RULE]".
pub fn violated_rule(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("PEP 3333 violation [")?;
    rest.split_once(']').map(|(rule, _)| rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_added_only_when_validating() {
        let environ: Environ = vec![("REQUEST_METHOD".into(), "GET".into())];
        assert_eq!(pack_for_call(&environ, None), pack(&environ));
        assert_eq!(
            pack_for_call(&environ, Some(ValidateMode::Warn)),
            "0\0A\0GET\0wsgi_wasm.validate\0warn\0"
        );
    }

    #[test]
    fn rules_are_read_from_the_sdk_message() {
        assert_eq!(
            violated_rule("PEP 3333 violation [write.type]: write() takes bytes"),
            Some("write.type")
        );
        assert_eq!(violated_rule("ValueError: x"), None);
    }
}
