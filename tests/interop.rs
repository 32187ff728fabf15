//! Interoperability with real OAuth 2.0 authorization servers (hardening issue, section 1),
//! and with moto's AWS endpoints for `protocol = "aws_sigv4"` (`tests/interop/aws.rs`).
//!
//! Two independent servers from the npm registry run on loopback as child processes:
//! `oidc-provider` (OpenID Certified; `tests/interop/oidc.mjs`) and `oauth2-mock-server`
//! (`tests/interop/mock.mjs`), plus Authlib from PyPI for the JWT bearer grant
//! (`tests/interop/authlib_server.py`). callout runs in-process, gets its tokens from them,
//! and forwards to upstreams that VERIFY every token against the server that minted it: by
//! RFC 7662 introspection (`IntrospectingUpstream`, in Rust), by the server's JWKS
//! (`tests/interop/rs.mjs`, with `jose`), or by the server itself (Authlib's API). The flows
//! beyond client secrets (private_key_jwt, tls_client_auth, token exchange, JWT bearer) are in
//! `tests/interop/flows.rs`. Quirks found are in `tests/interop/README.md`.
//!
//! Needs node (20.19+) and npm; the first test runs `npm ci --prefix tests/interop` when
//! `tests/interop/node_modules` does not match the lock file. The Authlib tests need python3
//! with venv and the venv `$CALLOUT_VENV` (default `target/ci-venv`), which they create and
//! fill from `tests/interop/requirements.txt` when needed (the moto tests use the same venv); the RSA test keys need `openssl`.
//! Without any of them the suite fails; it never skips.

#[path = "interop/support.rs"]
mod support;

#[path = "interop/flows.rs"]
mod flows;

#[path = "interop/aws.rs"]
mod aws;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use support::{
    Callout, IntrospectingUpstream, NodeServer, Principal, callout_config, jwks_resource_server, mock_server,
    oidc_provider, pooled_client,
};

// ---------------------------------------------------------------------------------------------
// oidc-provider's clients. oidc-provider only admits client ids and secrets made of VSCHAR
// (printable ASCII, RFC 6749 Appendix A), so these secrets carry every ASCII special that
// matters to form and Basic encoding; the non-ASCII secret goes to oauth2-mock-server below.

const BASIC_ID: &str = "basic-client";
const BASIC_SECRET: &str = "s3cr:t %+/=&?#\"'\\~!";
const POST_ID: &str = "post-client";
const POST_SECRET: &str = "p0st:s3cr t%2F+&=/?;#\\\"";
/// Only RFC 3986 unreserved characters: encoding does not change it.
const PLAIN_ID: &str = "plain-client";
const PLAIN_SECRET: &str = "Plain_Secret-0123.~";
/// A '+' but no '%': without form-encoding it decodes (to a space) without error.
const PLUS_ID: &str = "plus-client";
const PLUS_SECRET: &str = "pa+ss/w=rd:1";
/// The resource server's own client, for the introspection endpoint.
const INTROSPECTOR_ID: &str = "resource-server";
const INTROSPECTOR_SECRET: &str = "intro:sp%ct+r &=";

const API_RESOURCE: &str = "https://api.example.test/";

fn oidc_client(id: &str, secret: &str, method: &str) -> Value {
    json!({
        "client_id": id,
        "client_secret": secret,
        "grant_types": ["client_credentials"],
        "redirect_uris": [],
        "response_types": [],
        "token_endpoint_auth_method": method,
        "scope": "api:read api:write",
    })
}

/// oidc-provider with every client above and tokens living `ttl` seconds.
fn oidc(ttl: u64) -> NodeServer {
    oidc_provider(json!({
        "ttl": ttl,
        "scopes": ["openid", "offline_access", "api:read", "api:write"],
        "resources": { API_RESOURCE: { "scope": "api:read api:write" } },
        "clients": [
            oidc_client(BASIC_ID, BASIC_SECRET, "client_secret_basic"),
            oidc_client(POST_ID, POST_SECRET, "client_secret_post"),
            oidc_client(PLAIN_ID, PLAIN_SECRET, "client_secret_basic"),
            oidc_client(PLUS_ID, PLUS_SECRET, "client_secret_basic"),
            oidc_client(INTROSPECTOR_ID, INTROSPECTOR_SECRET, "client_secret_basic"),
        ],
    }))
}

