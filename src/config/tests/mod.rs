//! Config validation: every key, and every problem message with its place.

use std::path::Path;
use std::time::Duration;

use super::validate::validate;
use super::{ClientAuth, Config, LoadOptions, PrincipalKeys, Problem, Protocol};

mod flows;
mod formulas;
mod messages;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:7575"
default_permission_sets = ["Everyone"]
shutdown_grace = "2s"

[external_credentials.Target_Org]
protocol = "oauth2"
flow = "client_credentials"
token_url = "https://login.example.com/services/oauth2/token"
scope = "api"
client_auth = "body"
token_params = { audience = "https://api.example.com" }
refresh_on_status = [403, 500]
refresh_before_expiry = "30s"
default_token_ttl = "2h"
token_timeout = "5s"

[[external_credentials.Target_Org.principals]]
name = "Reader"
sequence = 20
permission_sets = ["Everyone"]
client_id = "reader"
client_secret = { env = "READER_SECRET" }

[[external_credentials.Target_Org.principals]]
name = "Admin"
sequence = 1
permission_sets = ["Integration_Admin"]
client_id = "admin"
client_secret = "literal"
scope = "api full"

[named_credentials.Target_Org_API]
url = "https://target.example.com/services/data/v60.0/"
external_credential = "Target_Org"
timeout = "30s"
headers = { "X-Request-Source" = "callout" }
"#;

fn env(var: &str) -> Option<String> {
    (var == "READER_SECRET").then(|| "from-env".to_owned())
}

fn options() -> LoadOptions<'static> {
    LoadOptions {
        env: &env,
        read_secrets: true,
    }
}

fn load(text: &str) -> Result<Config, Vec<Problem>> {
    validate(Path::new("/nowhere/callout.toml"), text, &options())
}

fn oauth(config: &Config) -> &super::OAuth2 {
    match &config.external_credentials[0].protocol {
        Protocol::OAuth2(settings) => settings,
        other => panic!("not oauth2: {other:?}"),
    }
}

fn client_secret(p: &super::Principal) -> &str {
    match &p.keys {
        PrincipalKeys::Client(client) => client.client_secret.as_ref().unwrap().expose(),
        other => panic!("not an oauth2 principal: {other:?}"),
    }
}

/// Every problem of `text`, as `LINE:COL: message`.
fn problems(text: &str) -> Vec<String> {
    load(text)
        .map(|_| ())
        .unwrap_err()
        .into_iter()
        .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
        .collect()
}

#[test]
fn loads_every_key() {
    let config = load(GOOD).unwrap();
    assert_eq!(config.server.default_permission_sets, vec!["Everyone".into()]);
    assert_eq!(config.server.shutdown_grace, Duration::from_secs(2));
    let nc = &config.named_credentials["Target_Org_API"];
    assert_eq!(
        nc.url.to_string(),
        "https://target.example.com/services/data/v60.0"
    );
    assert_eq!(nc.timeout, Duration::from_secs(30));
    assert_eq!(nc.headers["x-request-source"], "callout");
    let ec = &nc.external_credential;
    let settings = oauth(&config);
    assert_eq!(settings.client_auth(), ClientAuth::Body);
    assert_eq!(settings.refresh_on_status, vec![403, 500]);
    assert_eq!(
        settings.registration.token_params,
        vec![("audience".to_owned(), "https://api.example.com".to_owned())]
    );
    assert_eq!(settings.default_token_ttl, Some(Duration::from_secs(7200)));
    assert_eq!(settings.refresh_before_expiry, Duration::from_secs(30));
    assert_eq!(settings.token_timeout, Duration::from_secs(5));
    let names: Vec<&str> = ec.principals.iter().map(|p| &*p.name).collect();
    assert_eq!(names, ["Admin", "Reader"], "sorted by sequence");
    assert_eq!(client_secret(&ec.principals[1]), "from-env");
    assert_eq!(ec.effective_scope(&ec.principals[0]), Some("api full"));
    assert_eq!(ec.effective_scope(&ec.principals[1]), Some("api"));
}

#[test]
fn reports_every_problem_with_its_place() {
    let text = GOOD
        .replace("name = \"Reader\"", "name = \"Bad__Name\"")
        .replace("sequence = 20", "sequence = 1")
        .replace("scope = \"api\"\n", "scope = \"api\"\nsurprise = 1\n")
        .replace("https://target.example.com", "http://target.example.com")
        .replace("READER_SECRET", "MISSING_SECRET")
        .replace(
            "[named_credentials.Target_Org_API]",
            "[named_credentials.Target_Org_API_]",
        );
    let found = problems(&text);
    let expect = [
        "unknown key `surprise`",
        "principal name `Bad__Name` must not contain two consecutive underscores",
        "sequence 1 of principal `Admin` is already used by principal `Bad__Name`",
        "environment variable `MISSING_SECRET` is not set",
        "named credential name `Target_Org_API_` must not end with an underscore",
        "plain http to a non-loopback host",
    ];
    // An unknown key no longer hides the rest of its entry: all of them in one run.
    for e in expect {
        assert!(found.iter().any(|p| p.contains(e)), "missing {e:?} in {found:#?}");
    }
    assert!(
        found.iter().all(|p| !p.starts_with("0:")),
        "every problem has a place"
    );
    assert_eq!(found.len(), expect.len(), "{found:#?}");
}

