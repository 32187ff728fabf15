//! `protocol = "aws_sigv4"` against moto (`moto_server.py`) with IAM authentication on: moto
//! recomputes every SigV4 signature with the secret of the access key named in the request
//! (botocore's signer, the S3 variant for S3) and checks the key's IAM policy, so a request
//! gets through only when callout signed exactly what it forwarded. moto records what it
//! received (`GET /__requests`), so the tests also check what moto itself does not: that
//! `x-amz-content-sha256` is the hash of a buffered body, `UNSIGNED-PAYLOAD` for a streamed
//! one, and that `host` and the session token are signed. Each test starts its own moto.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use super::support::{Callout, NodeServer, http, moto_server, toml_str};

/// callout's `retry_body_limit` in these tests: bodies up to this many bytes are buffered
/// (and hashed), larger ones stream.
const RETRY_BODY_LIMIT: usize = 1024;
/// The STS query form the identity checks post.
const FORM: &str = "Action=GetCallerIdentity&Version=2011-06-15";

/// The credentials one principal signs with.
struct Keys<'a> {
    access_key_id: &'a str,
    /// A TOML value: a string, `{ env = .. }` or `{ file = .. }`.
    secret_access_key: String,
    session_token: Option<&'a str>,
}

impl<'a> Keys<'a> {
    /// The moto IAM user's long-term access key.
    fn user(moto: &'a NodeServer) -> Keys<'a> {
        Keys {
            access_key_id: moto.ready["access_key_id"].as_str().unwrap(),
            secret_access_key: toml_str(moto.ready["secret_access_key"].as_str().unwrap()),
            session_token: None,
        }
    }

    /// The temporary credentials of the role session moto_server.py assumed.
    fn session(moto: &'a NodeServer) -> Keys<'a> {
        Keys {
            access_key_id: moto.ready["session_access_key_id"].as_str().unwrap(),
            secret_access_key: toml_str(moto.ready["session_secret_access_key"].as_str().unwrap()),
            session_token: moto.ready["session_token"].as_str(),
        }
    }
}

/// A callout config: named credential `name` → moto, external credential `AWS` signing for
/// `service` in moto's region with one principal `Svc` (permission set `Svc`) holding `keys`.
fn config(moto: &NodeServer, name: &str, service: &str, keys: &Keys<'_>) -> String {
    let mut toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
retry_body_limit = {RETRY_BODY_LIMIT}

[external_credentials.AWS]
protocol = "aws_sigv4"
aws_region = {region}
aws_service = {service}

[[external_credentials.AWS.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Svc"]
access_key_id = {key}
secret_access_key = {secret}
"#,
        region = toml_str(&moto.get("region")),
        service = toml_str(service),
        key = toml_str(keys.access_key_id),
        secret = keys.secret_access_key,
    );
    if let Some(token) = keys.session_token {
        toml.push_str(&format!("session_token = {}\n", toml_str(token)));
    }
    toml.push_str(&format!(
        "\n[named_credentials.{name}]\nurl = {}\nexternal_credential = \"AWS\"\ntimeout = \"10s\"\n",
        toml_str(&moto.get("url"))
    ));
    toml
}

/// One request through callout as a caller holding permission set `Svc`.
async fn call(
    callout: &Callout,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, Bytes) {
    let mut all = vec![("x-callout-permission-sets", "Svc")];
    all.extend_from_slice(headers);
    let (status, _, body) = http(method, &callout.url(path), &all, body.into()).await;
    (status, body)
}

/// What moto received since it was ready (see `moto_server.py`).
async fn received(moto: &NodeServer) -> Vec<Value> {
    let url = format!("{}/__requests", moto.get("url"));
    moto.get_json(&url).await.as_array().unwrap().clone()
}

/// A header of a recorded request.
fn header<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request["headers"][name].as_str()
}

/// The parts of the recorded request's `Authorization`: the credential scope and the signed
/// header names, after checking the scheme and the access key.
fn authorization(request: &Value, access_key_id: &str, service: &str) -> Vec<String> {
    let auth = header(request, "authorization").unwrap_or_else(|| panic!("not signed: {request}"));
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .unwrap_or_else(|| panic!("not SigV4 header form: {auth}"));
    let (credential, rest) = rest
        .split_once(", SignedHeaders=")
        .unwrap_or_else(|| panic!("{auth}"));
    let (signed, signature) = rest
        .split_once(", Signature=")
        .unwrap_or_else(|| panic!("{auth}"));
    let scope: Vec<&str> = credential.split('/').collect();
    assert_eq!(scope.len(), 5, "{auth}");
    assert_eq!(scope[0], access_key_id, "{auth}");
    assert_eq!(
        header(request, "x-amz-date").map(|d| &d[..8]),
        Some(scope[1]),
        "the scope's date is x-amz-date's: {request}"
    );
    assert_eq!(&scope[2..], ["us-east-1", service, "aws4_request"], "{auth}");
    assert_eq!(signature.len(), 64, "{auth}");
    assert!(signature.bytes().all(|b| b.is_ascii_hexdigit()), "{auth}");
    let signed: Vec<String> = signed.split(';').map(str::to_owned).collect();
    assert!(signed.iter().any(|h| h == "host"), "host is signed: {auth}");
    assert!(
        signed.iter().any(|h| h == "x-amz-date"),
        "x-amz-date is signed: {auth}"
    );
    signed
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An S3 key as the AWS SDKs put it in a path: every byte but the RFC 3986 unreserved
/// characters and `/` percent-encoded, upper-case hex (SigV4's canonical form for S3).
fn s3_path(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The same for a query value (`/` encoded too).
fn query_value(value: &str) -> String {
    s3_path(value).replace('/', "%2F")
}

/// The `<Key>`s of a ListObjectsV2 answer, unescaped.
fn listed_keys(xml: &str) -> Vec<String> {
    xml.split("<Key>")
        .skip(1)
        .map(|s| {
            s.split("</Key>")
                .next()
                .unwrap()
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#34;", "\"")
                .replace("&apos;", "'")
                .replace("&#39;", "'")
                .replace("&amp;", "&")
        })
        .collect()
}

fn text(body: &Bytes) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// PUT, GET and LIST through callout with the IAM user's key; keys with spaces, UTF-8 and `+`
/// (sent percent-encoded the way the SDKs do). Small bodies are buffered and signed by their
/// SHA-256; a 64 KiB body (over `retry_body_limit`) streams and is signed `UNSIGNED-PAYLOAD`,
/// which moto's S3 accepts; both come back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_s3_put_and_get_through_callout() {
    let moto = moto_server();
    let keys = Keys::user(&moto);
    let callout = Callout::start(&config(&moto, "S3", "s3", &keys)).await;
    let bucket = moto.get("bucket");

    let objects = [
        "plain.txt",
        "dir/with space.txt",
        "dir/grüße ünïcödé.txt",
        "dir/a+b=c&d.txt",
        "dir/sub/~tilde_(1)!*'.txt",
    ];
    for key in objects {
        let body = format!("the object {key}");
        let path = format!("/S3/{bucket}/{}", s3_path(key));
        let (status, answer) = call(
            &callout,
            Method::PUT,
            &path,
            &[("content-type", "text/plain; charset=utf-8")],
            body.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "PUT {key}: {}", text(&answer));
        let put = received(&moto).await.pop().unwrap();
        assert_eq!(put["method"], "PUT", "{put}");
        assert_eq!(put["target"], format!("/{bucket}/{}", s3_path(key)), "{put}");
        let signed = authorization(&put, keys.access_key_id, "s3");
        assert!(signed.iter().any(|h| h == "x-amz-content-sha256"), "{put}");
        assert_eq!(
            header(&put, "x-amz-content-sha256"),
            Some(sha256_hex(body.as_bytes()).as_str()),
            "a buffered body is signed by its hash: {put}"
        );
        assert_eq!(header(&put, "x-amz-security-token"), None, "{put}");
        assert!(
            !put["headers"]
                .as_object()
                .unwrap()
                .keys()
                .any(|h| h.starts_with("x-callout-")),
            "{put}"
        );

        let (status, got) = call(&callout, Method::GET, &path, &[], Bytes::new()).await;
        assert_eq!(status, StatusCode::OK, "GET {key}: {}", text(&got));
        assert_eq!(got, body.as_bytes(), "GET {key}");
        let get = received(&moto).await.pop().unwrap();
        assert_eq!(
            header(&get, "x-amz-content-sha256"),
            Some(sha256_hex(b"").as_str()),
            "an empty body is signed by the hash of nothing: {get}"
        );
    }

    let list = |prefix: &str| format!("/S3/{bucket}?list-type=2&prefix={}", query_value(prefix));
    let (status, xml) = call(&callout, Method::GET, &list("dir/"), &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK, "{}", text(&xml));
    let mut want: Vec<String> = objects[1..].iter().map(|k| (*k).to_owned()).collect();
    want.sort();
    assert_eq!(listed_keys(&text(&xml)), want, "{}", text(&xml));
    let (status, xml) = call(&callout, Method::GET, &list("dir/grüße ü"), &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK, "{}", text(&xml));
    assert_eq!(
        listed_keys(&text(&xml)),
        ["dir/grüße ünïcödé.txt"],
        "{}",
        text(&xml)
    );
    let (status, xml) = call(&callout, Method::GET, &list("dir/a+b"), &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK, "{}", text(&xml));
    assert_eq!(listed_keys(&text(&xml)), ["dir/a+b=c&d.txt"], "{}", text(&xml));

    // Over retry_body_limit: streamed, so not hashed.
    let big: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(big.len() > RETRY_BODY_LIMIT);
    let path = format!("/S3/{bucket}/{}", s3_path("big/64 KiB.bin"));
    let (status, answer) = call(
        &callout,
        Method::PUT,
        &path,
        &[("content-type", "application/octet-stream")],
        big.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "big PUT: {}", text(&answer));
    let put = received(&moto).await.pop().unwrap();
    authorization(&put, keys.access_key_id, "s3");
    assert_eq!(
        header(&put, "x-amz-content-sha256"),
        Some("UNSIGNED-PAYLOAD"),
        "a streamed body is not hashed: {put}"
    );
    let (status, got) = call(&callout, Method::GET, &path, &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK, "big GET: {}", text(&got));
    assert_eq!(got.len(), big.len());
    assert!(got == big, "the 64 KiB object came back changed");

    let all = received(&moto).await;
    let refused: Vec<&Value> = all.iter().filter(|r| r["status"] != 200).collect();
    assert!(refused.is_empty(), "moto refused: {refused:?}");
    assert_eq!(
        all.len(),
        2 * objects.len() + 3 + 2,
        "one attempt per call: {all:?}"
    );
}

/// The right access key with a wrong secret: callout signs and forwards, moto answers 403
/// SignatureDoesNotMatch, and callout hands that answer to the caller after ONE attempt (a
/// SigV4 key is not a token that a retry could renew). Nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_refuses_a_wrong_secret() {
    let moto = moto_server();
    let mut keys = Keys::user(&moto);
    let right = Callout::start(&config(&moto, "S3", "s3", &keys)).await;
    keys.secret_access_key = toml_str("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    let wrong = Callout::start(&config(&moto, "S3", "s3", &keys)).await;
    let bucket = moto.get("bucket");
    let path = format!("/S3/{bucket}/{}", s3_path("refused/key.txt"));

    let (status, body) = call(&wrong, Method::PUT, &path, &[], "never stored").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{}", text(&body));
    assert!(
        text(&body).contains("<Code>SignatureDoesNotMatch</Code>"),
        "{}",
        text(&body)
    );
    assert!(
        text(&body).contains("does not match the signature you provided"),
        "{}",
        text(&body)
    );
    let seen = received(&moto).await;
    assert_eq!(seen.len(), 1, "one attempt, no retry: {seen:?}");
    assert_eq!(seen[0]["status"], 403, "{seen:?}");
    authorization(&seen[0], keys.access_key_id, "s3");

    let (status, body) = call(
        &wrong,
        Method::GET,
        &format!("/S3/{bucket}?list-type=2"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{}", text(&body));
    assert!(
        text(&body).contains("<Code>SignatureDoesNotMatch</Code>"),
        "{}",
        text(&body)
    );
    assert_eq!(received(&moto).await.len(), 2, "one attempt, no retry");

    // The refused PUT stored nothing.
    let (status, body) = call(&right, Method::GET, &path, &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{}", text(&body));
    assert!(text(&body).contains("<Code>NoSuchKey</Code>"), "{}", text(&body));
}

/// `aws_service = "sts"`: a form POST of GetCallerIdentity, buffered and signed; moto names
/// the IAM user. The secret comes from a file. A wrong secret is refused by STS too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_sts_get_caller_identity() {
    const FORM_TYPE: (&str, &str) = ("content-type", "application/x-www-form-urlencoded; charset=utf-8");
    let moto = moto_server();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("aws-secret");
    std::fs::write(&secret_file, moto.get("secret_access_key")).unwrap();
    let mut keys = Keys::user(&moto);
    keys.secret_access_key = format!("{{ file = {} }}", toml_str(secret_file.to_str().unwrap()));
    let callout = Callout::start(&config(&moto, "STS", "sts", &keys)).await;

    let (status, body) = call(&callout, Method::POST, "/STS/", &[FORM_TYPE], FORM).await;
    assert_eq!(status, StatusCode::OK, "{}", text(&body));
    let arn = moto.get("user_arn");
    assert!(
        text(&body).contains(&format!("<Arn>{arn}</Arn>")),
        "{}",
        text(&body)
    );
    assert!(
        text(&body).contains(&format!("<Account>{}</Account>", moto.get("account"))),
        "{}",
        text(&body)
    );
    let post = received(&moto).await.pop().unwrap();
    assert_eq!(post["target"], "/", "{post}");
    let signed = authorization(&post, keys.access_key_id, "sts");
    // moto hashes the body itself only when x-amz-content-sha256 is absent; when callout
    // sends it (moto then trusts it), it must be the hash of what was sent.
    if let Some(sent) = header(&post, "x-amz-content-sha256") {
        assert_eq!(sent, sha256_hex(FORM.as_bytes()), "{post}");
        assert!(signed.iter().any(|h| h == "x-amz-content-sha256"), "{post}");
    }

    keys.secret_access_key = toml_str("not-the-secret");
    let wrong = Callout::start(&config(&moto, "STS", "sts", &keys)).await;
    let (status, body) = call(&wrong, Method::POST, "/STS/", &[FORM_TYPE], FORM).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{}", text(&body));
    assert!(
        text(&body).contains("<Code>SignatureDoesNotMatch</Code>"),
        "{}",
        text(&body)
    );
}

/// Temporary credentials (sts:AssumeRole in moto_server.py) with `session_token`: callout
/// sends it as `x-amz-security-token`, signed; moto accepts the key only with that token and
/// names the role session. A wrong token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_session_token() {
    const FORM_TYPE: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
    let moto = moto_server();
    let keys = Keys::session(&moto);
    let token = keys.session_token.unwrap();
    assert!(keys.access_key_id.starts_with("ASIA"), "{}", moto.ready);

    let sts = Callout::start(&config(&moto, "STS", "sts", &keys)).await;
    let (status, body) = call(&sts, Method::POST, "/STS/", &[FORM_TYPE], FORM).await;
    assert_eq!(status, StatusCode::OK, "{}", text(&body));
    let arn = moto.get("session_arn");
    assert!(arn.contains(":assumed-role/"), "{arn}");
    assert!(
        text(&body).contains(&format!("<Arn>{arn}</Arn>")),
        "{}",
        text(&body)
    );
    let post = received(&moto).await.pop().unwrap();
    let signed = authorization(&post, keys.access_key_id, "sts");
    assert_eq!(header(&post, "x-amz-security-token"), Some(token), "{post}");
    assert!(
        signed.iter().any(|h| h == "x-amz-security-token"),
        "the token is signed: {post}"
    );

    let s3 = Callout::start(&config(&moto, "S3", "s3", &keys)).await;
    let bucket = moto.get("bucket");
    let path = format!("/S3/{bucket}/{}", s3_path("session/object one.txt"));
    let (status, body) = call(&s3, Method::PUT, &path, &[], "from a role session").await;
    assert_eq!(status, StatusCode::OK, "{}", text(&body));
    let (status, body) = call(&s3, Method::GET, &path, &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK, "{}", text(&body));
    assert_eq!(body, "from a role session");
    let get = received(&moto).await.pop().unwrap();
    let signed = authorization(&get, keys.access_key_id, "s3");
    assert!(signed.iter().any(|h| h == "x-amz-security-token"), "{get}");

    // The same key and secret with another token.
    let mut forged = token.to_owned();
    forged.replace_range(forged.len() - 8.., "AAAAAAA=");
    let wrong_keys = Keys {
        session_token: Some(&forged),
        ..Keys::session(&moto)
    };
    let wrong = Callout::start(&config(&moto, "S3", "s3", &wrong_keys)).await;
    let (status, body) = call(&wrong, Method::GET, &path, &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", text(&body));
    assert!(
        text(&body).contains("<Code>InvalidToken</Code>"),
        "{}",
        text(&body)
    );
    let wrong = Callout::start(&config(&moto, "STS", "sts", &wrong_keys)).await;
    let (status, body) = call(&wrong, Method::POST, "/STS/", &[FORM_TYPE], FORM).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{}", text(&body));
    assert!(
        text(&body).contains("<Code>InvalidClientTokenId</Code>"),
        "{}",
        text(&body)
    );
}

/// `role_arn`: callout assumes the role with the user's keys (one AssumeRole for many
/// requests) and signs with the temporary credentials, session token included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_assume_role_signs_with_the_roles_temporary_credentials() {
    const FORM_TYPE: (&str, &str) = ("content-type", "application/x-www-form-urlencoded; charset=utf-8");
    let moto = moto_server();
    let keys = Keys::user(&moto);
    let toml = config(&moto, "STS", "sts", &keys).replace(
        "\n[named_credentials.STS]",
        &format!(
            "role_arn = {}\nrole_session_name = \"callout-test\"\nsts_url = {}\n\n[named_credentials.STS]",
            toml_str(&moto.get("role_arn")),
            toml_str(&format!("{}/", moto.get("url")))
        ),
    );
    let callout = Callout::start(&toml).await;
    for _ in 0..3 {
        let (status, body) = call(&callout, Method::POST, "/STS/", &[FORM_TYPE], FORM).await;
        assert_eq!(status, StatusCode::OK, "{}", text(&body));
        assert!(
            text(&body).contains(":assumed-role/callout-interop-role/callout-test</Arn>"),
            "{}",
            text(&body)
        );
    }
    let seen = received(&moto).await;
    let by_user = format!("Credential={}/", keys.access_key_id);
    let assumes = seen
        .iter()
        .filter(|r| header(r, "authorization").is_some_and(|a| a.contains(&by_user)))
        .count();
    assert_eq!(assumes, 1, "one AssumeRole with the user's key: {seen:?}");
    assert_eq!(seen.len(), 4, "one AssumeRole and three calls: {seen:?}");
    let last = seen.last().unwrap();
    assert!(header(last, "x-amz-security-token").is_some(), "{last}");
    assert!(
        !header(last, "authorization")
            .unwrap_or_default()
            .contains(keys.access_key_id),
        "the call is signed with the role's key, not the user's: {last}"
    );
}