async fn introspecting_upstream(idp: &NodeServer) -> IntrospectingUpstream {
    IntrospectingUpstream::start(
        &idp.get("introspection_endpoint"),
        INTROSPECTOR_ID,
        INTROSPECTOR_SECRET,
    )
    .await
}

fn principal<'a>(name: &'a str, sequence: u32, id: &'a str, secret: &'a str) -> Principal<'a> {
    Principal {
        name,
        sequence,
        permission_set: name,
        client_id: id,
        client_secret: secret,
        scope: None,
    }
}

/// Asserts a callout `token_request_failed` problem and returns its `detail`.
fn token_request_failed(status: StatusCode, headers: &http::HeaderMap, body: &Value) -> String {
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(headers["x-callout-error"], "token_request_failed", "{body}");
    assert!(
        headers[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json"),
        "{headers:?}"
    );
    assert_eq!(body["code"], "token_request_failed", "{body}");
    body["detail"].as_str().unwrap_or_default().to_owned()
}

fn assert_no_secret(text: &str) {
    for secret in [BASIC_SECRET, POST_SECRET, PLAIN_SECRET, PLUS_SECRET, MOCK_SECRET] {
        assert!(!text.contains(secret), "a client secret leaked into: {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// oidc-provider

/// `client_auth = "header"`: RFC 6749 §2.3.1 form-urlencoding before Basic, which
/// oidc-provider decodes; the token is opaque and the upstream checks it by introspection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_client_secret_basic_with_special_characters() {
    let idp = oidc(600);
    let upstream = introspecting_upstream(&idp).await;
    let mut p = principal("Svc", 1, BASIC_ID, BASIC_SECRET);
    p.scope = Some("api:read");
    let config = callout_config(
        &idp.get("token_endpoint"),
        r#"client_auth = "header""#,
        &[p],
        &format!("{}/v1", upstream.url()),
    );
    let callout = Callout::start(&config).await;

    for _ in 0..3 {
        let (status, _, body) = callout.get("/Api/things?q=1", "Svc").await;
        assert_eq!(status, 200, "{body}\noidc-provider stderr:\n{}", idp.stderr());
        let seen = &body["introspection"];
        assert_eq!(seen["active"], true, "{body}");
        assert_eq!(seen["client_id"], BASIC_ID, "{body}");
        assert_eq!(seen["scope"], "api:read", "{body}");
        assert_eq!(seen["iss"], idp.get("issuer"), "{body}");
        assert_eq!(seen["token_type"], "Bearer", "{body}");
        assert_eq!(body["path"], "/v1/things?q=1", "{body}");
    }
    // One token, minted once, reused.
    assert_eq!(upstream.distinct_tokens(), 1);
    assert_eq!(upstream.rejected(), 0, "{:?}", upstream.reasons());
    let stats = idp.stats("issuer").await;
    assert_eq!(stats["tokens_issued"], 1, "{stats}");
    assert_eq!(stats["token_requests"], 1, "{stats}");
}

/// `client_auth = "header_unencoded"` (Basic of the raw values): oidc-provider always
/// form-decodes Basic credentials (as RFC 6749 §2.3.1 says), so a secret with '%' is refused
/// as badly encoded (`invalid_request`), one with '+' (read as a space) fails authentication
/// (`invalid_client`), and one of unreserved characters only works. callout reports the
/// first two as 502 `token_request_failed` with the OAuth error code in the detail, and the
/// description in `/.callout/credentials` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_header_unencoded_against_a_decoding_server() {
    let idp = oidc(600);
    let upstream = introspecting_upstream(&idp).await;
    let config = callout_config(
        &idp.get("token_endpoint"),
        r#"client_auth = "header_unencoded""#,
        &[
            principal("Pct", 1, BASIC_ID, BASIC_SECRET),
            principal("Plus", 2, PLUS_ID, PLUS_SECRET),
            principal("Plain", 3, PLAIN_ID, PLAIN_SECRET),
        ],
        &upstream.url(),
    );
    let callout = Callout::start(&config).await;

    let (status, headers, body) = callout.get("/Api/x", "Pct").await;
    let detail = token_request_failed(status, &headers, &body);
    assert_eq!(
        detail, "token endpoint answered HTTP 400: invalid_request",
        "{body}"
    );
    assert_no_secret(&body.to_string());

    let (status, headers, body) = callout.get("/Api/x", "Plus").await;
    let detail = token_request_failed(status, &headers, &body);
    assert_eq!(
        detail, "token endpoint answered HTTP 401: invalid_client",
        "{body}"
    );
    assert_no_secret(&body.to_string());

    // The descriptions are for operators, in `/.callout/credentials`.
    let (_, _, credentials) = callout.get("/.callout/credentials", "").await;
    let text = credentials.to_string();
    assert!(
        text.contains("client_id and client_secret in the authorization header are not properly encoded"),
        "{text}"
    );
    assert!(text.contains("client authentication failed"), "{text}");
    assert_no_secret(&text);

    let (status, _, body) = callout.get("/Api/x", "Plain").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["introspection"]["client_id"], PLAIN_ID, "{body}");

    // The refused token requests never reached the upstream.
    assert_eq!((upstream.accepted(), upstream.rejected()), (1, 0));
    let stats = idp.stats("issuer").await;
    assert_eq!(
        stats["errors"],
        json!({ "invalid_request": 1, "invalid_client": 1 }),
        "{stats}"
    );
}

/// `client_auth = "body"` (client_secret_post). oidc-provider also takes the other placement
/// than the one a client registered: `token_endpoint_auth_method` does not restrict
/// client_secret_basic vs client_secret_post.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_client_secret_post() {
    let idp = oidc(600);
    let upstream = introspecting_upstream(&idp).await;
    let config = callout_config(
        &idp.get("token_endpoint"),
        "client_auth = \"body\"\nscope = \"api:write\"",
        &[
            principal("Post", 1, POST_ID, POST_SECRET),
            principal("Basic_Registered", 2, BASIC_ID, BASIC_SECRET),
        ],
        &upstream.url(),
    );
    let callout = Callout::start(&config).await;

    let (status, _, body) = callout.get("/Api/x", "Post").await;
    assert_eq!(status, 200, "{body}\noidc-provider stderr:\n{}", idp.stderr());
    assert_eq!(body["introspection"]["client_id"], POST_ID, "{body}");
    assert_eq!(body["introspection"]["scope"], "api:write", "{body}");

    let (status, _, body) = callout.get("/Api/x", "Basic_Registered").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["introspection"]["client_id"], BASIC_ID, "{body}");
    assert_eq!(upstream.rejected(), 0, "{:?}", upstream.reasons());
}