#[test]
fn places_are_line_and_column() {
    let found = problems("[server]\nlisten = \"0.0.0.0:80\"\n");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("2:10: listen `0.0.0.0:80` is not a loopback address"),
        "{found:?}"
    );
    let found = problems("[server]\nbogus = true\n[unknown_table]\n");
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("2:1: ") && p.contains("bogus")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("3:2: unknown key `unknown_table`")),
        "{found:?}"
    );
    let found = problems("[server\n");
    assert!(found[0].starts_with("1:"), "{found:?}");
}

#[test]
fn refusals() {
    let cases = [
        (
            GOOD.replace("listen = \"127.0.0.1:7575\"", "listen = \"0.0.0.0:7575\""),
            "not a loopback address",
        ),
        (GOOD.replace("[403, 500]", "[200, 403]"), "refresh_on_status 200"),
        (
            GOOD.replace(
                "external_credential = \"Target_Org\"",
                "external_credential = \"Target_Orgg\"",
            ),
            "did you mean `Target_Org`?",
        ),
        (
            GOOD.replace("v60.0/\"", "v60.0?x=1\""),
            "must not have a query string",
        ),
        (
            GOOD.replace("v60.0/\"", "v60.0#frag\""),
            "must not have a fragment",
        ),
        (
            GOOD.replace("token_url = \"https", "token_url = \"ftp"),
            "must be an http:// or https:// URL",
        ),
        (
            GOOD.replace("\"X-Request-Source\"", "\"Host\""),
            "header `host` is set by callout",
        ),
        (
            GOOD.replace("\"X-Request-Source\"", "\"Authorization\""),
            "header `authorization` is set by callout",
        ),
        (
            GOOD.replace("client_auth = \"body\"", "client_auth = \"query\""),
            "unknown variant `query`",
        ),
        (
            GOOD.replace("flow = \"client_credentials\"", "flow = \"password\""),
            "unknown variant `password`",
        ),
        (
            GOOD.replace("token_timeout = \"5s\"", "token_timeout = \"5 parsecs\""),
            "is not a duration",
        ),
        (
            GOOD.replace(
                "permission_sets = [\"Everyone\"]\nclient_id",
                "permission_sets = []\nclient_id",
            ),
            "has no permission_sets",
        ),
        (
            GOOD.replace("client_secret = \"literal\"", "client_secret = { vault = \"x\" }"),
            "unknown field `vault`",
        ),
        (
            GOOD.replace("token_params = {", "token_params = { scope = \"x\","),
            "token_params cannot set `scope`",
        ),
    ];
    for (text, expected) in cases {
        let found = problems(&text);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "expected {expected:?} in {found:#?}"
        );
    }
}

#[test]
fn plain_http_is_allowed_to_loopback_or_when_asked() {
    let loopback = GOOD
        .replace("https://login.example.com", "http://127.0.0.1:9000")
        .replace("https://target.example.com", "http://localhost:8080");
    assert!(load(&loopback).is_ok());
    let asked = GOOD
        .replace("https://login.example.com", "http://idp.internal")
        .replace(
            "token_timeout = \"5s\"",
            "token_timeout = \"5s\"\nallow_plain_http = true",
        );
    assert!(load(&asked).is_ok());
    let remote = GOOD.replace(
        "listen = \"127.0.0.1:7575\"",
        "listen = \"0.0.0.0:7575\"\nallow_remote_callers = true",
    );
    assert!(load(&remote).is_ok());
}

#[test]
fn secret_files_are_relative_to_the_config_and_lose_one_newline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "s3cret\n\n").unwrap();
    let text = GOOD.replace("\"literal\"", "{ file = \"secret.txt\" }");
    let config = validate(&dir.path().join("callout.toml"), &text, &options()).unwrap();
    let ec = &config.external_credentials[0];
    assert_eq!(client_secret(&ec.principals[0]), "s3cret\n");
    assert_eq!(config.files, [dir.path().join("secret.txt")]);
    let missing = validate(
        &dir.path().join("callout.toml"),
        &text.replace("secret.txt", "nope.txt"),
        &options(),
    );
    assert!(missing.unwrap_err()[0].message.contains("nope.txt"));
}

#[test]
fn problems_never_show_a_secret() {
    let text = GOOD.replace(
        "client_secret = \"literal\"",
        "client_secret = \"literal\"\nsecret_typo = \"x\"",
    );
    let all = problems(&text).join("\n");
    assert!(!all.contains("literal") && !all.contains("from-env"), "{all}");
}
