//! The error an app returns: a message for the server log, nothing more. The host
//! answers 500 when it arrives before the headers went out, and cuts the connection
//! when it arrives after (a client must not mistake a half body for a whole one).

use std::fmt;

/// An application error. Any `std::error::Error` (`io::Error`, `ParseIntError`...)
/// converts into it with `?`; make one from a message with [`Error::msg`] or
/// [`bail!`](crate::bail). Its text, with the chain of causes, ends up in the
/// server log, never in the response.
pub struct Error {
    message: String,
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T = (), E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
        }
    }

    /// The message, as the host will log it.
    pub fn message(&self) -> &str {
        &self.message
    }

    #[doc(hidden)]
    pub fn into_message(self) -> String {
        self.message
    }
}

// Not `impl std::error::Error for Error`, nor `From<String>`: both would collide
// with this blanket conversion (the same trade-off anyhow makes).
impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        // "outer: cause: root cause", so the log line says why, not just what.
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Error { message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.message, f)
    }
}

/// Returns early from an app with an [`Error`] made from a format string.
///
/// ```no_run
/// # fn check(n: u32) -> wsgi_wasm_guest::Result<()> {
/// if n > 1000 {
///     wsgi_wasm_guest::bail!("n={n} is too many chunks");
/// }
/// # Ok(())
/// # }
/// ```
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Error::msg(::core::format_args!($($arg)*)))
    };
}