/// `token_params = { resource = ... }` (RFC 8707): oidc-provider mints a JWT access token
/// (RFC 9068, `typ: at+jwt`) whose `aud` is the resource; the upstream verifies it against
/// the JWKS with that audience.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_resource_indicator_gives_a_jwt_for_the_api_audience() {
    let idp = oidc(600);
    let rs = jwks_resource_server(json!({
        "issuer": idp.get("issuer"),
        "jwks_uri": idp.get("jwks_uri"),
        "audience": API_RESOURCE,
        "typ": "at+jwt",
    }));
    let config = callout_config(
        &idp.get("token_endpoint"),
        &format!(
            "client_auth = \"header\"\nscope = \"api:read api:write\"\ntoken_params = {{ resource = {} }}",
            support::toml_str(API_RESOURCE)
        ),
        &[principal("Svc", 1, BASIC_ID, BASIC_SECRET)],
        &rs.get("url"),
    );
    let callout = Callout::start(&config).await;

    let (status, _, body) = callout.get("/Api/orders/7", "Svc").await;
    assert_eq!(status, 200, "{body}\nrs stderr:\n{}", rs.stderr());
    let claims = &body["claims"];
    assert_eq!(claims["aud"], API_RESOURCE, "{body}");
    assert_eq!(claims["client_id"], BASIC_ID, "{body}");
    assert_eq!(claims["scope"], "api:read api:write", "{body}");
    assert_eq!(claims["iss"], idp.get("issuer"), "{body}");
    assert_eq!(body["typ"], "at+jwt", "{body}");
    assert_eq!(body["path"], "/orders/7", "{body}");
    let stats = rs.stats("url").await;
    assert_eq!(
        (stats["accepted"].as_u64(), stats["rejected"].as_u64()),
        (Some(1), Some(0)),
        "{stats}"
    );
}

