//! The last line of defence against leaking secrets: every secret is
//! registered here when it is read, and everything the program prints —
//! errors, log lines, panic messages — passes through `filter`, which masks
//! registered secrets and their base64 forms (as in Basic auth headers).
//!
//! The first line of defence stays the types: secrets live in `SecretString`,
//! whose Debug prints nothing, and are exposed only where a request is built.

use std::io::Write;
use std::sync::Mutex;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// Secrets shorter than this are not masked: masking "a" would mangle every
/// message, and such a secret is no secret.
const MINIMUM_LENGTH: usize = 4;
const MASK: &str = "****";

static SECRETS: Mutex<Vec<SecretString>> = Mutex::new(Vec::new());

/// Remembers `secret` so that `filter` masks it.
pub fn register(secret: &SecretString) {
    let value = secret.expose_secret();
    if value.len() < MINIMUM_LENGTH {
        return;
    }
    let mut forms = vec![value.to_owned()];
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        forms.push(engine.encode(value));
    }
    if let Ok(mut secrets) = SECRETS.lock() {
        for form in forms {
            secrets.push(SecretString::from(form));
        }
    }
}

/// Registers the forms a Basic auth header takes: base64 of `user:password`.
pub fn register_basic(username: &str, password: &SecretString) {
    let combined = format!("{username}:{}", password.expose_secret());
    register(&SecretString::from(combined));
}

/// `text` with every registered secret masked.
pub fn filter(text: &str) -> String {
    let Ok(secrets) = SECRETS.lock() else {
        return text.to_owned();
    };
    let mut filtered = text.to_owned();
    for secret in secrets.iter() {
        let value = secret.expose_secret();
        if filtered.contains(value) {
            filtered = filtered.replace(value, MASK);
        }
    }
    filtered
}

/// A writer for log lines that masks secrets: buffers one event, writes it
/// filtered when dropped (tracing makes one writer per event).
pub struct FilteringWriter {
    buffer: Vec<u8>,
}

impl FilteringWriter {
    pub fn new() -> FilteringWriter {
        FilteringWriter { buffer: Vec::new() }
    }
}

impl Default for FilteringWriter {
    fn default() -> Self {
        FilteringWriter::new()
    }
}

impl Write for FilteringWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buffer).into_owned();
        self.buffer.clear();
        std::io::stderr().lock().write_all(filter(&text).as_bytes())
    }
}

impl Drop for FilteringWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Panic messages go through the filter too (a panic may format a value
/// that holds a secret).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|location| format!(" at {}:{}", location.file(), location.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        let _ = writeln!(
            std::io::stderr().lock(),
            "error: internal error{location}: {}\n\nhint: this is a bug in idpbuilder-push; please report it with the command you ran",
            filter(payload)
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_and_their_base64_forms_are_masked() {
        let secret = SecretString::from("redact-unit-sentinel-81f3".to_owned());
        register(&secret);
        register_basic("giteaAdmin", &secret);
        let basic = base64::engine::general_purpose::STANDARD
            .encode("giteaAdmin:redact-unit-sentinel-81f3");
        let plain_b64 =
            base64::engine::general_purpose::STANDARD.encode("redact-unit-sentinel-81f3");
        let text = format!("pw=redact-unit-sentinel-81f3 header=Basic {basic} raw={plain_b64}");
        let filtered = filter(&text);
        assert!(
            !filtered.contains("redact-unit-sentinel-81f3"),
            "{filtered}"
        );
        assert!(!filtered.contains(&basic), "{filtered}");
        assert!(!filtered.contains(&plain_b64), "{filtered}");
        assert_eq!(filter("nothing secret here"), "nothing secret here");
    }

    #[test]
    fn short_values_are_not_treated_as_secrets() {
        register(&SecretString::from("ab".to_owned()));
        assert_eq!(filter("abc"), "abc");
    }
}
