//! From a request target to a named credential and the upstream path. Pure: no IO.
//!
//! The rest of the path and the query are forwarded byte for byte, so this module decides
//! on the raw bytes what an upstream might read as a path step: dot segments (raw or
//! percent-encoded) and encoded slashes or backslashes are refused rather than cleaned, and
//! nothing the caller sends, not even the `Host` header or an absolute-form target, picks
//! the upstream.

use bytes::Bytes;
use http::uri::{PathAndQuery, Uri};

use crate::config::UpstreamUrl;

/// The pieces of a request target that routing cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The first path segment: the named credential's name.
    pub name: &'a str,
    /// Everything after the name, starting with `/`, or empty for `/NAME` alone.
    pub rest: &'a str,
    pub query: Option<&'a str>,
}

/// Why a request target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the request path must start with /NAMED_CREDENTIAL")]
    NoName,
    #[error(
        "the request path has a `.` or `..` segment (raw, percent-encoded once or more, as a full-stop lookalike, or with `;` parameters)"
    )]
    DotSegment,
    #[error("the request path has an encoded `/` or `\\` (%2F, %5C) or a raw backslash")]
    EncodedSeparator,
}

/// Splits and checks a request target's path and query.
pub fn parse_target<'a>(path: &'a str, query: Option<&'a str>) -> Result<Target<'a>, TargetError> {
    let Some(after_slash) = path.strip_prefix('/') else {
        return Err(TargetError::NoName);
    };
    let (name, rest) = match after_slash.find('/') {
        Some(i) => after_slash.split_at(i),
        None => (after_slash, ""),
    };
    if name.is_empty() {
        return Err(TargetError::NoName);
    }
    check_path(rest)?;
    // The name itself cannot be a dot segment: names start with a letter and lookups are
    // exact, so `/%2e%2e/x` simply names no credential.
    Ok(Target { name, rest, query })
}

fn check_path(rest: &str) -> Result<(), TargetError> {
    // Dot segments and encoded separators need a `.`, a `%`, a backslash or a non-ASCII
    // byte (a full-stop lookalike): most paths have none and cost one pass.
    if !rest
        .bytes()
        .any(|b| matches!(b, b'.' | b'%' | b'\\') || b >= 0x80)
    {
        return Ok(());
    }
    if rest.contains('\\') {
        return Err(TargetError::EncodedSeparator);
    }
    for segment in rest.split('/') {
        check_segment(segment.as_bytes())?;
    }
    Ok(())
}

/// How many times a segment is percent-decoded in search of a dot segment or a separator.
/// Upstreams that decode twice exist (`%252e` → `%2e` → `.`); past a few rounds nothing
/// legitimate is left, so a segment that still decodes further is refused outright.
const DECODE_ROUNDS: usize = 4;

/// A segment is refused when it, or any of its percent-decodings, is a dot segment or holds
/// a separator.
fn check_segment(segment: &[u8]) -> Result<(), TargetError> {
    let mut form = std::borrow::Cow::Borrowed(segment);
    for round in 0..=DECODE_ROUNDS {
        if is_dot_segment(&form) {
            return Err(TargetError::DotSegment);
        }
        // Raw `/` cannot be in a segment; once decoded, it or `\` would split one.
        if round > 0 && has_separator(&form) {
            return Err(TargetError::EncodedSeparator);
        }
        if !form.contains(&b'%') {
            return Ok(());
        }
        let decoded = percent_decode(&form);
        if decoded == *form {
            return Ok(());
        }
        form = std::borrow::Cow::Owned(decoded);
    }
    Err(TargetError::EncodedSeparator)
}

/// Bytes that upstreams read as a full stop: `.`, the overlong UTF-8 `C0 AE`, and the
/// lookalikes U+2024 (one dot leader), U+FF0E (fullwidth full stop), U+3002 (ideographic
/// full stop), which some normalise to `.`.
const DOTS: [&[u8]; 5] = [
    b".",
    b"\xc0\xae",
    "\u{2024}".as_bytes(),
    "\u{ff0e}".as_bytes(),
    "\u{3002}".as_bytes(),
];

/// `.` or `..` (also with path parameters, `..;x`, which Tomcat and Spring read as `..`);
/// or a segment of nothing but lookalikes, or of one or two with at least one lookalike.
fn is_dot_segment(segment: &[u8]) -> bool {
    let segment = segment.split(|&b| b == b';').next().unwrap_or_default();
    let mut rest = segment;
    let (mut dots, mut lookalikes) = (0, 0);
    while !rest.is_empty() {
        let Some(dot) = DOTS.iter().find(|d| rest.starts_with(d)) else {
            return false;
        };
        rest = &rest[dot.len()..];
        if *dot == b"." {
            dots += 1;
        } else {
            lookalikes += 1;
        }
    }
    match (dots, lookalikes) {
        (1 | 2, 0) => true,
        (_, 0) => false,
        (0, _) => true,
        _ => dots + lookalikes <= 2,
    }
}

