//! Request handling at the edges a client library would hide: which upstream URL a target
//! maps to, byte-exact forwarding, every way out of the URL prefix, hostile `Host` and
//! absolute-form targets, principal choice, header hygiene, and HTTP/2 from the caller.
//!
//! Targets that clients would normalise go out with `raw_request`, so callout sees exactly
//! the bytes under test.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::harness::{Callout, basic_config};
use crate::support::{TokenServer, Upstream, digest, http_get, raw_request};

/// A response read off the wire by [`raw`].
#[derive(Debug)]
pub(crate) struct Raw {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Raw {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `head` (request line and headers, without the blank line) plus `body` on a fresh
/// connection and parses the one response. `Connection: close` is added unless `head` has
/// its own `Connection` header (which must then say `close`).
pub(crate) async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Raw {
    let close = if head.to_ascii_lowercase().contains("\r\nconnection:") {
        ""
    } else {
        "\r\nConnection: close"
    };
    let mut request = format!("{head}{close}\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    let text = raw_request(addr, &request).await;
    parse_raw(&text).unwrap_or_else(|| panic!("no HTTP response to {head:?}: {text:?}"))
}

fn parse_raw(text: &str) -> Option<Raw> {
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            HeaderValue::from_str(value.trim()).ok()?,
        );
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let body = if chunked { dechunk(rest)? } else { rest.to_owned() };
    Some(Raw {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// `basic_config` with lines appended to the `Api` named credential, and a second named
/// credential `Bare` whose URL has no base path.
fn config(token: &TokenServer, upstream: &Upstream, named_extra: &str) -> String {
    format!(
        "{}{named_extra}\n\n[named_credentials.Bare]\nurl = \"{}\"\nexternal_credential = \"Idp\"\n",
        basic_config(token, upstream, ""),
        upstream.url(),
    )
}

struct Setup {
    token: TokenServer,
    upstream: Upstream,
    callout: Callout,
}

async fn setup(named_extra: &str) -> Setup {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&config(&token, &upstream, named_extra)).await;
    Setup {
        token,
        upstream,
        callout,
    }
}

impl Setup {
    /// `GET target` as raw HTTP/1.1, asserting the `Admin_Set` permission set.
    async fn get(&self, target: &str) -> Raw {
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nx-callout-permission-sets: Admin_Set",
            self.callout.addr
        );
        raw(self.callout.addr, &head, b"").await
    }
}

#[tokio::test]
async fn targets_map_onto_the_named_credential_url() {
    let s = setup("").await;
    // (caller's target, what the upstream must receive)
    let rows = [
        ("/Api/sobjects/Account", "/base/sobjects/Account"),
        ("/Api", "/base"),
        ("/Api?q=1", "/base?q=1"),
        // `url` + `/REST` with an empty REST: a trailing slash, not a different name.
        ("/Api/", "/base/"),
        ("/Api//x", "/base//x"),
        ("/Bare/x/y", "/x/y"),
        ("/Bare", "/"),
        ("/Bare?q=1", "/?q=1"),
    ];
    for (i, (target, expected)) in rows.iter().enumerate() {
        let response = s.get(target).await;
        assert_eq!(response.status, 200, "{target}: {response:?}");
        assert_eq!(s.upstream.requests(), i + 1, "{target}");
        assert_eq!(s.upstream.last().unwrap().target, *expected, "{target}");
    }
}

#[tokio::test]
async fn path_and_query_are_forwarded_byte_for_byte() {
    let s = setup("").await;
    let rows = [
        (
            "/Api/a%20b/c%3F?x=%20y&z=a+b&&k=%2F",
            "/base/a%20b/c%3F?x=%20y&z=a+b&&k=%2F",
        ),
        // Not decoded, not re-cased, not re-encoded.
        ("/Api/%41%7e%7E/%25", "/base/%41%7e%7E/%25"),
        ("/Api/caf%C3%A9;v=1,2", "/base/caf%C3%A9;v=1,2"),
        // Dots inside a segment are not dot segments.
        ("/Api/a.b/..c/.../.d.", "/base/a.b/..c/.../.d."),
        // The query is not a path: dots and encoded slashes there are data.
        (
            "/Api/x?p=../../etc&q=%2e%2e%2f",
            "/base/x?p=../../etc&q=%2e%2e%2f",
        ),
        ("/Api/x?a=1?b=2", "/base/x?a=1?b=2"),
    ];
    for (target, expected) in rows {
        let response = s.get(target).await;
        assert_eq!(response.status, 200, "{target}: {response:?}");
        assert_eq!(s.upstream.last().unwrap().target, expected, "{target}");
    }
    assert_eq!(s.upstream.requests(), rows.len());
}

#[tokio::test]
async fn unknown_or_miscased_names_are_404_and_send_nothing() {
    let s = setup("").await;
    for target in [
        "/Apisuffix",
        "/Apisuffix/x",
        "/ApiBare/x",
        "/api/x",
        "/API",
        "/Nope/x",
        "/Api%2Fx",
        "/.well-known/x",
    ] {
        let response = s.get(target).await;
        assert_eq!(response.status, 404, "{target}: {response:?}");
        assert_eq!(
            response.header("x-callout-error"),
            Some("unknown_named_credential"),
            "{target}"
        );
    }
    assert_eq!(s.upstream.requests(), 0);
    assert_eq!(s.token.requests(), 0);
}

#[tokio::test]
async fn every_way_out_of_the_url_prefix_is_refused_before_anything_is_sent() {
    let s = setup("").await;
    for target in [
        "/Api/..",
        "/Api/../x",
        "/Api/a/../../x",
        "/Api/a/..",
        "/Api/.",
        "/Api/./x",
        "/Api/a/.",
        "/Api/..?x=1",
        "/Api/%2e%2e/x",
        "/Api/%2E%2E/x",
        "/Api/%2e%2E/x",
        "/Api/.%2e/x",
        "/Api/%2e./x",
        "/Api/%2e/x",
        "/Api/a/%2E",
        "/Api/a%2fb",
        "/Api/a%2Fb",
        "/Api/..%2f..%2fx",
        "/Api/a%5cb",
        "/Api/a%5Cb",
        "/Api/a\\b",
        "/Api/..\\x",
        "/Bare/../x",
        "/Bare/%2e%2e",
    ] {
        let response = s.get(target).await;
        assert_eq!(response.status, 400, "{target}: {response:?}");
        assert_eq!(
            response.header("x-callout-error"),
            Some("bad_request"),
            "{target}"
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json"),
            "{target}"
        );
        assert_eq!(s.upstream.requests(), 0, "{target} reached the upstream");
        assert_eq!(s.token.requests(), 0, "{target} fetched a token");
    }
}

#[tokio::test]
async fn connect_is_405() {
    let s = setup("").await;
    let decoy = Upstream::start().await;
    let head = format!(
        "CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\nx-callout-permission-sets: Admin_Set",
        addr = decoy.addr()
    );
    let response = raw(s.callout.addr, &head, b"").await;
    assert_eq!(response.status, 405, "{response:?}");
    assert_eq!(response.header("x-callout-error"), Some("method_not_allowed"));
    assert_eq!(s.upstream.requests(), 0);
    assert_eq!(s.token.requests(), 0);
    assert_eq!(decoy.requests(), 0);
}

#[tokio::test]
async fn neither_host_nor_an_absolute_form_target_chooses_the_upstream() {
    let s = setup("").await;
    // A real server on loopback that must never hear from callout.
    let decoy = Upstream::start().await;
    let decoy_addr = decoy.addr().to_string();
    let rows = [
        ("http://evil.example/Api/x".to_owned(), "evil.example".to_owned()),
        (format!("http://{decoy_addr}/Api/x"), decoy_addr.clone()),
        (format!("http://{decoy_addr}/Api/x"), s.callout.addr.to_string()),
        ("/Api/x".to_owned(), decoy_addr.clone()),
        ("/Api/x".to_owned(), "evil.example".to_owned()),
    ];
    for (i, (target, host)) in rows.iter().enumerate() {
        let head = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nx-callout-permission-sets: Admin_Set");
        let response = raw(s.callout.addr, &head, b"").await;
        assert_eq!(response.status, 200, "{target} / {host}: {response:?}");
        assert_eq!(s.upstream.requests(), i + 1, "{target} / {host}");
        let seen = s.upstream.last().unwrap();
        assert_eq!(seen.target, "/base/x", "{target} / {host}");
        assert_eq!(
            seen.headers["host"],
            s.upstream.addr().to_string(),
            "{target} / {host}"
        );
    }
    assert_eq!(decoy.requests(), 0);
}

const PRINCIPALS: &str = r#"
[[external_credentials.Idp.principals]]
name = "High"
sequence = 30
permission_sets = ["Bronze", "Silver", "Gold", "Everyone"]
client_id = "high-client"
client_secret = "high-secret"

[[external_credentials.Idp.principals]]
name = "Low"
sequence = 1
permission_sets = ["Gold"]
client_id = "low-client"
client_secret = "low-secret"

[[external_credentials.Idp.principals]]
name = "Mid"
sequence = 7
permission_sets = ["Silver", "Gold"]
client_id = "mid-client"
client_secret = "mid-secret"
"#;

/// One request with these `x-callout-permission-sets` lines on a fresh callout (so the
/// token request shows which principal was chosen); `None` expects 403 `no_principal`
/// with nothing sent anywhere.
async fn check_principal(lines: &[&str], defaults: &str, expected_client: Option<&str>) {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"
[server]
default_permission_sets = {defaults}

[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{}"
{PRINCIPALS}
[named_credentials.Api]
url = "{}"
external_credential = "Idp"
"#,
        token.url(),
        upstream.url()
    );
    let callout = Callout::start(&toml).await;
    let headers: Vec<_> = lines.iter().map(|l| ("x-callout-permission-sets", *l)).collect();
    let (status, response_headers, body) = http_get(&callout.url("/Api/x"), &headers).await;
    let why = format!("lines {lines:?}, defaults {defaults}: {body:?}");
    match expected_client {
        Some(client) => {
            assert_eq!(status, 200, "{why}");
            assert_eq!(token.requests(), 1, "{why}");
            let request = token.last_request().unwrap();
            assert_eq!(
                request.basic_auth().map(|(id, _)| id).as_deref(),
                Some(client),
                "{why}"
            );
            let seen = upstream.last().unwrap();
            assert_eq!(
                seen.headers["authorization"],
                format!("Bearer {}", token.issued()[0]),
                "{why}"
            );
        }
        None => {
            assert_eq!(status, 403, "{why}");
            assert_eq!(response_headers["x-callout-error"], "no_principal", "{why}");
            assert_eq!(token.requests(), 0, "{why}");
            assert_eq!(upstream.requests(), 0, "{why}");
        }
    }
}

#[tokio::test]
async fn the_lowest_sequence_among_granted_principals_wins() {
    let low = Some("low-client");
    let mid = Some("mid-client");
    let high = Some("high-client");
    // Principals: Low (1: Gold), Mid (7: Silver, Gold), High (30: Bronze, Silver, Gold,
    // Everyone), declared out of sequence order.
    check_principal(&["Gold"], "[]", low).await;
    check_principal(&["Silver"], "[]", mid).await;
    check_principal(&["Bronze"], "[]", high).await;
    check_principal(&["Bronze,Silver"], "[]", mid).await;
    check_principal(&["  Bronze ,\tGold  "], "[]", low).await;
    check_principal(&["Nope, Everyone"], "[]", high).await;
    // Repeated header lines are one list.
    check_principal(&["Bronze", "Silver"], "[]", mid).await;
    check_principal(&["Everyone", "Bronze", "Gold"], "[]", low).await;
    check_principal(&["Nope", " , Silver"], "[]", mid).await;
    // Names are case-sensitive; nothing granted means nothing sent.
    check_principal(&["gold"], "[]", None).await;
    check_principal(&["Nope"], "[]", None).await;
    check_principal(&[], "[]", None).await;
}

#[tokio::test]
async fn default_permission_sets_stand_in_only_without_the_header() {
    let mid = Some("mid-client");
    check_principal(&[], r#"["Silver"]"#, mid).await;
    check_principal(&[], r#"["Nope", "Gold"]"#, Some("low-client")).await;
    // A header that is present replaces the defaults, even when it grants less or nothing.
    check_principal(&["Bronze"], r#"["Gold"]"#, Some("high-client")).await;
    check_principal(&["Nope"], r#"["Gold"]"#, None).await;
    check_principal(&[""], r#"["Gold"]"#, None).await;
}

#[tokio::test]
async fn caller_headers_are_cleaned_before_forwarding() {
    let s = setup(r#"headers = { "X-Request-Source" = "callout" }"#).await;
    let head = "GET /Api/h HTTP/1.1\r\n\
         Host: evil.example\r\n\
         Authorization: Bearer caller-own-token\r\n\
         Proxy-Authorization: Basic Y2FsbGVyOnB3\r\n\
         x-callout-permission-sets: Admin_Set\r\n\
         X-Callout-Foo: 1\r\n\
         x-callout-debug: yes\r\n\
         X-Hop: 1\r\n\
         Keep-Alive: timeout=5\r\n\
         TE: trailers\r\n\
         Upgrade: websocket\r\n\
         Proxy-Connection: keep-alive\r\n\
         X-Request-Source: caller\r\n\
         Accept: application/json\r\n\
         X-Custom: kept\r\n\
         X-Custom: twice\r\n\
         Connection: close, X-Hop";
    let response = raw(s.callout.addr, head, b"").await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen = s.upstream.last().unwrap();
    let h = &seen.headers;
    assert_eq!(
        h["authorization"],
        format!("Bearer {}", s.token.issued()[0]),
        "the caller's Authorization is replaced"
    );
    assert_eq!(h.get_all("authorization").iter().count(), 1);
    for gone in [
        "proxy-authorization",
        "x-callout-permission-sets",
        "x-callout-foo",
        "x-callout-debug",
        "x-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h:?}");
    }
    for value in h.get_all("connection") {
        let value = value.to_str().unwrap().to_ascii_lowercase();
        assert!(!value.contains("x-hop"), "{value}");
    }
    let sources: Vec<_> = h.get_all("x-request-source").iter().collect();
    assert_eq!(sources, ["callout"], "the named credential's header wins");
    assert_eq!(h["accept"], "application/json");
    let custom: Vec<_> = h.get_all("x-custom").iter().collect();
    assert_eq!(custom, ["kept", "twice"]);
    assert_eq!(h["host"], s.upstream.addr().to_string());
}

#[tokio::test]
async fn without_generate_authorization_header_the_callers_authorization_passes() {
    let s = setup("generate_authorization_header = false").await;
    let (status, _, body) = http_get(
        &s.callout.url("/Api/x"),
        &[
            ("authorization", "Basic dXNlcjpjYWxsZXItb3du"),
            ("x-callout-permission-sets", "Admin_Set"),
            ("x-callout-foo", "1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.headers["authorization"], "Basic dXNlcjpjYWxsZXItb3du");
    assert!(seen.headers.get("x-callout-foo").is_none());
    assert!(seen.headers.get("x-callout-permission-sets").is_none());
    assert_eq!(s.token.requests(), 0, "no token is needed");
}

#[tokio::test]
async fn http2_callers_are_proxied_like_http1() {
    let s = setup("").await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let send = |method: &str, path: &str, body: &'static [u8]| {
        let request = Request::builder()
            .method(method)
            .uri(s.callout.url(path))
            .header("x-callout-permission-sets", "Read_Set")
            .header("authorization", "Bearer caller-own-token")
            .header("x-callout-foo", "1")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let client = client.clone();
        async move {
            let response = client.request(request).await.expect("h2c exchange");
            assert_eq!(response.version(), Version::HTTP_2);
            let (parts, body) = response.into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };

    let (parts, body) = send("GET", "/Api/a%20b?q=%41&r", b"").await;
    assert_eq!(parts.status, StatusCode::OK, "{body:?}");
    assert_eq!(
        parts.headers["x-upstream"], "1",
        "the upstream's answer comes back"
    );
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.target, "/base/a%20b?q=%41&r");
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {}", s.token.issued()[0])
    );
    assert!(seen.headers.get("x-callout-foo").is_none());
    assert!(seen.headers.get("x-callout-permission-sets").is_none());
    assert_eq!(seen.headers["host"], s.upstream.addr().to_string());
    let client_id = s.token.last_request().unwrap().basic_auth().unwrap().0;
    assert_eq!(client_id, "reader-client");

    let payload: &'static [u8] = b"{\"over\":\"h2\"}";
    let (parts, _) = send("POST", "/Api/upload", payload).await;
    assert_eq!(parts.status, StatusCode::OK);
    let seen = s.upstream.last().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("POST", "/base/upload")
    );
    assert_eq!(seen.body_len, payload.len() as u64);
    assert_eq!(seen.body_digest, digest(payload));

    // `:path` gets the same traversal checks as an HTTP/1.1 request line.
    let (parts, _) = send("GET", "/Api/a/../../x", b"").await;
    assert_eq!(parts.status, StatusCode::BAD_REQUEST);
    assert_eq!(parts.headers["x-callout-error"], "bad_request");
    let (parts, _) = send("GET", "/Api/%2e%2e/x", b"").await;
    assert_eq!(parts.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.upstream.requests(), 2);
    assert_eq!(s.token.requests(), 1);
}
