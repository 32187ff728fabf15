//! The OAuth flows beyond client secrets, against real servers: `private_key_jwt` client
//! assertions (RFC 7523 §2.2), `tls_client_auth` over HTTPS (RFC 8705 §2) and token exchange
//! (RFC 8693) at oidc-provider (`oidc.mjs`), and the JWT bearer grant (RFC 7523 §2.1) at
//! Authlib (`authlib_server.py`). Every key and certificate is made by the test that uses it;
//! each test writes its own callout config.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::support::{
    self, Callout, IntrospectingUpstream, NodeServer, Pki, authlib_server, jwks_resource_server,
    oidc_provider, oidc_provider_tls, toml_str,
};
use super::{INTROSPECTOR_ID, INTROSPECTOR_SECRET, load};

// ---------------------------------------------------------------------------------------------
// Config and key helpers

/// A callout config: external credential `Idp` with `ec` (key, TOML value) lines, then the
/// `principals` blocks, and named credential `Api` → `upstream` using it.
fn config(ec: &[(&str, String)], principals: &[String], upstream: &str) -> String {
    let mut toml = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[external_credentials.Idp]\nprotocol = \"oauth2\"\ntoken_timeout = \"5s\"\n",
    );
    for (key, value) in ec {
        toml.push_str(&format!("{key} = {value}\n"));
    }
    for principal in principals {
        toml.push_str(principal);
    }
    toml.push_str(&format!(
        "\n[named_credentials.Api]\nurl = {}\nexternal_credential = \"Idp\"\ntimeout = \"10s\"\n",
        toml_str(upstream)
    ));
    toml
}

/// One `[[external_credentials.Idp.principals]]` block whose permission set is its name;
/// `keys` are (key, TOML value) lines.
fn principal(name: &str, sequence: u32, keys: &[(&str, String)]) -> String {
    let mut toml = format!(
        "\n[[external_credentials.Idp.principals]]\nname = {}\nsequence = {sequence}\npermission_sets = [{}]\n",
        toml_str(name),
        toml_str(name)
    );
    for (key, value) in keys {
        toml.push_str(&format!("{key} = {value}\n"));
    }
    toml
}

/// `{ file = "<dir>/<name>" }` after writing `pem` there.
fn key_file(dir: &tempfile::TempDir, name: &str, pem: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).unwrap();
    format!("{{ file = {} }}", toml_str(path.to_str().unwrap()))
}

/// oidc-provider client metadata for client credentials with a client secret (Basic or body),
/// no scope (a registered `scope` would need the provider's `scopes` to list it).
fn secret_client(id: &str, secret: &str) -> Value {
    json!({
        "client_id": id,
        "client_secret": secret,
        "grant_types": ["client_credentials"],
        "redirect_uris": [],
        "response_types": [],
        "token_endpoint_auth_method": "client_secret_basic",
    })
}

/// oidc-provider client metadata for `private_key_jwt` with one key (its public half is
/// registered) and the one JWS algorithm it must use.
fn pkjwt_client(id: &str, alg: &str, private_pem: &str, kid: Option<&str>) -> Value {
    let mut key = json!({ "pem": support::public_pem(private_pem) });
    if let Some(kid) = kid {
        key["kid"] = json!(kid);
    }
    json!({
        "client_id": id,
        "grant_types": ["client_credentials"],
        "redirect_uris": [],
        "response_types": [],
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": alg,
        "keys": [key],
    })
}

/// The recorded assertion (`last_assertions` of either server's stats) whose `iss` is `iss`.
fn assertion_of<'a>(stats: &'a Value, iss: &str) -> &'a Value {
    stats["last_assertions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["iss"] == iss)
        .unwrap_or_else(|| panic!("no assertion with iss {iss}: {stats}"))
}

/// What RFC 7523 and callout's contract want of every assertion: `iss` and `sub`, the
/// audience, the algorithm and `kid`, a `jti` of at least 128 random bits (22 base64url
/// characters), and a short life (the default `jwt_lifetime` is 2 minutes).
fn assert_assertion(a: &Value, iss: &str, sub: &str, aud: &str, alg: &str, kid: Option<&str>) {
    assert_eq!(a["iss"], iss, "{a}");
    assert_eq!(a["sub"], sub, "{a}");
    assert_eq!(a["aud"], aud, "{a}");
    assert_eq!(a["alg"], alg, "{a}");
    assert_eq!(a["kid"].as_str(), kid, "{a}");
    assert!(
        a["jti_length"].as_u64().is_some_and(|n| n >= 22),
        "jti too short: {a}"
    );
    assert!(
        a["lifetime"].as_i64().is_some_and(|s| s > 0 && s <= 120),
        "exp - iat should be within the 2 minute default: {a}"
    );
}

