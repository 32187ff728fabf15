//! Building the upstream request from the caller's, and the caller's response from the
//! upstream's: header hygiene both ways, the bearer token, the named credential's headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};

use super::body::RequestBody;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the proxy's own, never passed on.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The caller's request parts that survive into every attempt at the upstream.
pub struct Outgoing {
    pub method: http::Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl Outgoing {
    /// Cleans the caller's headers once, in one pass; each attempt then adds its own token.
    pub fn new(
        method: http::Method,
        uri: Uri,
        caller: HeaderMap,
        extra: &HeaderMap,
        strip_authorization: bool,
    ) -> Outgoing {
        let named = connection_named(&caller);
        // Room for the credential's header and the request id without growing.
        let mut headers = HeaderMap::with_capacity(caller.len() + extra.len() + 2);
        let mut current: Option<HeaderName> = None;
        for (name, value) in caller {
            // `into_iter` names a header once, then yields its further values with `None`.
            if let Some(name) = name {
                current = keep_outbound(&name, &named, strip_authorization).then_some(name);
            }
            if let Some(name) = &current {
                let value = if name == header::CONTENT_LENGTH {
                    canonical_length(value)
                } else {
                    value
                };
                headers.append(name.clone(), value);
            }
        }
        for (name, value) in extra {
            headers.insert(name, value.clone());
        }
        Outgoing { method, uri, headers }
    }

    /// One attempt: the request with `headers` (these, with what its credential added).
    pub fn request(&self, headers: HeaderMap, body: RequestBody) -> Request<RequestBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        // The client chooses HTTP/2 by ALPN; a request says only what it can fall back to.
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        request
    }
}

/// `Content-Length` as digits without leading zeros: hyper accepts `005`, and a server
/// that reads it as octal or as a string would frame the body differently from us.
fn canonical_length(value: HeaderValue) -> HeaderValue {
    let bytes = value.as_bytes();
    let canonical = bytes.iter().all(u8::is_ascii_digit) && (bytes.len() == 1 || bytes[0] != b'0');
    if canonical {
        return value;
    }
    // hyper has parsed it already, so this succeeds for every value that reaches us.
    match value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(n) => HeaderValue::from(n),
        None => value,
    }
}

/// The upstream's response, minus what belongs to its connection.
pub fn clean_response<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    // Usually `Connection: keep-alive` is the only one: take it out with its values, then
    // pay for more removals only if something else is left.
    if let header::Entry::Occupied(entry) = headers.entry(header::CONNECTION) {
        let (_, values) = entry.remove_entry_mult();
        let named = named_in_connection(values);
        for name in &named {
            headers.remove(name);
        }
    }
    if headers.keys().any(is_hop_by_hop) {
        for name in HOP_BY_HOP.iter() {
            headers.remove(name);
        }
    }
    response
}

fn keep_outbound(name: &HeaderName, named_in_connection: &[HeaderName], strip_authorization: bool) -> bool {
    !(is_hop_by_hop(name)
        || name == header::PROXY_AUTHORIZATION
        || name == header::HOST
        || (strip_authorization && name == header::AUTHORIZATION)
        || name.as_str().starts_with("x-callout-")
        || named_in_connection.contains(name))
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    // A match on the text compiles to a length switch and one comparison; comparing with
    // each `HeaderName` in `HOP_BY_HOP` cost about 90 instructions a header.
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Headers named in `Connection`, which are hop-by-hop too.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    named_in_connection(headers.get_all(header::CONNECTION).iter())
}

/// The header names listed in `Connection` values, less the hop-by-hop ones everybody
/// removes anyway. The usual `keep-alive` or `close` makes no allocation.
fn named_in_connection<'a>(values: impl IntoIterator<Item = impl AsRef<[u8]> + 'a>) -> Vec<HeaderName> {
    let mut named = Vec::new();
    for value in values {
        for token in value.as_ref().split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || HOP_BY_HOP
                    .iter()
                    .any(|h| token.eq_ignore_ascii_case(h.as_str().as_bytes()))
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token) {
                named.push(name);
            }
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hop_by_hop_match_and_table_agree() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in ["content-length", "authorization", "trailers", "x-connection"] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn strips_hop_by_hop_credentials_and_our_headers() {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Bearer caller"),
            ("authorization", "Bearer caller"),
            ("host", "evil.example"),
            ("x-callout-permission-sets", "Admin"),
            ("x-callout-anything", "1"),
            ("accept", "application/json"),
            ("x-request-source", "caller"),
        ] {
            headers.append(k, v.parse().unwrap());
        }
        let mut extra = HeaderMap::new();
        extra.insert("x-request-source", "callout".parse().unwrap());
        let out = Outgoing::new(
            http::Method::GET,
            "https://up.example/x".parse().unwrap(),
            headers,
            &extra,
            true,
        );
        let mut headers = out.headers.clone();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        let req = out.request(headers, RequestBody::buffered(bytes::Bytes::new()));
        let mut names: Vec<_> = req
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "accept: application/json",
                "authorization: Bearer t",
                "x-request-source: callout"
            ]
        );
    }
}