/// oidc-provider does not know the `audience` parameter (Auth0/Okta style): it is ignored
/// and the token is an opaque one without `aud`. An unregistered resource is refused with
/// `invalid_target`, which callout passes on in its 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_audience_param_is_ignored_and_unknown_resource_is_invalid_target() {
    let idp = oidc(600);
    let upstream = introspecting_upstream(&idp).await;

    let config = callout_config(
        &idp.get("token_endpoint"),
        &format!(
            "scope = \"api:read\"\ntoken_params = {{ audience = {} }}",
            support::toml_str(API_RESOURCE)
        ),
        &[principal("Svc", 1, BASIC_ID, BASIC_SECRET)],
        &upstream.url(),
    );
    let callout = Callout::start(&config).await;
    let (status, _, body) = callout.get("/Api/x", "Svc").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["introspection"]["active"], true, "{body}");
    assert!(
        body["introspection"].get("aud").is_none(),
        "audience was not ignored: {body}"
    );

    let config = callout_config(
        &idp.get("token_endpoint"),
        "token_params = { resource = \"https://unknown.example.test/\" }",
        &[principal("Svc", 1, BASIC_ID, BASIC_SECRET)],
        &upstream.url(),
    );
    let callout = Callout::start(&config).await;
    let (status, headers, body) = callout.get("/Api/x", "Svc").await;
    let detail = token_request_failed(status, &headers, &body);
    assert!(detail.contains("invalid_target"), "{body}");
}

/// Tokens living 2 s, ten callers looping for 5 s: every request gets through, the
/// verifying upstream (JWKS, `exp` checked to the second) never sees an expired token, and
/// tokens are renewed several times, one token request at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_short_lived_jwts_renewed_under_load() {
    let idp = oidc(TTL.as_secs());
    let rs = jwks_resource_server(json!({
        "issuer": idp.get("issuer"),
        "jwks_uri": idp.get("jwks_uri"),
        "audience": API_RESOURCE,
        "typ": "at+jwt",
    }));
    let config = callout_config(
        &idp.get("token_endpoint"),
        &format!(
            "token_params = {{ resource = {} }}",
            support::toml_str(API_RESOURCE)
        ),
        &[principal("Svc", 1, BASIC_ID, BASIC_SECRET)],
        &rs.get("url"),
    );
    let callout = Callout::start(&config).await;
    let load = load(&callout, "/Api/load", "Svc", LOOPS, LOAD).await;

    let upstream = rs.stats("url").await;
    let server = idp.stats("issuer").await;
    let report = format!("load: {load:?}\nupstream: {upstream}\ntoken endpoint: {server}");
    eprintln!("{report}");
    load.assert_all_ok(&report);
    assert_eq!(
        upstream["rejected"], 0,
        "expired or invalid tokens were forwarded\n{report}"
    );
    assert_eq!(upstream["accepted"].as_u64(), Some(load.ok), "{report}");
    assert_renewals(
        upstream["tokens"].as_u64().unwrap(),
        &server,
        TTL,
        LOAD,
        true,
        &report,
    );
}

