//! The canonical request: the one text both sides derive from a request and sign.
//!
//! Everything here works on what goes on the wire (the path and query as sent, the header
//! values as sent), because the service rebuilds the same text from what it receives.

use http::HeaderMap;

use super::SignError;

/// How the path becomes the canonical URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRules {
    /// S3: the path as sent, not normalised and not encoded again (S3 object keys may hold
    /// `//` and `.` segments that are part of the key).
    S3,
    /// Every other service: `.`/`..` segments removed and `//` collapsed, then each segment
    /// URI-encoded. The path on the wire is already encoded once, so `%` becomes `%25`: the
    /// double encoding AWS asks of every service but S3.
    Normalized,
}

impl PathRules {
    /// The rules `service` (the scope's service name) is signed with.
    pub fn for_service(service: &str) -> Self {
        if service == "s3" {
            PathRules::S3
        } else {
            PathRules::Normalized
        }
    }
}

/// What a canonical request is built from.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    pub method: &'a str,
    /// The path as on the wire (or, in AWS's test suite, as written in the `.req`).
    pub path: &'a str,
    /// The query without `?`, as on the wire; empty when there is none.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// The `host` value to sign when `headers` has no Host (HTTP/2 carries `:authority`).
    pub host: Option<&'a str>,
    /// Lower-case names of the headers to sign, in any order, without repeats.
    pub signed: &'a [&'a str],
    /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    pub payload_hash: &'a str,
    pub rules: PathRules,
}

/// The canonical request, lines joined by `\n`:
/// method, URI, query, one `name:value` line per signed header, an empty line, the signed
/// header names `;`-joined, the payload hash.
///
/// It holds the signed header values, `x-amz-security-token` among them: never log it when
/// a session token is in use.
pub fn canonical_request(parts: &Parts<'_>) -> Result<String, SignError> {
    let mut out = String::with_capacity(256);
    out.push_str(parts.method);
    out.push('\n');
    out.push_str(&canonical_uri(parts.path, parts.rules));
    out.push('\n');
    out.push_str(&canonical_query(parts.query));
    out.push('\n');
    out.push_str(&canonical_headers(parts.headers, parts.signed, parts.host)?);
    out.push('\n');
    out.push_str(&signed_headers(parts.signed));
    out.push('\n');
    out.push_str(parts.payload_hash);
    Ok(out)
}

/// The signed header names sorted and `;`-joined, as in the canonical request and in
/// `SignedHeaders=`.
pub fn signed_headers(signed: &[&str]) -> String {
    sorted(signed).join(";")
}

fn sorted<'a>(names: &[&'a str]) -> Vec<&'a str> {
    let mut names = names.to_vec();
    names.sort_unstable();
    names.dedup();
    names
}

/// The canonical URI of `path` under `rules`.
pub fn canonical_uri(path: &str, rules: PathRules) -> String {
    match rules {
        PathRules::S3 if path.is_empty() => "/".to_owned(),
        PathRules::S3 => path.to_owned(),
        PathRules::Normalized => {
            let mut out = String::with_capacity(path.len() + 8);
            encode(normalize(path).as_bytes(), true, &mut out);
            out
        }
    }
}

/// Removes `.` and `..` segments and empty ones (`//`), as botocore and AWS's test suite
/// do: a trailing `/` stays when something is left before it.
fn normalize(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            segment => kept.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len());
    out.push('/');
    out.push_str(&kept.join("/"));
    if path.ends_with('/') && !kept.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical query: each `name=value` pair decoded, encoded again by AWS's rules,
/// sorted by encoded name then encoded value, `&`-joined. A name without `=` has an empty
/// value; empty pairs (`&&`) are dropped.
///
/// Decoding takes `+` as a space, as form-encoded queries mean it (and as AWS's own SDKs
/// parse a query): it goes out as `%20`, and a literal plus must be sent as `%2B`.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (reencode(name), reencode(value))
        })
        .collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

fn reencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    encode(&decode(text), false, &mut out);
    out
}

/// Percent-decodes `text` to bytes, `+` as a space; a `%` not followed by two hex digits is
/// kept as it is (and so encoded as `%25`), as servers read it.
fn decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let digit = |at: usize| bytes.get(at).copied().and_then(hex_value);
                match (digit(i + 1), digit(i + 2)) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// AWS's URI encoding: RFC 3986 unreserved characters kept, every other byte as upper-case
/// `%XX`; `/` kept only in paths.
pub fn encode(bytes: &[u8], keep_slash: bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in bytes {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b'/' if keep_slash => out.push('/'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(byte >> 4)] as char);
                out.push(HEX[usize::from(byte & 0xf)] as char);
            }
        }
    }
}

/// One `name:value\n` line per signed header, sorted by name; the values of a repeated
/// header joined by `,` in the order sent, each trimmed and with runs of blanks made one
/// space.
pub fn canonical_headers(
    headers: &HeaderMap,
    signed: &[&str],
    host: Option<&str>,
) -> Result<String, SignError> {
    let mut out = String::with_capacity(256);
    for name in sorted(signed) {
        out.push_str(name);
        out.push(':');
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            match host {
                Some(host) if name == "host" => out.push_str(&trim_all(host)),
                _ => {
                    return Err(SignError::MissingHeader {
                        name: name.to_owned(),
                    });
                }
            }
        }
        for (i, value) in values.enumerate() {
            // Only visible ASCII, spaces and tabs: what the service reads back the same way.
            let value = value.to_str().map_err(|_| SignError::HeaderValue {
                name: name.to_owned(),
            })?;
            if i > 0 {
                out.push(',');
            }
            out.push_str(&trim_all(value));
        }
        out.push('\n');
    }
    Ok(out)
}

/// AWS's Trimall: blanks (spaces, tabs) at either end removed, runs inside made one space.
pub fn trim_all(value: &str) -> String {
    value
        .split([' ', '\t'])
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
