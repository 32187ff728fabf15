//! One test per problem message of the key-based and delegated OAuth flows: keys that
//! cannot sign, keys a flow does not use, auth providers, mutual TLS, token exchange.

use std::path::Path;

use super::super::validate::validate;
use super::super::{LoadOptions, PrincipalKeys, Protocol, describe};
use super::{load, problems};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");
const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/certs");

/// `[[principals]]` lines go in `@PRINCIPAL@`, external credential lines in `@EC@`.
const BASE: &str = r#"
[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "https://idp.example/token"
@EC@

[[external_credentials.Idp.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Svc"]
client_id = "svc"
@PRINCIPAL@

[named_credentials.Api]
url = "https://api.example"
external_credential = "Idp"
@NAMED@
"#;

fn config(ec: &str, principal: &str, named: &str) -> String {
    BASE.replace("@EC@", ec)
        .replace("@PRINCIPAL@", principal)
        .replace("@NAMED@", named)
        .replace("@KEYS@", KEYS)
        .replace("@CERTS@", CERTS)
}

/// The problems of `config(ec, principal, named)` are exactly one, containing `expected`.
fn one(ec: &str, principal: &str, named: &str, expected: &str) {
    let found = problems(&config(ec, principal, named));
    assert_eq!(found.len(), 1, "expected only {expected:?}, got {found:#?}");
    assert!(
        found[0].contains(expected),
        "expected {expected:?}, got {found:#?}"
    );
}

const JWT: &str = r#"client_auth = "private_key_jwt""#;
const RSA: &str = r#"private_key = { file = "@KEYS@/rsa-2048-pkcs8.pem" }"#;
const BEARER: &str = r#"flow = "jwt_bearer""#;

fn bearer(ec_extra: &str, principal: &str) -> (String, String) {
    let ec = ec_extra.to_owned();
    let p = format!("{principal}\njwt_subject = \"user@example.com\"");
    (ec, p)
}

#[test]
fn private_key_jwt_needs_a_key_that_can_sign_and_no_secret() {
    one(JWT, "", "", "principal `Svc` is missing the key `private_key`");
    one(
        JWT,
        &format!("{RSA}\nclient_secret = \"s\""),
        "",
        "client_secret is not used with client_auth = \"private_key_jwt\"",
    );
    one(
        JWT,
        &format!("{RSA}\nnext_client_secret = \"s\""),
        "",
        "next_client_secret is not used with client_auth = \"private_key_jwt\"",
    );
    let found = problems(&config(
        JWT,
        r#"private_key = { file = "@KEYS@/ec-p256-sec1.pem" }"#,
        "",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("13:15: external credential `Idp`: principal `Svc`: private_key `")
            && found[0].contains("is an EC P-256 key, which cannot sign RS256"),
        "{found:#?}"
    );
    one(
        JWT,
        r#"private_key = { file = "@KEYS@/rsa-2048-encrypted-pkcs8.pem" }"#,
        "",
        "encrypted",
    );
    one(
        JWT,
        r#"private_key = { file = "@KEYS@/absent.pem" }"#,
        "",
        "cannot read",
    );
    one(
        JWT,
        r#"private_key = { file = "@KEYS@/certificate-only.pem" }"#,
        "",
        "no PEM private key",
    );
    one(JWT, &format!("{RSA}\nsigning_algorithm = \"HS256\""), "", "HS256");
    one(JWT, &format!("{RSA}\njwt_lifetime = \"11m\""), "", "at most 10m");
    one(
        JWT,
        &format!("{RSA}\njwt_claims = {{ iss = \"me\" }}"),
        "",
        "jwt_claims cannot set `iss`: callout sets it on every assertion",
    );
    one(
        JWT,
        &format!("{RSA}\njwt_subject = \"u\""),
        "",
        "jwt_subject is used only by flow = \"jwt_bearer\"",
    );
    one(
        "",
        "client_secret = \"s\"\nsigning_algorithm = \"ES256\"",
        "",
        "signing_algorithm is not used with client_auth = \"header\"",
    );
    one(
        "token_params = { client_assertion = \"x\" }",
        "client_secret = \"s\"",
        "",
        "token_params cannot set `client_assertion`",
    );
}

#[test]
fn jwt_bearer_needs_a_subject_and_takes_no_client_authentication() {
    let ec = BASE.replace("flow = \"client_credentials\"", BEARER);
    let with = |principal: &str, extra_ec: &str| {
        ec.replace("@EC@", extra_ec)
            .replace("@PRINCIPAL@", principal)
            .replace("@NAMED@", "")
            .replace("@KEYS@", KEYS)
    };
    let problems_of = |text: String| problems(&text);
    let found = problems_of(with(RSA, ""));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("missing the key `jwt_subject`"), "{found:#?}");
    let (extra, principal) = bearer("client_auth = \"body\"", RSA);
    let found = problems_of(with(&principal, &extra));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("client_auth is not used by flow = \"jwt_bearer\""),
        "{found:#?}"
    );
    let (extra, principal) = bearer("", &format!("{RSA}\nclient_secret = \"s\""));
    let found = problems_of(with(&principal, &extra));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("client_secret is not used by flow = \"jwt_bearer\""),
        "{found:#?}"
    );
    // jwt_issuer stands in for the client id.
    let text = with(
        &format!("{RSA}\njwt_subject = \"u\"\njwt_issuer = \"sa@project.iam\""),
        "",
    )
    .replace("client_id = \"svc\"\n", "");
    let config = load(&text).unwrap();
    let PrincipalKeys::Client(client) = &config.external_credentials[0].principals[0].keys else {
        panic!("an OAuth client")
    };
    let jwt = client.jwt.as_ref().unwrap();
    assert_eq!(jwt.issuer.as_deref(), Some("sa@project.iam"));
    assert_eq!(jwt.subject.as_deref(), Some("u"));
    let text = describe(&config);
    assert!(
        text.contains("jwt_bearer assertion, key RSA 2048-bit sha256:")
            && text.contains(", RS256, issuer sa@project.iam, subject u"),
        "{text}"
    );
    assert!(!text.contains("BEGIN"), "{text}");
}

const PROVIDER: &str = r#"
[auth_providers.Okta]
token_url = "https://okta.example/token"
client_id = "shared"
client_secret = "provider-secret"
"#;

#[test]
fn auth_providers_hold_the_registration_and_principals_only_name_themselves() {
    let via = |ec_keys: &str, principal: &str| {
        let text = config("", principal, "")
            .replace(
                "token_url = \"https://idp.example/token\"\n",
                &format!("auth_provider = \"Okta\"\n{ec_keys}"),
            )
            .replace("client_id = \"svc\"\n", "");
        format!("{PROVIDER}{text}")
    };
    let config = load(&via("", "")).unwrap();
    let Protocol::OAuth2(settings) = &config.external_credentials[0].protocol else {
        panic!("oauth2")
    };
    assert_eq!(settings.auth_provider.as_deref(), Some("Okta"));
    assert_eq!(settings.token_url().to_string(), "https://okta.example/token");
    assert!(matches!(
        config.external_credentials[0].principals[0].keys,
        PrincipalKeys::Provider
    ));
    assert!(config.secrets().iter().any(|s| s.expose() == "provider-secret"));
    assert!(describe(&config).contains("auth provider Okta"));

    let found = problems(&via("token_url = \"https://elsewhere/token\"\n", ""));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("token_url comes from auth provider `Okta`"),
        "{found:#?}"
    );
    let found = problems(&via("", "client_id = \"mine\""));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("client_id is a registration key: it comes from auth provider `Okta`"),
        "{found:#?}"
    );
    let found = problems(&via("", "").replace("auth_provider = \"Okta\"", "auth_provider = \"Otka\""));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("auth provider `Otka` is not defined in [auth_providers]; did you mean `Okta`?"),
        "{found:#?}"
    );
    let bearer_provider = format!("{PROVIDER}jwt_subject = \"u\"\n",).replace(
        "client_secret = \"provider-secret\"\n",
        &format!("{}\n", RSA.replace("@KEYS@", KEYS)),
    );
    let text = via("", "").replace(PROVIDER, &bearer_provider);
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("has a jwt_subject, so it serves only flow = \"jwt_bearer\""),
        "{found:#?}"
    );
}

