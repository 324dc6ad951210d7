//! The `--log-level debug` HTTP trace: method, URL, status, timing and a few
//! headers, with everything secret removed: no Authorization or cookies, no
//! upload `_state`, no userinfo, no token bodies, no blob bytes.

use std::time::Instant;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use url::Url;

use super::error::display_url;

/// Headers worth showing; everything else is left out rather than redacted.
const SHOWN: [&str; 9] = [
    "content-length",
    "content-type",
    "content-range",
    "range",
    "location",
    "docker-content-digest",
    "docker-upload-uuid",
    "retry-after",
    "www-authenticate",
];

/// Challenge parameters safe to show: where to authenticate, not with what.
const SAFE_CHALLENGE_PARAMETERS: [&str; 4] = ["realm", "service", "scope", "error"];

pub fn request(method: &Method, url: &Url, headers: &HeaderMap, authorized: bool) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let auth = if authorized {
        " Authorization: <redacted>"
    } else {
        ""
    };
    tracing::debug!(
        "http -> {method} {}{}{auth}",
        display_url(url),
        shown_headers(headers)
    );
}

pub fn response(
    method: &Method,
    url: &Url,
    status: StatusCode,
    headers: &HeaderMap,
    started: Instant,
) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    tracing::debug!(
        "http <- {method} {} {status} in {} ms{}",
        display_url(url),
        started.elapsed().as_millis(),
        shown_headers(headers)
    );
}

pub fn failure(method: &Method, url: &Url, error: &str, started: Instant) {
    tracing::debug!(
        "http <- {method} {} failed after {} ms: {error}",
        display_url(url),
        started.elapsed().as_millis()
    );
}

fn shown_headers(headers: &HeaderMap) -> String {
    let mut text = String::new();
    for name in SHOWN {
        for value in headers.get_all(name) {
            let Ok(value) = value.to_str() else { continue };
            let value = match name {
                "location" => redact_location(value),
                "www-authenticate" => redact_challenge(value),
                _ => value.to_owned(),
            };
            text.push_str(&format!(" {name}: {value};"));
        }
    }
    text
}

/// Locations are often relative; either way the query (`_state`) goes.
fn redact_location(value: &str) -> String {
    match value.split_once('?') {
        Some((path, _)) => format!("{path}?<redacted>"),
        None => value.to_owned(),
    }
}

/// Keeps the scheme and the parameters that say where to authenticate.
pub fn redact_challenge(value: &str) -> String {
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let mut kept = Vec::new();
    let mut remaining = rest;
    while let Some(equals) = remaining.find('=') {
        let name = remaining[..equals].trim().trim_start_matches(',').trim();
        let after = &remaining[equals + 1..];
        let (raw_value, rest) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&after[..end + 2], &quoted[end + 1..]),
                None => (after, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        if SAFE_CHALLENGE_PARAMETERS
            .iter()
            .any(|safe| safe.eq_ignore_ascii_case(name))
        {
            kept.push(format!("{name}={raw_value}"));
        } else {
            kept.push(format!("{name}=<redacted>"));
        }
        remaining = rest;
    }
    format!("{scheme} {}", kept.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn challenges_keep_where_and_drop_what() {
        let value = r#"Bearer realm="https://g/v2/token",service="container_registry",scope="*",nonce="s3cret""#;
        assert_eq!(
            redact_challenge(value),
            r#"Bearer realm="https://g/v2/token",service="container_registry",scope="*",nonce=<redacted>"#
        );
        assert_eq!(redact_challenge(r#"Basic realm="x""#), r#"Basic realm="x""#);
    }

    #[test]
    fn only_listed_headers_are_shown_and_locations_lose_their_query() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("Bearer tok-sentinel"),
        );
        headers.insert(
            "set-cookie",
            HeaderValue::from_static("session=cookie-sentinel"),
        );
        headers.insert(
            "location",
            HeaderValue::from_static("/v2/a/blobs/uploads/u?_state=state-sentinel"),
        );
        headers.insert("content-length", HeaderValue::from_static("12"));
        let shown = shown_headers(&headers);
        assert_eq!(
            shown,
            " content-length: 12; location: /v2/a/blobs/uploads/u?<redacted>;"
        );
    }
}