/// The same with opaque tokens checked by introspection: the server itself says whether
/// each token is still active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_short_lived_opaque_tokens_renewed_under_load() {
    let idp = oidc(TTL.as_secs());
    let upstream = introspecting_upstream(&idp).await;
    let config = callout_config(
        &idp.get("token_endpoint"),
        "client_auth = \"body\"",
        &[principal("Svc", 1, POST_ID, POST_SECRET)],
        &upstream.url(),
    );
    let callout = Callout::start(&config).await;
    let load = load(&callout, "/Api/load", "Svc", LOOPS, LOAD).await;

    let server = idp.stats("issuer").await;
    let report = format!(
        "load: {load:?}\nupstream: accepted {} rejected {} {:?}\ntoken endpoint: {server}",
        upstream.accepted(),
        upstream.rejected(),
        upstream.reasons()
    );
    eprintln!("{report}");
    load.assert_all_ok(&report);
    assert_eq!(upstream.rejected(), 0, "inactive tokens were forwarded\n{report}");
    assert_eq!(upstream.accepted(), load.ok, "{report}");
    assert_renewals(
        upstream.distinct_tokens() as u64,
        &server,
        TTL,
        LOAD,
        true,
        &report,
    );
}

/// Both servers compute `exp = floor(now) + expires_in`: a token minted at x.7 s with
/// `expires_in: 1` is dead at x+1.0 s, 0.3 s after it was minted. Counting the full
/// `expires_in` from the request would forward it until x+1.2 s, past the server's `exp`.
/// callout therefore counts a token's lifetime as `expires_in - 1 s`, so that no token the
/// server already considers expired is ever forwarded. With 2 s lifetimes the renewal ahead
/// of expiry would hide the problem (see the load tests), so this uses 1 s tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_tokens_are_never_forwarded_after_the_servers_exp() {
    let mut expired_forwarded = Vec::new();
    for server in ["oidc-provider", "oauth2-mock-server"] {
        let (idp, rs, ec) = if server == "oidc-provider" {
            let idp = oidc(1);
            let rs = jwks_resource_server(json!({
                "issuer": idp.get("issuer"), "jwks_uri": idp.get("jwks_uri"), "audience": API_RESOURCE,
            }));
            let ec = format!(
                "token_params = {{ resource = {} }}",
                support::toml_str(API_RESOURCE)
            );
            (idp, rs, (ec, BASIC_ID, BASIC_SECRET))
        } else {
            let idp = mock(1);
            let rs = mock_rs(&idp, None);
            (idp, rs, (String::new(), MOCK_ID, MOCK_SECRET))
        };
        let (extra, id, secret) = ec;
        let config = callout_config(
            &idp.get("token_endpoint"),
            &extra,
            &[principal("Svc", 1, id, secret)],
            &rs.get("url"),
        );
        let callout = Callout::start(&config).await;

        // Mint at x.70 s: the token's exp is x+1 s.
        sleep_until_fraction(700).await;
        let (status, _, body) = callout.get("/Api/first", "Svc").await;
        assert_eq!(status, 200, "{server}: {body}");
        // x+1.10 s: past exp, within what callout counts as usable (x.70 + 0.5 s).
        sleep_until_fraction(100).await;
        let (status, _, body) = callout.get("/Api/second", "Svc").await;
        assert_eq!(status, 200, "{server}: {body}");

        let stats = rs.stats("url").await;
        if stats["rejected"] != 0 {
            expired_forwarded.push(format!("{server}: {stats}"));
        }
    }
    assert!(
        expired_forwarded.is_empty(),
        "callout forwarded a token after the server's exp (expires_in 1 s, minted at x.7 s):\n{}",
        expired_forwarded.join("\n")
    );
}

/// Sleeps until the wall clock's sub-second part is `millis` (the next time it is).
async fn sleep_until_fraction(millis: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let fraction = now.subsec_millis() as u64;
    let wait = (1000 + millis - fraction) % 1000;
    tokio::time::sleep(Duration::from_millis(if wait < 20 { wait + 1000 } else { wait })).await;
}

// ---------------------------------------------------------------------------------------------
// oauth2-mock-server. It authenticates nobody; `mock.mjs` adds an RFC 6749 §2.3.1 check of
// this one client so that what callout sent is verified.

const MOCK_ID: &str = "mock client";
const MOCK_SECRET: &str = "s3cr:t %+/=&ü é";
const MOCK_AUD: &str = "https://mock-api.example.test";