/// The headers an upstream echoed (`headers` of rs.mjs and authlib_server.py answers) carry
/// no `x-callout-*` header and, when given, nowhere the value `secret`.
fn assert_clean_headers(body: &Value, secret: Option<&str>) {
    let headers = body["headers"]
        .as_object()
        .unwrap_or_else(|| panic!("no headers echoed: {body}"));
    for (name, value) in headers {
        assert!(
            !name.starts_with("x-callout-"),
            "{name} reached the upstream: {body}"
        );
        if let Some(secret) = secret {
            assert!(
                !value.to_string().contains(secret),
                "the subject token reached the upstream in {name}"
            );
        }
    }
    assert!(
        headers
            .get("authorization")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("Bearer ")),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------------
// oidc-provider: private_key_jwt

/// Three principals, one per JWS algorithm, each with its key in another PEM format (RS256:
/// PKCS#1 and a `kid`; PS256: PKCS#8; ES256: SEC1 and `jwt_audience` = the issuer, as
/// draft-ietf-oauth-rfc7523bis recommends). oidc-provider pins each client to its algorithm,
/// verifies the signature, `iss` = `sub` = client_id, `aud`, `exp` and `jti` (replay); the
/// upstream introspects every token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_private_key_jwt_rs256_ps256_es256() {
    struct Case {
        principal: &'static str,
        client: &'static str,
        alg: &'static str,
        pem: String,
        kid: Option<&'static str>,
        issuer_audience: bool,
    }
    let cases = [
        Case {
            principal: "Rs",
            client: "pkjwt-rs256",
            alg: "RS256",
            pem: support::traditional_pem(&support::rsa_private_key()),
            kid: Some("rsa-1"),
            issuer_audience: false,
        },
        Case {
            principal: "Ps",
            client: "pkjwt-ps256",
            alg: "PS256",
            pem: support::rsa_private_key(),
            kid: None,
            issuer_audience: false,
        },
        Case {
            principal: "Es",
            client: "pkjwt-es256",
            alg: "ES256",
            pem: support::traditional_pem(&support::ec_private_key(&rcgen::PKCS_ECDSA_P256_SHA256)),
            kid: None,
            issuer_audience: true,
        },
    ];
    assert!(cases[0].pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(cases[1].pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(cases[2].pem.starts_with("-----BEGIN EC PRIVATE KEY-----"));

    let mut clients: Vec<Value> = cases
        .iter()
        .map(|c| pkjwt_client(c.client, c.alg, &c.pem, c.kid))
        .collect();
    clients.push(secret_client(INTROSPECTOR_ID, INTROSPECTOR_SECRET));
    let idp = oidc_provider(json!({ "ttl": 600, "clients": clients }));
    let upstream = IntrospectingUpstream::start(
        &idp.get("introspection_endpoint"),
        INTROSPECTOR_ID,
        INTROSPECTOR_SECRET,
    )
    .await;

    let keys = tempfile::tempdir().unwrap();
    let principals: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut lines = vec![
                ("client_id", toml_str(c.client)),
                (
                    "private_key",
                    key_file(&keys, &format!("{}.pem", c.principal), &c.pem),
                ),
                ("signing_algorithm", toml_str(c.alg)),
            ];
            if let Some(kid) = c.kid {
                lines.push(("key_id", toml_str(kid)));
            }
            if c.issuer_audience {
                lines.push(("jwt_audience", toml_str(&idp.get("issuer"))));
            }
            principal(c.principal, i as u32 + 1, &lines)
        })
        .collect();
    let token_url = idp.get("token_endpoint");
    let toml = config(
        &[
            ("flow", toml_str("client_credentials")),
            ("token_url", toml_str(&token_url)),
            ("client_auth", toml_str("private_key_jwt")),
        ],
        &principals,
        &upstream.url(),
    );
    let callout = Callout::start(&toml).await;

    for c in &cases {
        for _ in 0..2 {
            let (status, _, body) = callout.get("/Api/things", c.principal).await;
            assert_eq!(
                status,
                200,
                "{}: {body}\noidc-provider stderr:\n{}",
                c.alg,
                idp.stderr()
            );
            assert_eq!(body["introspection"]["active"], true, "{body}");
            assert_eq!(body["introspection"]["client_id"], c.client, "{body}");
        }
    }
    assert_eq!(upstream.rejected(), 0, "{:?}", upstream.reasons());
    assert_eq!(upstream.distinct_tokens(), 3);

    let stats = idp.stats("issuer").await;
    assert_eq!(stats["client_auth_failures"], json!({}), "{stats}");
    assert_eq!(stats["errors"], json!({}), "{stats}");
    assert_eq!(stats["auth_methods"], json!({ "private_key_jwt": 3 }), "{stats}");
    for c in &cases {
        assert_eq!(
            stats["by_client"][c.client],
            json!({ "requests": 1, "issued": 1 }),
            "one token request per principal: {stats}"
        );
        let aud = if c.issuer_audience {
            idp.get("issuer")
        } else {
            token_url.clone()
        };
        assert_assertion(
            assertion_of(&stats, c.client),
            c.client,
            c.client,
            &aud,
            c.alg,
            c.kid,
        );
    }
    assert_eq!(
        (stats["assertions"].as_u64(), stats["assertion_jtis"].as_u64()),
        (Some(3), Some(3)),
        "{stats}"
    );
}

