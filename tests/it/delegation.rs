//! Tokens on someone else's behalf: token exchange (RFC 8693) of the caller's token, and
//! `[auth_providers]` registrations shared by several external credentials.

use http::StatusCode;
use serde_json::Value;

use crate::harness::Callout;
use crate::support::{TokenServer, Upstream, http_get};

const SUBJECT: &str = "x-callout-subject-token";

fn exchange_config(token: &TokenServer, upstream: &Upstream) -> String {
    format!(
        r#"
[external_credentials.Exchange]
protocol = "oauth2"
flow = "token_exchange"
token_url = "{}"
client_auth = "body"
audience = "https://orders.example"
requested_token_type = "urn:ietf:params:oauth:token-type:access_token"

[[external_credentials.Exchange.principals]]
name = "Gateway"
sequence = 1
permission_sets = ["Users"]
client_id = "gateway"
client_secret = "gateway-secret"

[named_credentials.Orders]
url = "{}"
external_credential = "Exchange"
"#,
        token.url(),
        upstream.url()
    )
}

#[tokio::test]
async fn token_exchange_trades_each_subject_token_once_and_never_forwards_it() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&exchange_config(&token, &upstream)).await;
    let users = ("x-callout-permission-sets", "Users");

    let (status, headers, body) = http_get(&callout.url("/Orders/x"), &[users]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:?}");
    assert_eq!(headers["x-callout-error"], "subject_token_required");
    assert_eq!(token.requests(), 0);

    for subject in ["alice-token", "alice-token", "bob-token", "alice-token"] {
        let (status, _, _) = http_get(&callout.url("/Orders/x"), &[users, (SUBJECT, subject)]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let log = token.requests_log();
    let subjects: Vec<String> = log
        .iter()
        .map(|r| r.form_value("subject_token").unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["alice-token", "bob-token"],
        "one exchange per subject token"
    );
    let r = &log[0];
    assert_eq!(
        r.form_value("grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(
        r.form_value("subject_token_type").as_deref(),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(
        r.form_value("audience").as_deref(),
        Some("https://orders.example")
    );
    assert_eq!(r.form_value("client_secret").as_deref(), Some("gateway-secret"));

    // Alice's and Bob's calls went out with their own exchanged tokens, never the subject's.
    let issued = token.issued();
    let seen = upstream.seen();
    let bearer = |i: usize| seen[i].headers["authorization"].to_str().unwrap().to_owned();
    assert_eq!(bearer(0), format!("Bearer {}", issued[0]));
    assert_eq!(bearer(2), format!("Bearer {}", issued[1]));
    assert_eq!(bearer(3), bearer(0));
    for s in &seen {
        assert!(
            s.headers.get(SUBJECT).is_none(),
            "the subject token went upstream"
        );
        assert!(!format!("{:?}", s.headers).contains("alice-token"));
    }

    let (_, _, body) = http_get(&callout.url("/.callout/credentials"), &[]).await;
    let credentials: Value = serde_json::from_slice(&body).unwrap();
    let state = &credentials["named_credentials"][0]["principals"][0]["token"];
    assert_eq!(state["keyed_tokens"], 2);
    assert_eq!(state["per"], "subject token");
    assert!(
        !body.windows(5).any(|w| w == b"alice"),
        "a subject token in the admin view"
    );
}

#[tokio::test]
async fn an_expired_jwt_subject_is_exchanged_anew_rather_than_cached() {
    use base64::Engine as _;
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&exchange_config(&token, &upstream)).await;
    // A JWT subject token (unsigned: only its exp matters to callout) that has expired.
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let expired = format!("{}.{}.x", b64(r#"{"alg":"none"}"#), b64(r#"{"exp":1000}"#));
    for _ in 0..2 {
        let headers = [
            ("x-callout-permission-sets", "Users"),
            (SUBJECT, expired.as_str()),
        ];
        let (status, _, _) = http_get(&callout.url("/Orders/x"), &headers).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        token.requests(),
        2,
        "a token exchanged for an expired subject is not cached past the subject's exp"
    );
}

fn provider_config(token: &TokenServer, upstream: &Upstream, provider_secret: &str) -> String {
    format!(
        r#"
[auth_providers.Okta]
token_url = "{token}"
client_id = "shared-client"
client_secret = "{provider_secret}"
client_auth = "body"
token_params = {{ audience = "api://default" }}

[external_credentials.Orders]
protocol = "oauth2"
flow = "client_credentials"
auth_provider = "Okta"
scope = "orders"

[[external_credentials.Orders.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Svc"]

[external_credentials.Billing]
protocol = "oauth2"
flow = "client_credentials"
auth_provider = "Okta"

[[external_credentials.Billing.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Svc"]
scope = "billing"

[external_credentials.Own]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{token}"

[[external_credentials.Own.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Svc"]
client_id = "own-client"
client_secret = "own-secret"

[named_credentials.Orders_Api]
url = "{upstream}/orders"
external_credential = "Orders"

[named_credentials.Billing_Api]
url = "{upstream}/billing"
external_credential = "Billing"

[named_credentials.Own_Api]
url = "{upstream}/own"
external_credential = "Own"
"#,
        token = token.url(),
        upstream = upstream.url()
    )
}

#[tokio::test]
async fn an_auth_provider_registration_serves_several_external_credentials_and_a_change_renews_only_its_tokens()
 {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&provider_config(&token, &upstream, "v1")).await;
    let svc = [("x-callout-permission-sets", "Svc")];
    for path in ["/Orders_Api/x", "/Billing_Api/x", "/Own_Api/x"] {
        let (status, _, _) = http_get(&callout.url(path), &svc).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let log = token.requests_log();
    assert_eq!(log.len(), 3);
    let scopes: Vec<_> = log.iter().map(|r| r.form_value("scope")).collect();
    assert_eq!(scopes, [Some("orders".into()), Some("billing".into()), None]);
    for r in &log[..2] {
        assert_eq!(r.form_value("client_id").as_deref(), Some("shared-client"));
        assert_eq!(r.form_value("client_secret").as_deref(), Some("v1"));
        assert_eq!(r.form_value("audience").as_deref(), Some("api://default"));
    }

    // The provider's secret rotates: both of its external credentials get new tokens,
    // the one with its own registration keeps its token.
    callout.reload(&provider_config(&token, &upstream, "v2")).unwrap();
    for path in ["/Orders_Api/x", "/Billing_Api/x", "/Own_Api/x"] {
        let (status, _, _) = http_get(&callout.url(path), &svc).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let log = token.requests_log();
    assert_eq!(log.len(), 5, "two new tokens, not three");
    for r in &log[3..] {
        assert_eq!(r.form_value("client_secret").as_deref(), Some("v2"));
    }
}