fn mock(ttl: u64) -> NodeServer {
    mock_server(json!({ "ttl": ttl, "clients": { MOCK_ID: MOCK_SECRET } }))
}

fn mock_rs(idp: &NodeServer, audience: Option<&str>) -> NodeServer {
    jwks_resource_server(json!({
        "issuer": idp.get("issuer"),
        "jwks_uri": idp.get("jwks_uri"),
        "audience": audience,
        "typ": "JWT",
    }))
}

/// Basic with a client id holding a space and a non-ASCII secret full of specials, form-
/// encoded then base64 (RFC 6749 §2.3.1); scope and `aud` (the mock's name for the
/// audience parameter) end up in the JWT the upstream verifies against the JWKS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_client_secret_basic_with_non_ascii_secret() {
    let idp = mock(3600);
    let rs = mock_rs(&idp, Some(MOCK_AUD));
    let config = callout_config(
        &idp.get("token_endpoint"),
        &format!(
            "client_auth = \"header\"\nscope = \"read write\"\ntoken_params = {{ aud = {} }}",
            support::toml_str(MOCK_AUD)
        ),
        &[principal("Svc", 1, MOCK_ID, MOCK_SECRET)],
        &rs.get("url"),
    );
    let callout = Callout::start(&config).await;

    let (status, _, body) = callout.get("/Api/items", "Svc").await;
    assert_eq!(
        status,
        200,
        "{body}\nmock stderr:\n{}\nrs stderr:\n{}",
        idp.stderr(),
        rs.stderr()
    );
    let claims = &body["claims"];
    assert_eq!(claims["client_id"], MOCK_ID, "{body}");
    assert_eq!(claims["client_auth"], "client_secret_basic", "{body}");
    assert_eq!(claims["scope"], "read write", "{body}");
    assert_eq!(claims["aud"], MOCK_AUD, "{body}");
    assert_eq!(claims["iss"], idp.get("issuer"), "{body}");
    let stats = idp.stats("issuer").await;
    assert_eq!(
        (stats["tokens_issued"].as_u64(), stats["rejected"].as_u64()),
        (Some(1), Some(0)),
        "{stats}"
    );
}

/// `client_auth = "body"` against the mock; and the standard `audience` / `resource`
/// parameters, which the mock ignores (no `aud` claim at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_client_secret_post_and_ignored_audience_params() {
    let idp = mock(3600);
    let rs = mock_rs(&idp, None);
    let config = callout_config(
        &idp.get("token_endpoint"),
        &format!(
            "client_auth = \"body\"\ntoken_params = {{ audience = {aud}, resource = {aud} }}",
            aud = support::toml_str(MOCK_AUD)
        ),
        &[principal("Svc", 1, MOCK_ID, MOCK_SECRET)],
        &rs.get("url"),
    );
    let callout = Callout::start(&config).await;

    let (status, _, body) = callout.get("/Api/items", "Svc").await;
    assert_eq!(status, 200, "{body}\nmock stderr:\n{}", idp.stderr());
    let claims = &body["claims"];
    assert_eq!(claims["client_id"], MOCK_ID, "{body}");
    assert_eq!(claims["client_auth"], "client_secret_post", "{body}");
    assert!(claims.get("aud").is_none(), "{body}");
    assert!(claims.get("scope").is_none(), "{body}");
}

/// Tokens living 2 s from oauth2-mock-server under the same load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_short_lived_jwts_renewed_under_load() {
    let idp = mock(TTL.as_secs());
    let rs = mock_rs(&idp, Some(MOCK_AUD));
    let config = callout_config(
        &idp.get("token_endpoint"),
        &format!("token_params = {{ aud = {} }}", support::toml_str(MOCK_AUD)),
        &[principal("Svc", 1, MOCK_ID, MOCK_SECRET)],
        &rs.get("url"),
    );
    let callout = Callout::start(&config).await;
    let load = load(&callout, "/Api/load", "Svc", LOOPS, LOAD).await;

    let upstream = rs.stats("url").await;
    let server = idp.stats("issuer").await;
    let report = format!("load: {load:?}\nupstream: {upstream}\ntoken endpoint: {server}");
    eprintln!("{report}");
    load.assert_all_ok(&report);
    assert_eq!(
        upstream["rejected"], 0,
        "expired or invalid tokens were forwarded\n{report}"
    );
    assert_eq!(upstream["accepted"].as_u64(), Some(load.ok), "{report}");
    assert_renewals(
        upstream["tokens"].as_u64().unwrap(),
        &server,
        TTL,
        LOAD,
        false,
        &report,
    );
}

