//! Building the upstream request from the caller's, and the caller's response from the
//! upstream's: header hygiene both ways, the bearer token, the named credential's headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};

use crate::body::RequestBody;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the proxy's own, never passed on.
const HOP_BY_HOP: [HeaderName; 8] = [
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
    /// Cleans the caller's headers once; each attempt then adds its own token.
    pub fn new(
        method: http::Method,
        uri: Uri,
        mut headers: HeaderMap,
        extra: &HeaderMap,
        strip_authorization: bool,
    ) -> Outgoing {
        strip_hop_by_hop(&mut headers);
        headers.remove(header::PROXY_AUTHORIZATION);
        headers.remove(header::HOST);
        if strip_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        remove_callout_headers(&mut headers);
        for (name, value) in extra {
            headers.insert(name, value.clone());
        }
        Outgoing { method, uri, headers }
    }

    /// One attempt: the request with `authorization` set, if any.
    pub fn request(&self, authorization: Option<&HeaderValue>, body: RequestBody) -> Request<RequestBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        // The client chooses HTTP/2 by ALPN; a request says only what it can fall back to.
        *request.version_mut() = Version::HTTP_11;
        let headers = request.headers_mut();
        headers.reserve(self.headers.len() + 1);
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, value.clone());
        }
        request
    }
}

/// The upstream's response, minus what belongs to its connection.
pub fn clean_response<B>(mut response: Response<B>) -> Response<B> {
    strip_hop_by_hop(response.headers_mut());
    response
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

fn remove_callout_headers(headers: &mut HeaderMap) {
    let ours: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-callout-"))
        .cloned()
        .collect();
    for name in ours {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let token = HeaderValue::from_static("Bearer t");
        let req = out.request(Some(&token), RequestBody::buffered(bytes::Bytes::new()));
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
