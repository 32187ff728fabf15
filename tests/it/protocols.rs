//! `protocol = "basic"` and `protocol = "none"`: the credential seam beyond OAuth.

use base64::Engine as _;
use bytes::Bytes;

use crate::harness::Callout;
use crate::support::{Upstream, http_get, http_request};

/// One named credential `Legacy` through a Basic external credential with two principals.
fn basic_config(upstream: &Upstream, password: &str) -> String {
    format!(
        r#"
[external_credentials.Legacy_Basic]
protocol = "basic"

[[external_credentials.Legacy_Basic.principals]]
name = "Batch"
sequence = 1
permission_sets = ["Batch_Jobs"]
username = "batch-user"
password = {{ file = "batch-password" }}

[[external_credentials.Legacy_Basic.principals]]
name = "Reporting"
sequence = 2
permission_sets = ["Reports", "Batch_Jobs"]
username = "rëport:er-not-allowed"
password = "{password}"

[named_credentials.Legacy]
url = "{upstream}/api"
external_credential = "Legacy_Basic"
"#,
        upstream = upstream.url(),
    )
}

fn decode_basic(value: &str) -> String {
    let b64 = value.strip_prefix("Basic ").expect("a Basic header");
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}

#[tokio::test]
async fn a_username_with_a_colon_is_refused() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("batch-password"), "pw\n").unwrap();
    let path = dir.path().join("callout.toml");
    std::fs::write(&path, basic_config(&upstream, "x")).unwrap();
    let err = callout::Config::load(&path).unwrap_err().to_string();
    assert!(err.contains("username must not contain `:`"), "{err}");
}

async fn start_basic(upstream: &Upstream, password: &str) -> Callout {
    // The second principal's user name is valid once the colon is gone.
    let toml = basic_config(upstream, password).replace("rëport:er-not-allowed", "rëporter");
    Callout::start_with_files(&toml, &[("batch-password", "s3cr:t £ pw\n")]).await
}

