//! The key-based and delegated OAuth flows against our token endpoint, which records every
//! request: `private_key_jwt` and `jwt_bearer` assertions (verified here with ring against
//! the key's public half), staged client secrets, token exchange and auth providers.

use std::collections::HashSet;

use base64::Engine as _;
use http::StatusCode;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::Value;

use callout::jws::{Algorithm, SigningKey};

use crate::harness::Callout;
use crate::support::{TokenRegistry, TokenRequest, TokenServer, Upstream, http_get};

pub(crate) const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");

pub(crate) fn key_pem(name: &str) -> String {
    std::fs::read_to_string(format!("{KEYS}/{name}")).unwrap()
}

fn b64(part: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap()
}

/// Checks `jws`'s signature with the public half of `key` and returns header and claims.
pub(crate) fn verify(jws: &str, key: &str, algorithm: Algorithm) -> (Value, Value) {
    let public = SigningKey::from_pem(key_pem(key).as_bytes(), algorithm)
        .unwrap()
        .public_key_der();
    let verifier: &dyn VerificationAlgorithm = match algorithm {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
    };
    let (input, sig) = jws.rsplit_once('.').expect("three parts");
    UnparsedPublicKey::new(verifier, public)
        .verify(input.as_bytes(), &b64(sig))
        .unwrap_or_else(|_| panic!("{} signature of {key} does not verify", algorithm.as_str()));
    let (header, claims) = input.split_once('.').unwrap();
    (
        serde_json::from_slice(&b64(header)).unwrap(),
        serde_json::from_slice(&b64(claims)).unwrap(),
    )
}

fn sets(set: &str) -> [(&'static str, &str); 1] {
    [("x-callout-permission-sets", set)]
}

/// The principals' key files, copied beside the config.
fn key_files(names: &[&str]) -> Vec<(String, String)> {
    names.iter().map(|n| (n.to_string(), key_pem(n))).collect()
}

async fn start(toml: &str, files: &[(String, String)]) -> Callout {
    let files: Vec<(&str, &str)> = files.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
    Callout::start_with_files(toml, &files).await
}

fn by_client<'a>(log: &'a [TokenRequest], client_id: &str) -> Vec<&'a TokenRequest> {
    log.iter()
        .filter(|r| r.form_value("client_id").as_deref() == Some(client_id))
        .collect()
}

const ALGORITHMS: [(Algorithm, &str); 4] = [
    (Algorithm::RS256, "rsa-2048-pkcs1.pem"),
    (Algorithm::PS256, "rsa-2048-pkcs8.pem"),
    (Algorithm::ES256, "ec-p256-sec1.pem"),
    (Algorithm::ES384, "ec-p384-sec1.pem"),
];