/// Tokens living 2 s make callout sign many assertions: two callout instances with the same
/// key and client (two replicas, or a restart) under load. oidc-provider's replay detection
/// never fires, every token request succeeds, and no two assertions share a `jti`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_private_key_jwt_never_reuses_an_assertion() {
    const CLIENT: &str = "pkjwt-es256";
    let pem = support::ec_private_key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let idp = oidc_provider(json!({
        "ttl": 2,
        "clients": [
            pkjwt_client(CLIENT, "ES256", &pem, None),
            secret_client(INTROSPECTOR_ID, INTROSPECTOR_SECRET),
        ],
    }));
    let upstream = IntrospectingUpstream::start(
        &idp.get("introspection_endpoint"),
        INTROSPECTOR_ID,
        INTROSPECTOR_SECRET,
    )
    .await;
    let keys = tempfile::tempdir().unwrap();
    let toml = config(
        &[
            ("flow", toml_str("client_credentials")),
            ("token_url", toml_str(&idp.get("token_endpoint"))),
            ("client_auth", toml_str("private_key_jwt")),
        ],
        &[principal(
            "Svc",
            1,
            &[
                ("client_id", toml_str(CLIENT)),
                ("private_key", key_file(&keys, "es256.pem", &pem)),
                ("signing_algorithm", toml_str("ES256")),
            ],
        )],
        &upstream.url(),
    );
    let first = Callout::start(&toml).await;
    let second = Callout::start(&toml).await;
    let duration = Duration::from_secs(4);
    let (a, b) = tokio::join!(
        load(&first, "/Api/load", "Svc", 3, duration),
        load(&second, "/Api/load", "Svc", 3, duration)
    );

    let stats = idp.stats("issuer").await;
    let report = format!("first: {a:?}\nsecond: {b:?}\ntoken endpoint: {stats}");
    a.assert_all_ok(&report);
    b.assert_all_ok(&report);
    assert_eq!(upstream.rejected(), 0, "{:?}\n{report}", upstream.reasons());
    assert_eq!(stats["replays"], 0, "{report}");
    assert_eq!(stats["client_auth_failures"], json!({}), "{report}");
    assert_eq!(stats["errors"], json!({}), "{report}");
    let requests = stats["token_requests"].as_u64().unwrap();
    assert_eq!(stats["tokens_issued"].as_u64(), Some(requests), "{report}");
    assert!(requests >= 4, "too few token requests to judge\n{report}");
    assert_eq!(stats["assertions"].as_u64(), Some(requests), "{report}");
    assert_eq!(
        stats["assertion_jtis"].as_u64(),
        Some(requests),
        "a jti was used twice\n{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// oidc-provider: tls_client_auth over HTTPS

/// oidc-provider over HTTPS with a CA, server and client certificate made here (rcgen).
/// callout trusts the CA for the token endpoint (`ca_file`) and authenticates with the client
/// certificate alone (`client_auth = "tls_client_auth"`, only `client_id` in the body);
/// oidc-provider matches the certificate's subject DN and binds the token to it: the
/// introspection answer carries `cnf.x5t#S256`, the certificate's SHA-256 thumbprint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_tls_client_auth_over_https() {
    const CLIENT: &str = "mtls-client";
    let pki = Pki::new("callout-client");
    let idp = oidc_provider_tls(
        json!({
            "ttl": 600,
            "clients": [
                {
                    "client_id": CLIENT,
                    "grant_types": ["client_credentials"],
                    "redirect_uris": [],
                    "response_types": [],
                    "token_endpoint_auth_method": "tls_client_auth",
                    "tls_client_auth_subject_dn": "CN=callout-client",
                    "tls_client_certificate_bound_access_tokens": true,
                },
                secret_client(INTROSPECTOR_ID, INTROSPECTOR_SECRET),
            ],
        }),
        &pki,
    );
    let issuer = idp.get("issuer");
    assert!(issuer.starts_with("https://127.0.0.1:"), "{issuer}");
    let upstream = IntrospectingUpstream::start_with_ca(
        &idp.get("introspection_endpoint"),
        INTROSPECTOR_ID,
        INTROSPECTOR_SECRET,
        Some(&pki.ca_pem),
    )
    .await;
    let toml = config(
        &[
            ("flow", toml_str("client_credentials")),
            ("token_url", toml_str(&idp.get("token_endpoint"))),
            ("client_auth", toml_str("tls_client_auth")),
            ("ca_file", toml_str(&pki.path("ca.pem"))),
        ],
        &[principal(
            "Svc",
            1,
            &[
                ("client_id", toml_str(CLIENT)),
                (
                    "client_certificate",
                    format!("{{ file = {} }}", toml_str(&pki.path("client.pem"))),
                ),
                (
                    "private_key",
                    format!("{{ file = {} }}", toml_str(&pki.path("client.key"))),
                ),
            ],
        )],
        &upstream.url(),
    );
    let callout = Callout::start(&toml).await;

    for _ in 0..2 {
        let (status, _, body) = callout.get("/Api/things", "Svc").await;
        assert_eq!(status, 200, "{body}\noidc-provider stderr:\n{}", idp.stderr());
        let seen = &body["introspection"];
        assert_eq!(seen["active"], true, "{body}");
        assert_eq!(seen["client_id"], CLIENT, "{body}");
        assert_eq!(seen["iss"], issuer, "{body}");
        assert_eq!(
            seen["cnf"]["x5t#S256"],
            pki.client_thumbprint(),
            "the token is not bound to callout's client certificate: {body}"
        );
    }
    assert_eq!(upstream.rejected(), 0, "{:?}", upstream.reasons());

    let stats = idp.stats("issuer").await;
    assert_eq!(stats["client_auth_failures"], json!({}), "{stats}");
    assert_eq!(stats["auth_methods"], json!({ "tls_client_auth": 1 }), "{stats}");
    assert_eq!(
        stats["by_client"][CLIENT],
        json!({ "requests": 1, "issued": 1 }),
        "{stats}"
    );
}

