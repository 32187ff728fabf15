//! Token endpoint text on its way to callers, logs and the admin view (SPEC "Hostile peers
//! and limits"): callers get the HTTP status and a checked `error` code only; operators also
//! get `error_description`, with every configured secret and every held token replaced by
//! `[redacted]`, in printable ASCII, at most 200 characters.

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use callout::auth::oauth::parse_token_response;
use callout::token::redact::{self, REDACTED};
use http::HeaderMap;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{Value, json};

use crate::harness::{Callout, basic_config};
use crate::support::{Fault, TokenServer, Upstream, http_get, lock};

// ---------------------------------------------------------------------------------------
// Properties of the sanitiser, on generated secrets and text

fn form(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The spellings of `secret` that must never be shown.
fn spellings(secret: &str) -> [String; 4] {
    [
        secret.to_owned(),
        form(secret),
        STANDARD.encode(secret),
        STANDARD.encode(form(secret)),
    ]
}

/// Secrets of 4 bytes or more (shorter ones are not looked for, by design), printable or
/// not, ASCII or not, some with `?` (which a control character turns into) or starting or
/// ending like the marker (so that a redaction next to them completes them). One that is
/// part of `[redacted]` (`dact`) cannot be kept out of a text that has a marker, so it is
/// not generated.
fn secret() -> impl Strategy<Value = String> {
    let edge = |s: &str| -> Vec<String> { (1..s.len()).map(|i| s[i..].to_owned()).collect() };
    let heads = edge(REDACTED);
    let tails: Vec<String> = (1..REDACTED.len()).map(|i| REDACTED[..i].to_owned()).collect();
    prop_oneof![
        "[ -~]{4,20}",
        "\\PC{2,10}",
        "[a-z0-9_]{4,8}",
        "[\\x00-\\x7f]{4,12}",
        "[a-c?]{4,6}",
        (prop::sample::select(heads), "[a-z?]{2,4}").prop_map(|(h, t)| h + &t),
        ("[a-z?]{2,4}", prop::sample::select(tails)).prop_map(|(h, t)| h + &t),
    ]
    .prop_filter("4 bytes or more and not part of the marker", |s| {
        s.len() >= redact::MIN_SECRET && spellings(s).iter().all(|f| !REDACTED.contains(f.as_str()))
    })
}

/// How a secret gets into the token endpoint's text.
#[derive(Debug, Clone)]
enum Echo {
    Raw,
    /// Every `?` as a control character, every other non-ASCII character as it is.
    Controls,
    Form,
    /// `form` with `%20` for a space and lowercase hex, as another encoder writes it.
    FormLower,
    Base64,
    /// A Basic header, of `id:secret` as sent with `client_auth = "header_unencoded"`, or
    /// of the form-encoded pair as with `"header"`.
    Basic {
        id: String,
        encoded: bool,
    },
}

impl Echo {
    fn of(&self, secret: &str) -> String {
        match self {
            Echo::Raw => secret.to_owned(),
            Echo::Controls => secret.replace('?', "\u{7}"),
            Echo::Form => form(secret),
            Echo::FormLower => form(secret).replace('+', "%20").to_lowercase(),
            Echo::Base64 => STANDARD.encode(secret),
            Echo::Basic { id, encoded: false } => {
                format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
            }
            Echo::Basic { id, encoded: true } => {
                format!(
                    "Basic {}",
                    STANDARD.encode(format!("{}:{}", form(id), form(secret)))
                )
            }
        }
    }
}

fn echo() -> impl Strategy<Value = Echo> {
    prop_oneof![
        Just(Echo::Raw),
        Just(Echo::Controls),
        Just(Echo::Form),
        Just(Echo::FormLower),
        Just(Echo::Base64),
        ("[ -~]{0,7}", any::<bool>()).prop_map(|(id, encoded)| Echo::Basic { id, encoded }),
    ]
}

/// Text around and between the echoes: anything, control characters and markers included.
fn filler() -> impl Strategy<Value = String> {
    let pieces: Vec<String> = ["[redacte", "[re", "d]", "]", "[", REDACTED]
        .map(String::from)
        .into();
    prop_oneof![
        ".{0,16}",
        "[\\x00-\\x1f\\x7f]{0,3}",
        "[a-z%+=/\\[\\]?]{0,8}",
        prop::sample::select(pieces),
        // Long enough that a secret can sit across the cut.
        "[a-z ]{150,199}",
    ]
}

/// Secrets, and a text made of filler and echoes of them.
fn case() -> impl Strategy<Value = (Vec<String>, String)> {
    proptest::collection::vec(secret(), 1..4).prop_flat_map(|secrets| {
        let n = secrets.len();
        let pieces = proptest::collection::vec((filler(), proptest::option::of((0..n, echo()))), 0..12);
        (Just(secrets), pieces).prop_map(|(secrets, pieces)| {
            let mut text = String::new();
            for (fill, echoed) in pieces {
                text.push_str(&fill);
                if let Some((i, how)) = echoed {
                    text.push_str(&how.of(&secrets[i]));
                }
            }
            (secrets, text)
        })
    })
}

/// An `error` value: a good code, anything, or a secret.
fn code(secrets: &[String]) -> impl Strategy<Value = String> + use<> {
    let secrets = secrets.to_vec();
    prop_oneof![
        "[A-Za-z0-9_]{1,64}",
        ".{0,70}",
        (0..secrets.len()).prop_map(move |i| secrets[i].clone()),
    ]
}

/// Runs `test` on `cases` values of `strategy`, panicking with the shrunk counterexample.
fn check<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if let Err(e) = TestRunner::new(config).run(&strategy, test) {
        panic!("{e}");
    }
}

