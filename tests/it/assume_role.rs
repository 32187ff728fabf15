//! `aws_sigv4` with `role_arn` against an STS of our own, whose credentials live six
//! seconds: the AssumeRole request is signed with the principal's keys, the temporary
//! credentials sign the calls, and they are renewed in the background before they expire.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use http_body_util::BodyExt;

use crate::harness::Callout;
use crate::support::{Server, Upstream, http_get, lock, respond};

const LIFETIME: Duration = Duration::from_secs(6);

/// A fake STS: answer `n` (from 1) holds key `ASIATEST{n}`, secret `secret{n}`, session
/// token `token{n}`, expiring `LIFETIME` after it was sent; `fail` answers 403 instead.
struct Sts {
    server: Server,
    answers: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<(String, String)>>>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl Sts {
    async fn start() -> Sts {
        let answers = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, r, f) = (answers.clone(), requests.clone(), fail.clone());
        let server = Server::start(move |req: http::Request<hyper::body::Incoming>| {
            let (a, r, f) = (a.clone(), r.clone(), f.clone());
            async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                lock(&r).push((auth, String::from_utf8_lossy(&body).into_owned()));
                if f.load(Ordering::SeqCst) {
                    let error = "<ErrorResponse><Error><Code>AccessDenied</Code><Message>user secret1 may not</Message></Error></ErrorResponse>";
                    return respond(StatusCode::FORBIDDEN, "text/xml", error);
                }
                let n = a.fetch_add(1, Ordering::SeqCst) + 1;
                let xml = format!(
                    "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIATEST{n}</AccessKeyId><SecretAccessKey>secret{n}</SecretAccessKey><SessionToken>token{n}</SessionToken><Expiration>{}</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>",
                    iso8601(SystemTime::now() + LIFETIME)
                );
                respond(StatusCode::OK, "text/xml", xml)
            }
        })
        .await;
        Sts {
            server,
            answers,
            requests,
            fail,
        }
    }
}

/// `2026-12-03T15:00:00Z` from the basic form `callout::sigv4::amz_datetime` writes.
fn iso8601(at: SystemTime) -> String {
    let basic = callout::sigv4::amz_datetime(at);
    let b = basic.as_bytes();
    let s = |r: std::ops::Range<usize>| std::str::from_utf8(&b[r]).unwrap().to_owned();
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        s(0..4),
        s(4..6),
        s(6..8),
        s(9..11),
        s(11..13),
        s(13..15)
    )
}

fn config(sts: &Sts, upstream: &Upstream) -> String {
    format!(
        r#"
[external_credentials.Aws]
protocol = "aws_sigv4"
aws_region = "eu-west-1"
aws_service = "execute-api"

[[external_credentials.Aws.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Svc"]
access_key_id = "AKIDBASE"
secret_access_key = "base-secret"
role_arn = "arn:aws:iam::123456789012:role/api"
sts_url = "{}/"

[named_credentials.Api]
url = "{}"
external_credential = "Aws"
"#,
        sts.server.url(),
        upstream.url()
    )
}

const SVC: [(&str, &str); 1] = [("x-callout-permission-sets", "Svc")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roles_credentials_sign_and_are_renewed_before_they_expire() {
    let sts = Sts::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&config(&sts, &upstream)).await;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(7) {
        let (status, _, body) = http_get(&callout.url("/Api/x"), &SVC).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let requests = lock(&sts.requests).clone();
    assert!(
        requests
            .iter()
            .all(|(auth, body)| auth.contains("Credential=AKIDBASE/")
                && auth.contains("/eu-west-1/sts/aws4_request")
                && body.contains("Action=AssumeRole")
                && body.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapi")),
        "{requests:?}"
    );
    let answers = sts.answers.load(Ordering::SeqCst);
    assert!(
        (2..=5).contains(&answers),
        "{answers} AssumeRole requests in 7 s of 6 s credentials"
    );
    // Every call went out with a role key and that key's own session token, and keys only
    // ever move forward: 6 s credentials over 7 s must have been renewed at least once.
    let mut last = 0;
    for seen in upstream.seen() {
        let auth = seen.headers["authorization"].to_str().unwrap();
        let n: usize = auth
            .split("Credential=ASIATEST")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not signed with a role key: {auth}"));
        assert!(n >= last, "key {n} after key {last}");
        last = n;
        assert_eq!(seen.headers["x-amz-security-token"], format!("token{n}").as_str());
    }
    assert!(last >= 2, "the credentials were never renewed");
}

#[tokio::test]
async fn an_sts_refusal_is_a_token_request_failure_with_the_code_only() {
    let sts = Sts::start().await;
    sts.fail.store(true, Ordering::SeqCst);
    let upstream = Upstream::start().await;
    let callout = Callout::start(&config(&sts, &upstream)).await;
    let (status, headers, body) = http_get(&callout.url("/Api/x"), &SVC).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(headers["x-callout-error"], "token_request_failed");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("AccessDenied"), "{body}");
    assert!(
        !body.contains("secret1") && !body.contains("may not"),
        "STS's message reached the caller: {body}"
    );
    assert_eq!(upstream.requests(), 0);
}
