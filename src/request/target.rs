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
    #[error("the request path has a `.` or `..` segment (raw, percent-encoded or with `;` parameters)")]
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
    // Dot segments and encoded separators need a `.` or a `%`: most paths have neither and
    // cost one pass.
    if !rest.bytes().any(|b| matches!(b, b'.' | b'%' | b'\\')) {
        return Ok(());
    }
    if rest.contains('\\') {
        return Err(TargetError::EncodedSeparator);
    }
    for segment in rest.split('/') {
        if is_dot_segment(segment) {
            return Err(TargetError::DotSegment);
        }
        if has_encoded_separator(segment) {
            return Err(TargetError::EncodedSeparator);
        }
    }
    Ok(())
}

/// `.` or `..`, where each dot may also be written `%2e`, `%2E` or the overlong UTF-8
/// `%C0%AE`; also with path parameters (`..;x`), which Tomcat and Spring read as `..`.
fn is_dot_segment(segment: &str) -> bool {
    let segment = segment.split(';').next().unwrap_or_default();
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if let Some(after) = strip_escape(rest, b"2e") {
            rest = after;
        } else if let Some(after) = strip_escape(rest, b"c0").and_then(|r| strip_escape(r, b"ae")) {
            rest = after;
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

/// `rest` after a leading `%XY` whose hex digits equal `hex` (lowercase), in any case.
fn strip_escape<'a>(rest: &'a [u8], hex: &[u8; 2]) -> Option<&'a [u8]> {
    (rest.len() >= 3 && rest[0] == b'%' && rest[1..3].eq_ignore_ascii_case(hex)).then(|| &rest[3..])
}

/// An encoded `/` or `\` (`%2F`, `%5C`, or their overlong forms `%C0%AF`, `%C1%9C`).
fn has_encoded_separator(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    (0..bytes.len()).any(|i| {
        let rest = &bytes[i..];
        strip_escape(rest, b"2f").is_some()
            || strip_escape(rest, b"5c").is_some()
            || strip_escape(rest, b"c0")
                .and_then(|r| strip_escape(r, b"af"))
                .is_some()
            || strip_escape(rest, b"c1")
                .and_then(|r| strip_escape(r, b"9c"))
                .is_some()
    })
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
        ] {
            check(base, target, Err(TargetError::DotSegment));
        }
        for target in [
            "/N/a%2fb",
            "/N/a%2F..%2Fb",
            "/N/%5c..",
            "/N/a%5Cb",
            "/N/a\\b",
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