/// A `/` or `\`, or their overlong UTF-8 forms `C0 AF` and `C1 9C`.
fn has_separator(segment: &[u8]) -> bool {
    segment.iter().any(|&b| b == b'/' || b == b'\\')
        || segment.windows(2).any(|w| w == b"\xc0\xaf" || w == b"\xc1\x9c")
}

/// One round of percent-decoding; a `%` not followed by two hex digits stays as it is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// `url` + `rest` + `?query`: the upstream URI for a checked target.
pub fn upstream_uri(url: &UpstreamUrl, target: &Target<'_>) -> Uri {
    let mut pq = String::with_capacity(
        url.base_path.len() + target.rest.len() + target.query.map_or(0, |q| q.len() + 1) + 1,
    );
    pq.push_str(&url.base_path);
    pq.push_str(target.rest);
    if pq.is_empty() {
        pq.push('/');
    }
    if let Some(q) = target.query {
        pq.push('?');
        pq.push_str(q);
    }
    let path_and_query = PathAndQuery::from_maybe_shared(Bytes::from(pq))
        .expect("a valid base path joined with a path hyper already accepted is valid");
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(url.scheme.clone());
    parts.authority = Some(url.authority.clone());
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).expect("scheme, authority and path are all set")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> UpstreamUrl {
        let uri: Uri = s.parse().unwrap();
        UpstreamUrl {
            scheme: uri.scheme().unwrap().clone(),
            authority: uri.authority().unwrap().clone(),
            base_path: uri.path().trim_end_matches('/').to_owned(),
        }
    }

    fn check(base: &str, target: &str, expected: Result<&str, TargetError>) {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let got = parse_target(path, query).map(|t| upstream_uri(&url(base), &t).to_string());
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "{base} + {target}");
    }

    #[test]
    fn joins_base_path_rest_and_query_byte_for_byte() {
        let base = "https://h.example/services/data/v60.0";
        check(
            base,
            "/N/sobjects/Account",
            Ok("https://h.example/services/data/v60.0/sobjects/Account"),
        );
        check(base, "/N", Ok("https://h.example/services/data/v60.0"));
        check(base, "/N/", Ok("https://h.example/services/data/v60.0/"));
        check(base, "/N?q=1", Ok("https://h.example/services/data/v60.0?q=1"));
        check(
            base,
            "/N/a%20b/c%3F?x=%20y&z=a+b&&",
            Ok("https://h.example/services/data/v60.0/a%20b/c%3F?x=%20y&z=a+b&&"),
        );
        check("https://h.example/", "/N/x", Ok("https://h.example/x"));
        check("https://h.example", "/N", Ok("https://h.example/"));
        check(
            "http://127.0.0.1:8080/base/",
            "/N//x",
            Ok("http://127.0.0.1:8080/base//x"),
        );
        check(
            base,
            "/N/a.b/..c/...",
            Ok("https://h.example/services/data/v60.0/a.b/..c/..."),
        );
    }

    #[test]
    fn refuses_every_way_out_of_the_prefix() {
        let base = "https://h.example/base";
        for target in [
            "/N/..",
            "/N/../x",
            "/N/a/../../x",
            "/N/.",
            "/N/./x",
            "/N/%2e%2e/x",
            "/N/%2E%2E/x",
            "/N/.%2e/x",
            "/N/%2e./x",
            "/N/%2e",
            "/N/a/%2E",
            "/N/..;/admin",
            "/N/.;x/y",
            "/N/%c0%ae%c0%ae/x",
            "/N/%C0%AE.",
            // Decoded twice or more by the upstream.
            "/N/%252e%252e/x",
            "/N/%252E./x",
            "/N/%25252e/x",
            // Full-stop lookalikes, raw or encoded, alone or with a dot.
            "/N/\u{2024}\u{2024}/x",
            "/N/\u{2024}/x",
            "/N/%E2%80%A4%E2%80%A4/x",
            "/N/.%EF%BC%8E/x",
            "/N/%E3%80%82/x",
            "/N/%25E2%2580%25A4/x",
        ] {
            check(base, target, Err(TargetError::DotSegment));
        }
        for target in [
            "/N/a%2fb",
            "/N/a%2F..%2Fb",
            "/N/%5c..",
            "/N/a%5Cb",
            "/N/a\\b",
            "/N/a%252fb",
            "/N/a%255Cb",
            "/N/a%25252F",
            // Decodes further than any upstream would go.
            "/N/%2525252525252e",
            "/N/\\..\\x",
            "/N/a%c0%afb",
            "/N/%C1%9C",
        ] {
            check(base, target, Err(TargetError::EncodedSeparator));
        }
        check(base, "/", Err(TargetError::NoName));
        check(base, "//x", Err(TargetError::NoName));
        check(base, "*", Err(TargetError::NoName));
    }

    #[test]
    fn splits_the_name_exactly() {
        assert_eq!(parse_target("/Name", None).unwrap().name, "Name");
        assert_eq!(parse_target("/NameSuffix/x", None).unwrap().name, "NameSuffix");
        assert_eq!(
            parse_target("/Name/x/y", Some("a")).unwrap(),
            Target {
                name: "Name",
                rest: "/x/y",
                query: Some("a")
            }
        );
    }
}