// ---------------------------------------------------------------------------------------------
// load

/// Token lifetime in the load tests.
const TTL: Duration = Duration::from_secs(2);
/// Concurrent callers and how long they keep going.
const LOOPS: usize = 10;
const LOAD: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Load {
    ok: u64,
    failed: u64,
    /// The first few failures: status (0 = no answer) and body. Read in failure reports.
    #[allow(dead_code)]
    failures: Vec<(u16, String)>,
    #[allow(dead_code)]
    elapsed: Duration,
}

impl Load {
    fn assert_all_ok(&self, report: &str) {
        assert_eq!(self.failed, 0, "requests failed through callout\n{report}");
        assert!(self.ok >= 50, "too few requests got through to judge\n{report}");
    }
}

/// `loops` callers, each sending `GET path` through callout back to back for `duration`.
async fn load(callout: &Callout, path: &str, sets: &'static str, loops: usize, duration: Duration) -> Load {
    let url = callout.url(path);
    let client = pooled_client();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..loops {
        let (url, client, ok, failed, failures) = (
            url.clone(),
            client.clone(),
            ok.clone(),
            failed.clone(),
            failures.clone(),
        );
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let request = Request::builder()
                    .method(Method::GET)
                    .uri(&url)
                    .header("x-callout-permission-sets", sets)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let exchange = async {
                    let response = client.request(request).await.map_err(|e| e.to_string())?;
                    let status = response.status();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    Ok::<_, String>((status, body))
                };
                let failure = match tokio::time::timeout(support::HTTP_TIMEOUT, exchange).await {
                    Ok(Ok((status, _))) if status == StatusCode::OK => None,
                    Ok(Ok((status, body))) => {
                        Some((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
                    }
                    Ok(Err(e)) => Some((0, e)),
                    Err(_) => Some((0, "timed out".to_owned())),
                };
                match failure {
                    None => ok.fetch_add(1, Ordering::Relaxed),
                    Some(f) => {
                        let mut list = failures.lock().unwrap();
                        if list.len() < 5 {
                            list.push(f);
                        }
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let failures = failures.lock().unwrap().clone();
    Load {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        failures,
        elapsed: started.elapsed(),
    }
}

/// Several tokens were minted and used (the lifetime is short), one token request at a
/// time: never a burst, every token request succeeded, and (when tokens are unique) at most
/// one renewal went unused. oauth2-mock-server's JWTs have no `jti` and RS256 signatures
/// are deterministic, so two of its tokens minted in the same second are the same string:
/// then only "at least two" can be said of the tokens seen.
fn assert_renewals(used: u64, server: &Value, ttl: Duration, duration: Duration, unique: bool, report: &str) {
    let issued = server["tokens_issued"].as_u64().unwrap();
    let requests = server["token_requests"].as_u64().unwrap();
    assert_eq!(requests, issued, "failed token requests\n{report}");
    assert!(
        issued >= 3,
        "only {issued} tokens minted with {ttl:?} lifetimes in {duration:?}\n{report}"
    );
    // A renewal per eighth of the lifetime would already be wasteful; a burst would be
    // hundreds (callout renews at 3/8 of a 2 s token today).
    let most = (duration.as_secs_f64() / (ttl.as_secs_f64() / 8.0)) as u64 + 2;
    assert!(
        issued <= most,
        "{issued} tokens minted in {duration:?}, more than {most}\n{report}"
    );
    assert!(used <= issued, "{report}");
    if unique {
        assert!(
            used + 1 >= issued,
            "{issued} tokens minted, only {used} used\n{report}"
        );
    } else {
        assert!(used >= 2, "renewed tokens were not used\n{report}");
    }
}