#[test]
fn tls_client_auth_and_upstream_mutual_tls_need_a_matching_certificate_and_key() {
    const TLS: &str = r#"client_auth = "tls_client_auth""#;
    const CERT: &str = r#"client_certificate = { file = "@CERTS@/server.pem" }"#;
    const KEY: &str = r#"private_key = { file = "@CERTS@/server.key" }"#;
    let config_ok = config(TLS, &format!("{CERT}\n{KEY}"), "");
    let loaded = load(&config_ok).unwrap();
    assert!(describe(&loaded).contains("client_auth tls_client_auth, client_id svc, certificate sha256:"));
    one(TLS, KEY, "", "missing the key `client_certificate`");
    one(
        TLS,
        &format!("{CERT}\n{RSA}"),
        "",
        "private_key `@KEYS@/rsa-2048-pkcs8.pem` does not belong to client_certificate"
            .replace("@KEYS@", KEYS)
            .as_str(),
    );
    let found = problems(&config_ok.replace("https://idp.example/token", "http://127.0.0.1:9/token"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("tls_client_auth\" needs an https token_url"),
        "{found:#?}"
    );
    one(
        "",
        "client_secret = \"s\"",
        CERT,
        "mutual TLS needs both client_certificate and private_key",
    );
    one(
        "",
        "client_secret = \"s\"",
        &format!("{CERT}\nprivate_key = {{ file = \"@KEYS@/certificate-only.pem\" }}"),
        "holds no PEM private key",
    );
    let mtls = load(&config("", "client_secret = \"s\"", &format!("{CERT}\n{KEY}"))).unwrap();
    assert!(mtls.named_credentials["Api"].client_identity.is_some());
    assert!(describe(&mtls).contains("(mutual TLS, certificate sha256:"));
}

#[test]
fn token_exchange_keys_belong_to_token_exchange() {
    one(
        "audience = \"https://api\"",
        "client_secret = \"s\"",
        "",
        "audience applies only to flow = \"token_exchange\"",
    );
    let text = config("audience = \"https://api\"", "client_secret = \"s\"", "")
        .replace("flow = \"client_credentials\"", "flow = \"token_exchange\"");
    let loaded = load(&text).unwrap();
    let Protocol::OAuth2(settings) = &loaded.external_credentials[0].protocol else {
        panic!("oauth2")
    };
    let exchange = settings.exchange.as_ref().unwrap();
    assert_eq!(exchange.audience.as_deref(), Some("https://api"));
    assert_eq!(
        exchange.subject_token_type,
        "urn:ietf:params:oauth:token-type:access_token"
    );
}

#[test]
fn no_secrets_reads_no_key_file() {
    let text = config(JWT, r#"private_key = { file = "/nowhere/absent.pem" }"#, "");
    let env = |_: &str| None;
    let options = LoadOptions {
        env: &env,
        read_secrets: false,
    };
    let config = validate(Path::new("/nowhere/callout.toml"), &text, &options).unwrap();
    assert!(describe(&config).contains("key not read, RS256"));
}

#[test]
fn browser_flow_keys_on_an_auth_provider_are_named_as_such() {
    let text = format!("{PROVIDER}authorize_url = \"https://okta.example/authorize\"\n");
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("`authorize_url` is for the browser flow (flow = \"browser\"), which this version does not have yet"),
        "{found:#?}"
    );
}
