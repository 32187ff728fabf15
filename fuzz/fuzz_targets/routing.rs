//! Request target → named credential + upstream URI must never leave the credential's URL
//! prefix (SPEC "Request handling" 1–2).
//!
//! Input: a request target `path[?query]` as raw bytes. Only targets that hyper would hand
//! to routing are used: valid UTF-8 that `http::uri::PathAndQuery` accepts, split exactly as
//! `Uri::path()` / `Uri::query()` split it. Any panic after that filter is a finding.

#![no_main]

use callout::config::UpstreamUrl;
use callout::request::{parse_target, upstream_uri};
use http::uri::{Authority, PathAndQuery, Scheme};
use libfuzzer_sys::fuzz_target;

const BASE: &str = "/base";

fn upstream() -> UpstreamUrl {
    // The parts of "https://api.example.com/base".
    UpstreamUrl {
        scheme: Scheme::HTTPS,
        authority: Authority::from_static("api.example.com"),
        base_path: BASE.to_owned(),
    }
}

/// One round of percent-decoding (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    };
    // What hyper would have accepted, split the way routing receives it from `Uri`.
    let Ok(parsed) = text.parse::<PathAndQuery>() else {
        return;
    };
    if parsed.path() != path || parsed.query() != query {
        // A fragment (dropped by `http`) or an empty path (read as "/"): routing would see
        // the normalized form, which is also an input of its own.
        return;
    }

    let Ok(target) = parse_target(path, query) else {
        return;
    };
    assert!(!target.name.is_empty() && !target.name.contains('/'));
    assert!(target.rest.is_empty() || target.rest.starts_with('/'));

    let uri = upstream_uri(&upstream(), &target);

    assert_eq!(uri.scheme_str(), Some("https"), "{text:?} -> {uri}");
    assert_eq!(
        uri.authority().map(|a| a.as_str()),
        Some("api.example.com"),
        "{text:?} -> {uri}"
    );
    let up_path = uri.path();
    assert!(
        up_path == BASE || up_path.starts_with("/base/"),
        "{text:?} -> {uri}: outside the base path"
    );
    // Byte for byte: base path + rest, and the query untouched.
    assert_eq!(&up_path[BASE.len()..], target.rest, "{text:?} -> {uri}");
    assert_eq!(uri.query(), query, "{text:?} -> {uri}");

    for segment in up_path.split('/') {
        let decoded = percent_decode(segment);
        assert!(
            decoded != b"." && decoded != b"..",
            "{text:?} -> {uri}: dot segment {segment:?}"
        );
        assert!(
            !decoded.contains(&b'/') && !decoded.contains(&b'\\'),
            "{text:?} -> {uri}: separator inside segment {segment:?}"
        );
    }
});