// ---------------------------------------------------------------------------------------------
// oidc-provider: token exchange

const SUBJECT_ID: &str = "subject-client";
const SUBJECT_SECRET: &str = "subject:secret";
const SUBJECT_RESOURCE: &str = "https://frontend.example.test/";
const EXCHANGE_ID: &str = "exchange-client";
const EXCHANGE_SECRET: &str = "exch%nge+secret";
const EXCHANGE_AUDIENCE: &str = "https://backend.example.test/";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// A JWT access token from `idp` for `SUBJECT_RESOURCE`, got with a plain client credentials
/// request: what a caller would hold and hand to callout.
async fn subject_token(idp: &NodeServer) -> (String, Value) {
    let auth = support::basic_rfc6749(SUBJECT_ID, SUBJECT_SECRET);
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("resource", SUBJECT_RESOURCE)
        .finish();
    let (status, _, body) = support::http(
        Method::POST,
        &idp.get("token_endpoint"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Bytes::from(form),
    )
    .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let claims = jwt_claims(&token);
    (token, claims)
}

/// The payload of a JWT, unverified.
fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn call_with_subject(callout: &Callout, subject: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    let mut headers = vec![("x-callout-permission-sets", "Svc")];
    if let Some(subject) = subject {
        headers.push(("x-callout-subject-token", subject));
    }
    callout.get_with("/Api/orders", &headers).await
}

/// `flow = "token_exchange"`: the caller's `x-callout-subject-token` (a JWT from
/// oidc-provider) is exchanged for a token for the configured `audience`, which the upstream
/// verifies against the JWKS (`aud`, `typ: at+jwt`, `act.sub` = callout's client, not past the
/// subject token's `exp`). The exchanged token is cached per subject token; the subject token
/// itself never reaches the upstream; no subject token is 401 `subject_token_required`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_token_exchange() {
    let idp = oidc_provider(json!({
        "ttl": 600,
        "exchange_ttl": 3600,
        "resources": { SUBJECT_RESOURCE: {}, EXCHANGE_AUDIENCE: {} },
        "clients": [
            secret_client(SUBJECT_ID, SUBJECT_SECRET),
            {
                "client_id": EXCHANGE_ID,
                "client_secret": EXCHANGE_SECRET,
                "grant_types": [TOKEN_EXCHANGE],
                "redirect_uris": [],
                "response_types": [],
                "token_endpoint_auth_method": "client_secret_basic",
            },
        ],
    }));
    let rs = jwks_resource_server(json!({
        "issuer": idp.get("issuer"),
        "jwks_uri": idp.get("jwks_uri"),
        "audience": EXCHANGE_AUDIENCE,
        "typ": "at+jwt",
    }));
    let toml = config(
        &[
            ("flow", toml_str("token_exchange")),
            ("token_url", toml_str(&idp.get("token_endpoint"))),
            ("audience", toml_str(EXCHANGE_AUDIENCE)),
            (
                "requested_token_type",
                toml_str("urn:ietf:params:oauth:token-type:access_token"),
            ),
        ],
        &[principal(
            "Svc",
            1,
            &[
                ("client_id", toml_str(EXCHANGE_ID)),
                ("client_secret", toml_str(EXCHANGE_SECRET)),
            ],
        )],
        &rs.get("url"),
    );
    let callout = Callout::start(&toml).await;

    let (first, first_claims) = subject_token(&idp).await;
    let (status, _, body) = call_with_subject(&callout, Some(&first)).await;
    assert_eq!(
        status,
        200,
        "{body}\noidc-provider stderr:\n{}\nrs stderr:\n{}",
        idp.stderr(),
        rs.stderr()
    );
    let claims = &body["claims"];
    assert_eq!(claims["aud"], EXCHANGE_AUDIENCE, "{body}");
    assert_eq!(claims["client_id"], EXCHANGE_ID, "{body}");
    assert_eq!(claims["act"]["sub"], EXCHANGE_ID, "{body}");
    assert_eq!(claims["subject_token_sub"], first_claims["sub"], "{body}");
    assert_eq!(body["typ"], "at+jwt", "{body}");
    assert!(
        claims["exp"].as_u64().unwrap() <= first_claims["exp"].as_u64().unwrap(),
        "the exchanged token outlives the subject token: {body}"
    );
    assert_eq!(body["path"], "/orders", "{body}");
    assert_clean_headers(&body, Some(&first));
    let exchanged = claims["jti"].clone();
    let stats = idp.stats("issuer").await;
    assert_eq!(
        (stats["exchanges"].as_u64(), stats["exchange_subjects"].as_u64()),
        (Some(1), Some(1)),
        "{stats}"
    );

    // The same subject token again: the cached exchanged token, no new exchange.
    let (status, _, body) = call_with_subject(&callout, Some(&first)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["claims"]["jti"], exchanged, "{body}");
    assert_clean_headers(&body, Some(&first));
    let stats = idp.stats("issuer").await;
    assert_eq!(
        stats["exchanges"], 1,
        "the same subject token was exchanged twice: {stats}"
    );

    // Another subject token: one more exchange, another token.
    let (second, second_claims) = subject_token(&idp).await;
    assert_ne!(first, second);
    let (status, _, body) = call_with_subject(&callout, Some(&second)).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["claims"]["jti"], exchanged, "{body}");
    assert_eq!(
        body["claims"]["subject_token_sub"], second_claims["sub"],
        "{body}"
    );
    assert!(
        body["claims"]["exp"].as_u64().unwrap() <= second_claims["exp"].as_u64().unwrap(),
        "{body}"
    );
    assert_clean_headers(&body, Some(&second));
    let stats = idp.stats("issuer").await;
    assert_eq!(
        (stats["exchanges"].as_u64(), stats["exchange_subjects"].as_u64()),
        (Some(2), Some(2)),
        "{stats}"
    );

    // No subject token: refused by callout, nothing exchanged or forwarded.
    let (status, headers, body) = call_with_subject(&callout, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(headers["x-callout-error"], "subject_token_required", "{body}");
    assert!(
        headers[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json"),
        "{headers:?}"
    );
    assert_eq!(body["code"], "subject_token_required", "{body}");

    let stats = idp.stats("issuer").await;
    assert_eq!(stats["exchanges"], 2, "{stats}");
    assert_eq!(stats["exchange_errors"], json!({}), "{stats}");
    assert_eq!(stats["errors"], json!({}), "{stats}");
    assert_eq!(
        stats["by_client"][EXCHANGE_ID],
        json!({ "requests": 2, "issued": 2 }),
        "{stats}"
    );
    let upstream = rs.stats("url").await;
    assert_eq!(
        (upstream["accepted"].as_u64(), upstream["rejected"].as_u64()),
        (Some(3), Some(0)),
        "{upstream}"
    );
}

// ---------------------------------------------------------------------------------------------
// Authlib: JWT bearer grant

const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// `flow = "jwt_bearer"` against Authlib's `JWTBearerGrant`: an RS256 principal (the default
/// algorithm, PKCS#8 key, `aud` = the token URL) and an ES256 one (SEC1 key, `jwt_audience` =
/// the issuer); Authlib verifies signature, `iss`, `aud`, `exp`, `sub` and (added by the
/// server) `jti`; its API accepts the tokens and names the subject. No client authentication
/// is sent, one token request per principal, no replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_jwt_bearer() {
    const RS_ISSUER: &str = "jwt-rs256";
    const RS_SUBJECT: &str = "alice@example.com";
    const ES_ISSUER: &str = "jwt-es256";
    const ES_SUBJECT: &str = "bob@example.com";
    let rsa = support::rsa_private_key();
    let ec = support::traditional_pem(&support::ec_private_key(&rcgen::PKCS_ECDSA_P256_SHA256));
    let idp = authlib_server(json!({
        "ttl": 600,
        "issuers": {
            RS_ISSUER: { "key": support::public_pem(&rsa), "subjects": [RS_SUBJECT] },
            ES_ISSUER: { "key": support::public_pem(&ec), "subjects": [ES_SUBJECT] },
        },
    }));
    let token_url = idp.get("token_endpoint");
    let issuer = idp.get("issuer");
    let keys = tempfile::tempdir().unwrap();
    let toml = config(
        &[
            ("flow", toml_str("jwt_bearer")),
            ("token_url", toml_str(&token_url)),
        ],
        &[
            principal(
                "Rs",
                1,
                &[
                    ("client_id", toml_str(RS_ISSUER)),
                    ("private_key", key_file(&keys, "rs.pem", &rsa)),
                    ("jwt_subject", toml_str(RS_SUBJECT)),
                ],
            ),
            principal(
                "Es",
                2,
                &[
                    ("client_id", toml_str(ES_ISSUER)),
                    ("private_key", key_file(&keys, "es.pem", &ec)),
                    ("signing_algorithm", toml_str("ES256")),
                    ("jwt_subject", toml_str(ES_SUBJECT)),
                    ("jwt_audience", toml_str(&issuer)),
                ],
            ),
        ],
        &idp.get("api"),
    );
    let callout = Callout::start(&toml).await;

    for (set, iss, sub) in [("Rs", RS_ISSUER, RS_SUBJECT), ("Es", ES_ISSUER, ES_SUBJECT)] {
        for _ in 0..2 {
            let (status, _, body) = callout.get("/Api/profile?full=1", set).await;
            assert_eq!(status, 200, "{set}: {body}\nauthlib stderr:\n{}", idp.stderr());
            assert_eq!(body["sub"], sub, "{body}");
            assert_eq!(body["client_id"], iss, "{body}");
            assert_eq!(body["path"], "/api/profile?full=1", "{body}");
            assert_clean_headers(&body, None);
        }
    }

    let stats = idp.stats("issuer").await;
    assert_eq!(stats["errors"], json!({}), "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");
    assert_eq!(
        stats["client_authentication"], 0,
        "jwt_bearer sent client authentication: {stats}"
    );
    assert_eq!(
        (
            stats["token_requests"].as_u64(),
            stats["tokens_issued"].as_u64(),
            stats["jtis"].as_u64()
        ),
        (Some(2), Some(2), Some(2)),
        "one token request per principal: {stats}"
    );
    assert_eq!(
        (stats["api_accepted"].as_u64(), stats["api_rejected"].as_u64()),
        (Some(4), Some(0)),
        "{stats}"
    );
    assert_assertion(
        assertion_of(&stats, RS_ISSUER),
        RS_ISSUER,
        RS_SUBJECT,
        &token_url,
        "RS256",
        None,
    );
    assert_assertion(
        assertion_of(&stats, ES_ISSUER),
        ES_ISSUER,
        ES_SUBJECT,
        &issuer,
        "ES256",
        None,
    );
}