fn private_key_jwt_config(token: &TokenServer, upstream: &Upstream) -> String {
    let mut toml = format!(
        r#"
[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
client_auth = "private_key_jwt"
token_url = "{}"
"#,
        token.url()
    );
    for (i, (alg, key)) in ALGORITHMS.iter().enumerate() {
        toml.push_str(&format!(
            r#"
[[external_credentials.Idp.principals]]
name = "P{i}"
sequence = {i}
permission_sets = ["Set_{i}"]
client_id = "client-{i}"
private_key = {{ file = "{key}" }}
signing_algorithm = "{}"
"#,
            alg.as_str()
        ));
    }
    toml.push_str(&format!(
        "\n[named_credentials.Api]\nurl = \"{}\"\nexternal_credential = \"Idp\"\n",
        upstream.url()
    ));
    toml
}

#[tokio::test]
async fn private_key_jwt_signs_a_fresh_assertion_per_token_request_and_sends_no_secret() {
    let registry = TokenRegistry::new();
    let token = TokenServer::start_with(registry.clone()).await;
    let upstream = Upstream::start_checking(registry.clone()).await;
    let keys: Vec<&str> = ALGORITHMS.iter().map(|(_, k)| *k).collect();
    let callout = start(&private_key_jwt_config(&token, &upstream), &key_files(&keys)).await;
    for i in 0..ALGORITHMS.len() {
        let set = format!("Set_{i}");
        let (status, _, body) = http_get(&callout.url("/Api/x"), &sets(&set)).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
    }
    // Every token is rejected once: each principal makes a second token request.
    registry.expire_all();
    for i in 0..ALGORITHMS.len() {
        let set = format!("Set_{i}");
        let (status, _, _) = http_get(&callout.url("/Api/x"), &sets(&set)).await;
        assert_eq!(status, StatusCode::OK);
    }

    let log = token.requests_log();
    let mut jtis = HashSet::new();
    for (i, (alg, key)) in ALGORITHMS.iter().enumerate() {
        let client_id = format!("client-{i}");
        let requests = by_client(&log, &client_id);
        assert_eq!(
            requests.len(),
            2,
            "{client_id}: one token request, then one after the rejection"
        );
        for r in requests {
            assert_eq!(r.form_value("grant_type").as_deref(), Some("client_credentials"));
            assert_eq!(
                r.form_value("client_assertion_type").as_deref(),
                Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            );
            assert!(r.authorization.is_none(), "no Basic header with private_key_jwt");
            assert!(r.form_value("client_secret").is_none());
            let assertion = r.form_value("client_assertion").unwrap();
            let (header, claims) = verify(&assertion, key, *alg);
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["typ"], "JWT");
            assert_eq!(claims["iss"], client_id.as_str());
            assert_eq!(claims["sub"], client_id.as_str());
            assert_eq!(
                claims["aud"],
                token.url().as_str(),
                "the default aud is the token URL"
            );
            let (iat, exp) = (claims["iat"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
            assert_eq!(exp - iat, 120, "jwt_lifetime defaults to 2m");
            assert_eq!(claims["nbf"].as_u64(), Some(iat));
            let jti = claims["jti"].as_str().unwrap().to_owned();
            assert!(jti.len() >= 22, "jti {jti} has at least 128 bits");
            assert!(jtis.insert(jti), "a jti was sent twice");
        }
    }
}

#[tokio::test]
async fn jwt_bearer_sends_the_assertion_as_the_grant_and_no_client_authentication() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"
[external_credentials.Salesforce]
protocol = "oauth2"
flow = "jwt_bearer"
token_url = "{}"
scope = "api"

[[external_credentials.Salesforce.principals]]
name = "Integration"
sequence = 1
permission_sets = ["Sync"]
client_id = "3MVG9-consumer-key"
jwt_subject = "integration@example.com"
jwt_audience = "https://login.salesforce.com"
jwt_lifetime = "3m"
jwt_claims = {{ scp = ["api", "refresh"], tenant = "acme" }}
key_id = "k-2026"
private_key = {{ file = "rsa-2048-pkcs8.pem" }}

[named_credentials.Org]
url = "{}"
external_credential = "Salesforce"
"#,
        token.url(),
        upstream.url()
    );
    let callout = start(&toml, &key_files(&["rsa-2048-pkcs8.pem"])).await;
    let (status, _, _) = http_get(&callout.url("/Org/x"), &sets("Sync")).await;
    assert_eq!(status, StatusCode::OK);
    let r = token.last_request().unwrap();
    assert_eq!(
        r.form_value("grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert_eq!(r.form_value("scope").as_deref(), Some("api"));
    assert!(r.authorization.is_none() && r.form_value("client_id").is_none());
    assert!(r.form_value("client_secret").is_none() && r.form_value("client_assertion").is_none());
    let (header, claims) = verify(
        &r.form_value("assertion").unwrap(),
        "rsa-2048-pkcs8.pem",
        Algorithm::RS256,
    );
    assert_eq!(header["kid"], "k-2026");
    assert_eq!(claims["iss"], "3MVG9-consumer-key");
    assert_eq!(claims["sub"], "integration@example.com");
    assert_eq!(claims["aud"], "https://login.salesforce.com");
    assert_eq!(claims["scp"], serde_json::json!(["api", "refresh"]));
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        180
    );
}

fn secret_config(token: &TokenServer, upstream: &Upstream, secrets: &str) -> String {
    format!(
        r#"
[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{}"
reject_refresh_interval = "1ms"

[[external_credentials.Idp.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Svc"]
client_id = "svc"
{secrets}

[named_credentials.Api]
url = "{}"
external_credential = "Idp"
"#,
        token.url(),
        upstream.url()
    )
}

#[tokio::test]
async fn a_staged_secret_takes_over_when_the_current_one_is_refused() {
    let registry = TokenRegistry::new();
    let token = TokenServer::start_with(registry.clone()).await;
    let upstream = Upstream::start_checking(registry.clone()).await;
    let secrets = "client_secret = \"old-secret\"\nnext_client_secret = \"new-secret\"";
    let callout = Callout::start(&secret_config(&token, &upstream, secrets)).await;

    // While the provider still takes the current secret, the staged one is never sent.
    let (status, _, _) = http_get(&callout.url("/Api/x"), &sets("Svc")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(token.requests(), 1);
    assert_eq!(
        token.last_request().unwrap().basic_auth().unwrap().1,
        "old-secret"
    );

    // The provider deletes the old secret: one refusal, one try with the staged secret.
    token.set_accepted_secret(Some("new-secret"));
    registry.expire_all();
    let (status, _, _) = http_get(&callout.url("/Api/x"), &sets("Svc")).await;
    assert_eq!(status, StatusCode::OK);
    let log = token.requests_log();
    let sent: Vec<String> = log.iter().map(|r| r.basic_auth().unwrap().1).collect();
    assert_eq!(sent, ["old-secret", "old-secret", "new-secret"]);

    let (_, _, body) = http_get(&callout.url("/.callout/credentials"), &[]).await;
    let credentials: Value = serde_json::from_slice(&body).unwrap();
    let state = &credentials["named_credentials"][0]["principals"][0]["token"];
    assert_eq!(state["client_secret_in_use"], "next_client_secret");
    let (_, _, metrics) = http_get(&callout.url("/.callout/metrics"), &[]).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(r#"callout_client_secret_in_use{external_credential="Idp",principal="Svc",secret="next_client_secret"} 1"#),
        "{metrics}"
    );

    // From then on the staged secret is the one sent, first time.
    registry.expire_all();
    let (status, _, _) = http_get(&callout.url("/Api/x"), &sets("Svc")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(token.requests(), 4);
    assert_eq!(
        token.last_request().unwrap().basic_auth().unwrap().1,
        "new-secret"
    );
}

#[tokio::test]
async fn without_a_staged_secret_invalid_client_is_a_token_request_failure() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    token.set_accepted_secret(Some("another"));
    let callout = Callout::start(&secret_config(&token, &upstream, "client_secret = \"old\"")).await;
    let (status, headers, _) = http_get(&callout.url("/Api/x"), &sets("Svc")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(headers["x-callout-error"], "token_request_failed");
    assert_eq!(token.requests(), 1, "no second try without a staged secret");
}

#[tokio::test]
async fn a_certificate_beside_the_signing_key_puts_its_thumbprints_in_the_header() {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/certs");
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"
[external_credentials.Entra]
protocol = "oauth2"
flow = "client_credentials"
client_auth = "private_key_jwt"
token_url = "{}"
scope = "https://graph.microsoft.com/.default"

[[external_credentials.Entra.principals]]
name = "App"
sequence = 1
permission_sets = ["Graph"]
client_id = "00000000-0000-0000-0000-000000000001"
private_key = {{ file = "{certs}/server.key" }}
client_certificate = {{ file = "{certs}/server.pem" }}
signing_algorithm = "ES256"

[named_credentials.Graph]
url = "{}"
external_credential = "Entra"
"#,
        token.url(),
        upstream.url()
    );
    let callout = Callout::start(&toml).await;
    let (status, _, _) = http_get(&callout.url("/Graph/x"), &sets("Graph")).await;
    assert_eq!(status, StatusCode::OK);
    let assertion = token
        .last_request()
        .unwrap()
        .form_value("client_assertion")
        .unwrap();
    let header: Value = serde_json::from_slice(&b64(assertion.split('.').next().unwrap())).unwrap();
    let der = CertificateDer::from_pem_file(format!("{certs}/server.pem")).unwrap();
    let thumb =
        |alg| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ring::digest::digest(alg, &der));
    assert_eq!(header["x5t#S256"], thumb(&ring::digest::SHA256));
    assert_eq!(header["x5t"], thumb(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY));
}

#[tokio::test]
async fn a_formula_subject_gives_each_user_a_token_of_their_own() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"
[external_credentials.Salesforce]
protocol = "oauth2"
flow = "jwt_bearer"
token_url = "{}"

[[external_credentials.Salesforce.principals]]
name = "Per_User"
sequence = 1
permission_sets = ["Sync"]
client_id = "3MVG9-consumer-key"
jwt_subject = "{{!$User.Username}}"
jwt_claims = {{ dept = "{{!$User.Department}}", fixed = "yes" }}
private_key = {{ file = "rsa-2048-pkcs8.pem" }}

[named_credentials.Org]
url = "{}"
external_credential = "Salesforce"
"#,
        token.url(),
        upstream.url()
    );
    let callout = start(&toml, &key_files(&["rsa-2048-pkcs8.pem"])).await;
    for (user, dept) in [
        ("ada@example.com", "R&D"),
        ("bob@example.com", "Sales"),
        ("ada@example.com", "R&D"),
    ] {
        let headers = [
            ("x-callout-permission-sets", "Sync"),
            ("x-callout-user", user),
            ("x-callout-user-department", dept),
        ];
        let (status, _, body) = http_get(&callout.url("/Org/x"), &headers).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
    }
    let log = token.requests_log();
    assert_eq!(log.len(), 2, "one token per user");
    let claims: Vec<Value> = log
        .iter()
        .map(|r| {
            verify(
                &r.form_value("assertion").unwrap(),
                "rsa-2048-pkcs8.pem",
                Algorithm::RS256,
            )
            .1
        })
        .collect();
    assert_eq!(claims[0]["sub"], "ada@example.com");
    assert_eq!(claims[0]["dept"], "R&D");
    assert_eq!(claims[1]["sub"], "bob@example.com");
    assert_eq!(claims[1]["dept"], "Sales");
    assert!(claims.iter().all(|c| c["fixed"] == "yes"));
    let seen = upstream.seen();
    let auth = |i: usize| seen[i].headers["authorization"].clone();
    assert_eq!(auth(0), auth(2));
    assert_ne!(auth(0), auth(1));
    // Without the user, no assertion can be made for this principal.
    let (status, _, _) = http_get(&callout.url("/Org/x"), &sets("Sync")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(token.requests(), 2);
}