fn assert_clean(shown: &str, secrets: &[String]) -> Result<(), TestCaseError> {
    prop_assert!(
        shown.len() <= redact::MAX_TEXT,
        "{} characters: {shown:?}",
        shown.len()
    );
    prop_assert!(shown.bytes().all(|b| (0x20..0x7f).contains(&b)), "{shown:?}");
    for secret in secrets {
        for spelling in spellings(secret) {
            prop_assert!(!shown.contains(&spelling), "{spelling:?} in {shown:?}");
        }
    }
    Ok(())
}

#[test]
fn sanitised_text_never_holds_a_secret_and_is_short_printable_ascii() {
    check(1000, case(), |(secrets, text)| {
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let shown = redact::sanitize(&text, &refs);
        assert_clean(&shown, &secrets)?;
        // With nothing to redact, printable ASCII is shown as it is, as far as it fits.
        if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            let text_alone = redact::sanitize(&text, &[]);
            prop_assert_eq!(text_alone.as_str(), &text[..text.len().min(redact::MAX_TEXT)]);
        }
        Ok(())
    });
}

#[test]
fn a_secret_across_the_cut_goes_whole() {
    let strategy = ("[a-z0-9]{4,24}", 150..200usize, 0..30usize);
    check(300, strategy, |(secret, before, after)| {
        let text = format!("{}{secret}{}", "-".repeat(before), "-".repeat(after));
        let shown = redact::sanitize(&text, &[&secret]);
        let expected = if before + REDACTED.len() <= redact::MAX_TEXT {
            let room = redact::MAX_TEXT - before - REDACTED.len();
            format!("{}{REDACTED}{}", "-".repeat(before), "-".repeat(after.min(room)))
        } else {
            "-".repeat(before)
        };
        prop_assert_eq!(shown, expected);
        Ok(())
    });
}