#[tokio::test]
async fn basic_sends_username_and_password_per_rfc_7617_and_replaces_the_callers() {
    let upstream = Upstream::start().await;
    let callout = start_basic(&upstream, "reporter-pw").await;
    let (status, _, body) = http_get(
        &callout.url("/Legacy/orders?since=1"),
        &[
            ("x-callout-permission-sets", "Batch_Jobs"),
            ("authorization", "Basic Y2FsbGVyOmNhbGxlcg=="),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    let seen = upstream.last().unwrap();
    assert_eq!(seen.target, "/api/orders?since=1");
    let auth: Vec<_> = seen.headers.get_all("authorization").iter().collect();
    assert_eq!(
        auth.len(),
        1,
        "the caller's Authorization is replaced, not added to"
    );
    // The file's one trailing newline is trimmed; `:` and non-ASCII pass as UTF-8.
    assert_eq!(decode_basic(auth[0].to_str().unwrap()), "batch-user:s3cr:t £ pw");

    // The lowest sequence among the granted principals wins; the other one has its own.
    let (status, _, _) = http_get(
        &callout.url("/Legacy/x"),
        &[("x-callout-permission-sets", "Reports")],
    )
    .await;
    assert_eq!(status, 200);
    let seen = upstream.last().unwrap();
    assert_eq!(
        decode_basic(seen.headers["authorization"].to_str().unwrap()),
        "rëporter:reporter-pw"
    );
}

#[tokio::test]
async fn basic_and_none_are_gated_by_permission_sets() {
    let upstream = Upstream::start().await;
    let callout = start_basic(&upstream, "pw").await;
    let (status, headers, _) = http_get(
        &callout.url("/Legacy/x"),
        &[("x-callout-permission-sets", "Nobody")],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(headers["x-callout-error"], "no_principal");
    assert_eq!(upstream.requests(), 0);

    let callout = Callout::start(&none_config(&upstream)).await;
    let (status, headers, _) = http_get(&callout.url("/Public/x"), &[]).await;
    assert_eq!(status, 403, "no permission set asserted and no defaults");
    assert_eq!(headers["x-callout-error"], "no_principal");
    assert_eq!(upstream.requests(), 0);
}

#[tokio::test]
async fn basic_is_not_retried_on_401_and_the_answer_passes_through() {
    let upstream = Upstream::start().await;
    let callout = start_basic(&upstream, "pw").await;
    let (status, headers, _) = http_request(
        "POST",
        &callout.url("/Legacy/status/401"),
        &[("x-callout-permission-sets", "Batch_Jobs")],
        Bytes::from_static(b"small body"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        headers.get("x-callout-error").is_none(),
        "the upstream's own answer"
    );
    assert_eq!(
        upstream.requests(),
        1,
        "a Basic credential cannot be renewed: no retry"
    );
}

#[tokio::test]
async fn a_reload_rotates_the_basic_password() {
    let upstream = Upstream::start().await;
    let callout = start_basic(&upstream, "old-pw").await;
    let sets = [("x-callout-permission-sets", "Reports")];
    http_get(&callout.url("/Legacy/x"), &sets).await;
    assert!(
        decode_basic(
            upstream.last().unwrap().headers["authorization"]
                .to_str()
                .unwrap()
        )
        .ends_with(":old-pw")
    );
    let toml = basic_config(&upstream, "new-pw").replace("rëport:er-not-allowed", "rëporter");
    callout.reload(&toml).unwrap();
    http_get(&callout.url("/Legacy/x"), &sets).await;
    assert!(
        decode_basic(
            upstream.last().unwrap().headers["authorization"]
                .to_str()
                .unwrap()
        )
        .ends_with(":new-pw")
    );
}

#[tokio::test]
async fn admin_and_check_never_show_a_basic_password() {
    let upstream = Upstream::start().await;
    let callout = start_basic(&upstream, "visible-if-leaked").await;
    let (status, _, body) = http_get(&callout.url("/.callout/credentials"), &[]).await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(r#""protocol":"basic""#), "{text}");
    for secret in ["visible-if-leaked", "s3cr:t", "batch-user", "rëporter"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let described = callout::config::describe(&callout.proxy.routes().config);
    assert!(
        described.contains("external credential Legacy_Basic (basic)"),
        "{described}"
    );
    assert!(!described.contains("visible-if-leaked"), "{described}");
    assert!(!format!("{:?}", callout.proxy.routes().config).contains("visible-if-leaked"));
}

fn none_config(upstream: &Upstream) -> String {
    format!(
        r#"
[external_credentials.Open]
protocol = "none"

[[external_credentials.Open.principals]]
name = "Anyone"
sequence = 1
permission_sets = ["Public_Data"]

[named_credentials.Public]
url = "{upstream}/open"
external_credential = "Open"
headers = {{ "X-Api-Client" = "callout" }}
"#,
        upstream = upstream.url(),
    )
}

#[tokio::test]
async fn none_adds_nothing_but_still_cleans_and_routes() {
    let upstream = Upstream::start().await;
    let callout = Callout::start(&none_config(&upstream)).await;
    let (status, _, body) = http_get(
        &callout.url("/Public/a/b?c=d"),
        &[
            ("x-callout-permission-sets", "Public_Data"),
            ("authorization", "Bearer caller-own"),
            ("x-callout-other", "1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    let seen = upstream.last().unwrap();
    assert_eq!(seen.target, "/open/a/b?c=d");
    assert!(
        seen.headers.get("authorization").is_none(),
        "no credential, and not the caller's"
    );
    assert!(seen.headers.get("x-callout-other").is_none());
    assert_eq!(seen.headers["x-api-client"], "callout");
    let (_, _, body) = http_get(&callout.url("/.callout/credentials"), &[]).await;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let nc = &json["named_credentials"][0];
    assert_eq!(nc["protocol"], "none");
    assert!(nc["token_url"].is_null());
    assert!(nc["principals"][0]["token"].is_null());
}

#[tokio::test]
async fn keys_of_another_protocol_are_named_as_such() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callout.toml");
    let toml = none_config(&upstream)
        .replace(
            "protocol = \"none\"",
            "protocol = \"none\"\ntoken_url = \"https://idp.example/token\"",
        )
        .replace(
            "name = \"Anyone\"",
            "name = \"Anyone\"\nclient_secret = \"x\"\npassword = \"y\"",
        );
    std::fs::write(&path, toml).unwrap();
    let err = callout::Config::load(&path).unwrap_err().to_string();
    for expected in [
        "`token_url` applies only to protocol = \"oauth2\", not to protocol = \"none\"",
        "`client_secret` is a principal key of protocol = \"oauth2\", not of protocol = \"none\"",
        "`password` is a principal key of protocol = \"basic\", not of protocol = \"none\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
}