/// Replay protection on both sides. callout: with 2 s tokens under load it signs many
/// assertions and Authlib never sees a `jti` twice. The server: the last assertion callout
/// sent, POSTed again as is (still unexpired, validly signed), is refused `invalid_grant`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_refuses_a_replayed_assertion() {
    const ISSUER: &str = "jwt-replay";
    const SUBJECT: &str = "carol@example.com";
    let rsa = support::rsa_private_key();
    let idp = authlib_server(json!({
        "ttl": 2,
        "issuers": { ISSUER: { "key": support::public_pem(&rsa), "subjects": [SUBJECT] } },
    }));
    let keys = tempfile::tempdir().unwrap();
    let toml = config(
        &[
            ("flow", toml_str("jwt_bearer")),
            ("token_url", toml_str(&idp.get("token_endpoint"))),
        ],
        &[principal(
            "Svc",
            1,
            &[
                ("client_id", toml_str(ISSUER)),
                ("private_key", key_file(&keys, "rs.pem", &rsa)),
                ("jwt_subject", toml_str(SUBJECT)),
            ],
        )],
        &idp.get("api"),
    );
    let callout = Callout::start(&toml).await;
    let result = load(&callout, "/Api/load", "Svc", 3, Duration::from_secs(4)).await;

    let stats = idp.stats("issuer").await;
    let report = format!("load: {result:?}\nauthlib: {stats}");
    result.assert_all_ok(&report);
    let requests = stats["token_requests"].as_u64().unwrap();
    assert!(requests >= 3, "too few token requests to judge\n{report}");
    assert_eq!(stats["tokens_issued"].as_u64(), Some(requests), "{report}");
    assert_eq!(stats["duplicates"], 0, "callout reused a jti\n{report}");
    assert_eq!(stats["jtis"].as_u64(), Some(requests), "{report}");
    assert_eq!(stats["errors"], json!({}), "{report}");
    assert_eq!(stats["api_rejected"], 0, "{report}");

    // The server side: a copy of an assertion that was accepted is refused.
    let last = idp
        .get_json(&format!("{}/__last_assertion", idp.get("issuer")))
        .await;
    let assertion = last["assertion"].as_str().expect("an assertion was recorded");
    assert_eq!(jwt_claims(assertion)["iss"], ISSUER);
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", JWT_GRANT)
        .append_pair("assertion", assertion)
        .finish();
    let (status, _, body) = support::http(
        Method::POST,
        &idp.get("token_endpoint"),
        &[("content-type", "application/x-www-form-urlencoded")],
        Bytes::from(form),
    )
    .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 400, "a replayed assertion was accepted: {body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("jti"),
        "{body}"
    );
    let stats = idp.stats("issuer").await;
    assert_eq!(stats["duplicates"], 1, "{stats}");
    assert_eq!(stats["errors"], json!({ "invalid_grant": 1 }), "{stats}");
}