#[test]
fn callers_see_the_status_and_a_checked_code_and_never_the_description() {
    let strategy = case().prop_flat_map(|(secrets, text)| {
        let code = code(&secrets);
        (
            Just(secrets),
            Just(text),
            code,
            prop_oneof![Just(400u16), Just(401), Just(503)],
        )
    });
    check(500, strategy, |(secrets, description, code, status)| {
        let body = json!({ "error": code, "error_description": description }).to_string();
        let mut err = parse_token_response(status, Some("application/json"), body.as_bytes()).unwrap_err();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        err.sanitize(&refs);

        let shown = err.to_string();
        let prefix = format!("token endpoint answered HTTP {status}: ");
        let shown_code = shown.strip_prefix(&prefix).unwrap_or_else(|| panic!("{shown:?}"));
        prop_assert!(
            shown_code == code || shown_code == redact::INVALID_RESPONSE,
            "{shown_code:?} for {code:?}"
        );
        prop_assert!(shown_code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        prop_assert!((1..=64).contains(&shown_code.len()));
        // The rest is our own text, which a generated secret may happen to be part of.
        if shown_code != redact::INVALID_RESPONSE {
            assert_clean(shown_code, &secrets)?;
        }
        let debug = format!("{err:?}");
        for secret in &secrets {
            for spelling in spellings(secret) {
                prop_assert!(!debug.contains(&spelling), "{spelling:?} in {debug}");
            }
        }

        let operators = err.detail_for_operators();
        let sanitised = redact::sanitize(&description, &refs);
        if sanitised.is_empty() {
            prop_assert_eq!(&operators, &shown);
        } else {
            prop_assert_eq!(operators, format!("{shown} ({sanitised})"));
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// Through callout, with a token endpoint that echoes what it is sent

const HEADER_SECRET: &str = "h34der:s3cret %+/=&ü~";
const BODY_SECRET: &str = "b0dy s3cret&=+%/ü";

fn echo_config(token: &TokenServer, upstream: &Upstream) -> String {
    let ec = |name: &str, auth: &str, id: &str, secret: &str| {
        format!(
            r#"
[external_credentials.{name}]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{}"
client_auth = "{auth}"

[[external_credentials.{name}.principals]]
name = "Service"
sequence = 1
permission_sets = ["Use"]
client_id = "{id}"
client_secret = "{secret}"

[named_credentials.Api_{name}]
url = "{}"
external_credential = "{name}"
"#,
            token.url(),
            upstream.url()
        )
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}{}",
        ec("Header", "header", "header-client", HEADER_SECRET),
        ec("Body", "body", "body-client", BODY_SECRET)
    )
}

/// Every WARN and above that this thread logs, while the guard lives. A current-thread
/// runtime runs callout's tasks on the test's thread, so that is all of callout's.
struct Log {
    sink: Sink,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn capture() -> Log {
        let sink = Sink(Arc::default());
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        Log { sink, _guard }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.sink.0)).into_owned()
    }
}

/// Body and headers of a response as one text.
fn shown(headers: &HeaderMap, body: &[u8]) -> String {
    let mut out = String::from_utf8_lossy(body).into_owned();
    for (name, value) in headers {
        out.push_str(&format!(
            "\n{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    out
}

/// `last_error` of the one principal of named credential `named`.
async fn last_error(callout: &Callout, named: &str, principal: &str) -> String {
    let (status, _, body) = http_get(&callout.url("/.callout/credentials"), &[]).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_slice(&body).unwrap();
    let entry = json["named_credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == named)
        .unwrap_or_else(|| panic!("no {named} in {json}"));
    let p = entry["principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == principal)
        .unwrap_or_else(|| panic!("no {principal} in {json}"));
    p["token"]["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("no last_error in {json}"))
        .to_owned()
}

fn assert_hidden(text: &str, forbidden: &[String]) {
    for f in forbidden {
        assert!(!text.contains(f.as_str()), "{f:?} shown in {text}");
    }
}

#[tokio::test]
async fn an_echoed_secret_reaches_neither_callers_nor_operators() {
    let log = Log::capture();
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    token.set_fault(Fault::EchoRequest);
    let callout = Callout::start(&echo_config(&token, &upstream)).await;

    for (named, id, secret) in [
        ("Api_Header", "header-client", HEADER_SECRET),
        ("Api_Body", "body-client", BODY_SECRET),
    ] {
        let (status, headers, body) = http_get(
            &callout.url(&format!("/{named}/x")),
            &[("x-callout-permission-sets", "Use")],
        )
        .await;
        assert_eq!(status, 502, "{named}");
        let sent = token.last_request().unwrap();
        // What went out, in every spelling the token endpoint echoed.
        let mut forbidden: Vec<String> = spellings(secret).into();
        forbidden.extend(sent.authorization.clone());
        forbidden.push(STANDARD.encode(format!("{}:{}", form(id), form(secret))));

        let caller = shown(&headers, &body);
        assert_hidden(&caller, &forbidden);
        assert!(
            !caller.contains("is not right"),
            "the description reached the caller: {caller}"
        );
        let problem: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            problem["detail"],
            "token endpoint answered HTTP 401: invalid_client"
        );
        assert_eq!(problem["code"], "token_request_failed");

        let operators = last_error(&callout, named, "Service").await;
        assert_hidden(&operators, &forbidden);
        let description = operators
            .strip_prefix("token endpoint answered HTTP 401: invalid_client (")
            .and_then(|d| d.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{operators}"));
        assert!(description.len() <= 200, "{description}");
        assert!(
            description.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{description}"
        );
        assert!(
            description.starts_with("client secret [redacted] is not right; Authorization: "),
            "{description}"
        );
        if named == "Api_Header" {
            // base64 of `header-client:` and the secret: the id's part stays, the rest goes.
            let id_part = &STANDARD.encode("header-client:")[..16];
            assert!(
                description.contains(&format!("Authorization: Basic {id_part}"))
                    && description.contains(REDACTED),
                "{description}"
            );
            assert!(
                description.ends_with("; body: grant_type=client_credentials"),
                "{description}"
            );
        } else {
            assert!(
                description.ends_with("client_id=body-client&client_secret=[redacted]"),
                "{description}"
            );
        }
        let logged = log.text();
        assert_hidden(&logged, &forbidden);
        assert!(
            logged
                .lines()
                .any(|l| l.contains("WARN") && l.contains("token request failed") && l.contains(&operators)),
            "{logged}"
        );
    }
}

#[tokio::test]
async fn a_held_token_and_a_configured_secret_in_the_description_are_redacted() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&basic_config(&token, &upstream, "")).await;
    let sets = |s| [("x-callout-permission-sets", s)];
    let (status, _, _) = http_get(&callout.url("/Api/x"), &sets("Admin_Set")).await;
    assert_eq!(status, 200);
    let held = token.issued()[0].clone();

    // Reader's token request fails with a description naming Admin's token and secret.
    token.set_fault(Fault::OAuthError {
        error: "invalid_grant".into(),
        description: format!("token {held} and secret admin-secret-value belong to Admin"),
    });
    let (status, headers, body) = http_get(&callout.url("/Api/x"), &sets("Read_Set")).await;
    assert_eq!(status, 502);
    let caller = shown(&headers, &body);
    assert_hidden(
        &caller,
        &[held.clone(), "admin-secret-value".into(), "belong".into()],
    );
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        problem["detail"],
        "token endpoint answered HTTP 400: invalid_grant"
    );

    assert_eq!(
        last_error(&callout, "Api", "Reader").await,
        "token endpoint answered HTTP 400: invalid_grant (token [redacted] and secret [redacted] belong to Admin)"
    );
}

#[tokio::test]
async fn an_error_code_that_is_no_code_reaches_callers_as_invalid_response() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&basic_config(&token, &upstream, "")).await;
    token.set_fault(Fault::OAuthError {
        error: "invalid_client\r\nsee https://evil.example".into(),
        description: "\u{1b}[31mred\u{7}".into(),
    });
    let (status, _, body) = http_get(
        &callout.url("/Api/x"),
        &[("x-callout-permission-sets", "Admin_Set")],
    )
    .await;
    assert_eq!(status, 502);
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        problem["detail"],
        "token endpoint answered HTTP 400: invalid_response"
    );
    assert_eq!(
        last_error(&callout, "Api", "Admin").await,
        "token endpoint answered HTTP 400: invalid_response (?[31mred?)"
    );
}
