//! Keys and secrets over a process's life, with the real binary: a new key on SIGHUP signs
//! the next token request and the token minted with the old one is dropped, and a
//! trace-level log of every flow holds no assertion, key, secret or token.

use http::StatusCode;

use callout::jws::Algorithm;

use crate::flows::{key_pem, verify};
use crate::process::{LISTEN, Serving, cli, eventually};
use crate::support::{TokenRegistry, TokenServer, Upstream, http_get};

fn config(token: &TokenServer, upstream: &Upstream) -> String {
    format!(
        r#"[server]
listen = "{LISTEN}"
watch_files = false

[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
client_auth = "private_key_jwt"
token_url = "{token}"

[[external_credentials.Idp.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Svc"]
client_id = "svc"
private_key = {{ file = "key.pem" }}

[external_credentials.Sf]
protocol = "oauth2"
flow = "jwt_bearer"
token_url = "{token}"

[[external_credentials.Sf.principals]]
name = "User"
sequence = 1
permission_sets = ["Svc"]
client_id = "consumer-key"
jwt_subject = "user@example.com"
private_key = {{ file = "ec.pem" }}
signing_algorithm = "ES256"

[external_credentials.Secret]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{token}"
reject_refresh_interval = "1ms"

[[external_credentials.Secret.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Svc"]
client_id = "secret-client"
client_secret = "current-secret-value"
next_client_secret = "staged-secret-value"

[named_credentials.Api]
url = "{upstream}/api"
external_credential = "Idp"

[named_credentials.Org]
url = "{upstream}/org"
external_credential = "Sf"

[named_credentials.Legacy]
url = "{upstream}/legacy"
external_credential = "Secret"
"#,
        token = token.url(),
        upstream = upstream.url(),
    )
}

const SVC: [(&str, &str); 1] = [("x-callout-permission-sets", "Svc")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_on_sighup_signs_the_next_token_request_and_the_old_token_is_dropped() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let files = [
        ("key.pem", key_pem("rsa-2048-pkcs1.pem")),
        ("ec.pem", key_pem("ec-p256-sec1.pem")),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    let serving = Serving::start(&config(&token, &upstream), &files, &[], &[]).await;
    for _ in 0..2 {
        let (status, _, _) = http_get(&serving.url("/Api/x"), &SVC).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(token.requests(), 1);
    let first = token
        .last_request()
        .unwrap()
        .form_value("client_assertion")
        .unwrap();
    verify(&first, "rsa-2048-pkcs1.pem", Algorithm::RS256);
    let old_token = token.issued()[0].clone();

    let dir = serving.config_dir();
    std::fs::write(dir.join("key.pem"), key_pem("rfc7515-a2.pem")).unwrap();
    serving.proc.signal("HUP");
    eventually(
        "the reload is in and a new token was minted with the new key",
        || async {
            let (status, _, _) = http_get(&serving.url("/Api/x"), &SVC).await;
            status == StatusCode::OK && token.requests() == 2
        },
    )
    .await;
    let second = token
        .last_request()
        .unwrap()
        .form_value("client_assertion")
        .unwrap();
    verify(&second, "rfc7515-a2.pem", Algorithm::RS256);
    let last = upstream.last().unwrap();
    let sent = last.headers["authorization"].to_str().unwrap();
    assert_ne!(
        sent,
        format!("Bearer {old_token}"),
        "the old key's token is not used after the reload"
    );
    assert_eq!(sent, format!("Bearer {}", token.issued()[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_log_of_every_flow_holds_no_assertion_key_secret_or_token() {
    let registry = TokenRegistry::new();
    let token = TokenServer::start_with(registry.clone()).await;
    let upstream = Upstream::start_checking(registry.clone()).await;
    let rsa = key_pem("rsa-2048-pkcs1.pem");
    let ec = key_pem("ec-p256-sec1.pem");
    let files = [("key.pem", rsa.as_str()), ("ec.pem", ec.as_str())];
    let serving = Serving::start(&config(&token, &upstream), &files, &[], &[("RUST_LOG", "trace")]).await;
    for path in ["/Api/x", "/Org/x", "/Legacy/x"] {
        let (status, _, _) = http_get(&serving.url(path), &SVC).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // Renewals, and the switch to the staged secret.
    token.set_accepted_secret(Some("staged-secret-value"));
    registry.expire_all();
    for path in ["/Api/x", "/Org/x", "/Legacy/x"] {
        let (status, _, _) = http_get(&serving.url(path), &SVC).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    assert_eq!(
        token.requests(),
        7,
        "three tokens, three renewals, one refused secret"
    );
    let (_, log) = serving.stop("TERM").await;
    assert!(log.contains("TRACE"), "the log is at trace level");
    let mut needles: Vec<String> = vec![
        "current-secret-value".into(),
        "staged-secret-value".into(),
        "BEGIN".into(),
    ];
    for r in token.requests_log() {
        needles.extend(r.form_value("client_assertion"));
        needles.extend(r.form_value("assertion"));
    }
    needles.extend(token.issued());
    // A line from the middle of each key's base64 body.
    for pem in [&rsa, &ec] {
        let lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        needles.push(lines[lines.len() / 2].to_owned());
    }
    assert!(needles.len() >= 15, "{needles:?}");
    for needle in &needles {
        // Assertions are long: any 24 characters of them would be a leak.
        let probe = &needle[needle.len().saturating_sub(24)..];
        assert!(!log.contains(probe), "the trace log holds {probe:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callout_token_fetches_for_every_flow() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key.pem"), key_pem("rsa-2048-pkcs1.pem")).unwrap();
    std::fs::write(dir.path().join("ec.pem"), key_pem("ec-p256-sec1.pem")).unwrap();
    let exchange = r#"
[external_credentials.Exchange]
protocol = "oauth2"
flow = "token_exchange"
token_url = "@TOKEN@"

[[external_credentials.Exchange.principals]]
name = "Gateway"
sequence = 1
permission_sets = ["Svc"]
client_id = "gateway"
client_secret = "gateway-secret"

[named_credentials.Mine]
url = "@UPSTREAM@"
external_credential = "Exchange"
"#
    .replace("@TOKEN@", &token.url())
    .replace("@UPSTREAM@", &upstream.url());
    let toml = config(&token, &upstream).replace(LISTEN, "127.0.0.1:0") + &exchange;
    let path = dir.path().join("callout.toml");
    std::fs::write(&path, toml).unwrap();
    let path = path.to_str().unwrap();
    for named in ["Api", "Org", "Legacy"] {
        let out = cli(
            &[
                "token",
                named,
                "--permission-sets",
                "Svc",
                "--config",
                path,
                "--reveal",
            ],
            &[],
        )
        .await;
        assert_eq!(out.code, Some(0), "{named}: {}{}", out.stdout, out.stderr);
        let issued = token.issued();
        assert_eq!(
            out.stdout.lines().last(),
            issued.last().map(String::as_str),
            "{named}"
        );
    }
    let args = ["token", "Mine", "--permission-sets", "Svc", "--config", path];
    let out = cli(&args, &[]).await;
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("subject_token_required"), "{}", out.stderr);
    let with_env = [&args[..], &["--subject-token-env", "USER_TOKEN"]].concat();
    let out = cli(&with_env, &[("USER_TOKEN", "the-callers-token")]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        token
            .last_request()
            .unwrap()
            .form_value("subject_token")
            .as_deref(),
        Some("the-callers-token")
    );
    assert!(!out.stdout.contains("the-callers-token") && !out.stderr.contains("the-callers-token"));
}
