//! One test per problem message of the key-by-key reader: missing and unknown keys, keys of
//! another protocol, duration hints, empty secrets, `--no-secrets`, and the hardening keys.

use std::path::Path;
use std::time::Duration;

use super::super::validate::validate;
use super::super::{LoadOptions, PrincipalKeys, Protocol};
use super::{GOOD, load, oauth, options, problems};

/// The one problem of `GOOD` with `from` replaced by `to`, which must contain `expected`.
fn only_problem(from: &str, to: &str, expected: &str) {
    assert!(GOOD.contains(from), "{from:?} is not in GOOD");
    let found = problems(&GOOD.replacen(from, to, 1));
    assert_eq!(found.len(), 1, "expected only {expected:?}, got {found:#?}");
    assert!(
        found[0].contains(expected),
        "expected {expected:?}, got {found:#?}"
    );
}

#[test]
fn a_missing_key_is_named_and_the_rest_of_the_entry_still_checked() {
    // Before, a missing `flow` dropped the whole entry, and its named credential then
    // reported the external credential as not defined.
    let found = problems(
        &GOOD
            .replace("flow = \"client_credentials\"\n", "")
            .replace("token_timeout = \"5s\"", "token_timeout = \"5 parsecs\""),
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("7:1: external credential `Target_Org` is missing the key `flow`")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p.contains("is not a duration")),
        "{found:#?}"
    );
    assert!(found.iter().all(|p| !p.contains("is not defined")), "{found:#?}");
    assert_eq!(found.len(), 2, "{found:#?}");
    only_problem(
        "client_id = \"reader\"\n",
        "",
        "principal `Reader` is missing the key `client_id`",
    );
    // A misspelt required key is both: unknown, and then missing.
    let found = problems(&GOOD.replace("url = \"https://target", "uri = \"https://target"));
    assert_eq!(
        found,
        [
            "34:1: named credential `Target_Org_API` is missing the key `url`",
            "35:1: named credential `Target_Org_API`: unknown key `uri`; did you mean `url`?",
        ]
    );
    only_problem(
        "protocol = \"oauth2\"\n",
        "",
        "external credential `Target_Org` is missing the key `protocol`",
    );
}

#[test]
fn unknown_keys_get_a_suggestion_or_the_list() {
    only_problem(
        "scope = \"api\"\n",
        "scopes = \"api\"\n",
        "unknown key `scopes`; did you mean `scope`?",
    );
    only_problem(
        "[server]\n",
        "[server]\nlisten_on = 1\n",
        "[server]: unknown key `listen_on`; did you mean `listen`?",
    );
    only_problem(
        "[server]\n",
        "[servers]\nx = 1\n[server]\n",
        "unknown key `servers`; did you mean `server`?",
    );
    only_problem(
        "[server]\n",
        "[zzz]\n[server]\n",
        "unknown key `zzz`; expected `server`, `callers`, `auth_providers`, `external_credentials` or `named_credentials`",
    );
}

#[test]
fn durations_need_a_unit() {
    only_problem(
        "shutdown_grace = \"2s\"",
        "shutdown_grace = 2",
        "a duration is a string with a unit: did you mean \"2s\"?",
    );
    only_problem(
        "timeout = \"30s\"",
        "timeout = \"30\"",
        "`30` has no unit: did you mean \"30s\"?",
    );
}

#[test]
fn empty_secrets_are_refused() {
    only_problem(
        "client_secret = \"literal\"",
        "client_secret = \"\"",
        "principal `Admin`: client_secret is empty",
    );
    let empty_env = |var: &str| (var == "READER_SECRET").then(String::new);
    let found = validate(
        Path::new("/nowhere/callout.toml"),
        GOOD,
        &LoadOptions {
            env: &empty_env,
            read_secrets: true,
        },
    )
    .unwrap_err();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .message
            .contains("client_secret comes from environment variable `READER_SECRET`, which is empty"),
        "{found:#?}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.txt"), "\n").unwrap();
    let text = GOOD.replace("\"literal\"", "{ file = \"empty.txt\" }");
    let found = validate(&dir.path().join("callout.toml"), &text, &options()).unwrap_err();
    assert!(
        found[0]
            .message
            .contains("comes from `empty.txt`, which is empty"),
        "{found:#?}"
    );
}

#[test]
fn no_secrets_checks_structure_without_reading_env_or_files() {
    let nothing = |_: &str| None;
    let text = GOOD.replace("\"literal\"", "{ file = \"does-not-exist.txt\" }");
    let checked = LoadOptions {
        env: &nothing,
        read_secrets: false,
    };
    let config = validate(Path::new("/nowhere/callout.toml"), &text, &checked).unwrap();
    assert!(config.files.is_empty(), "no file was read: {:?}", config.files);
    // Structure is still checked.
    let broken = text.replace("sequence = 20", "sequence = \"twenty\"");
    assert!(validate(Path::new("/nowhere/callout.toml"), &broken, &checked).is_err());
}

#[test]
fn shapes_that_are_not_tables() {
    only_problem(
        "[named_credentials.Target_Org_API]\n",
        "[named_credentials]\nTarget_Org_API = 1\n[named_credentials.Other]\n",
        "must be a table",
    );
    let found = problems("external_credentials = 5\n");
    assert!(
        found[0].contains("`external_credentials` must be a table of named entries"),
        "{found:?}"
    );
    let found = problems("[external_credentials.A]\nprotocol = \"none\"\nprincipals = 3\n");
    assert!(
        found[0].contains("principals must be an array of tables"),
        "{found:?}"
    );
}

#[test]
fn basic_and_none_principals() {
    let text = r#"
[external_credentials.Legacy]
protocol = "basic"

[[external_credentials.Legacy.principals]]
name = "Batch"
sequence = 1
permission_sets = ["Jobs"]
username = "batch"
password = { env = "READER_SECRET" }

[external_credentials.Open]
protocol = "none"

[[external_credentials.Open.principals]]
name = "Anyone"
sequence = 1
permission_sets = ["Jobs"]
"#;
    let config = load(text).unwrap();
    let by_name = |n: &str| {
        config
            .external_credentials
            .iter()
            .find(|e| &*e.name == n)
            .unwrap()
    };
    let legacy = by_name("Legacy");
    assert!(matches!(legacy.protocol, Protocol::Basic));
    match &legacy.principals[0].keys {
        PrincipalKeys::Basic { username, password } => {
            assert_eq!((username.expose(), password.expose()), ("batch", "from-env"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(by_name("Open").principals[0].keys, PrincipalKeys::None));
    assert_eq!(
        by_name("Open").effective_scope(&by_name("Open").principals[0]),
        None
    );

    let found = problems(
        &text
            .replace("username = \"batch\"\n", "")
            .replace("protocol = \"none\"", "protocol = \"ntlm\""),
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("principal `Batch` is missing the key `username`")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p.contains("unknown variant `ntlm`")),
        "{found:#?}"
    );
    let found = problems(&text.replace("name = \"Anyone\"", "name = \"Anyone\"\nscope = \"x\""));
    assert!(
        found
            .iter()
            .any(|p| p
                .contains("`scope` is a principal key of protocol = \"oauth2\", not of protocol = \"none\"")),
        "{found:#?}"
    );
}

#[test]
fn hardening_keys() {
    let text = GOOD
        .replace(
            "shutdown_grace = \"2s\"",
            "shutdown_grace = \"2s\"\nidle_timeout = \"5s\"\nmax_concurrent_streams = 7\nmax_upstream_connections = 9\nbody_idle_timeout = \"3s\"\nstrict_file_permissions = true\nadmin_listen = \"0.0.0.0:9090\"\nwatch_files = false",
        )
        .replace("timeout = \"30s\"", "timeout = \"30s\"\nmethods = [\"GET\", \"POST\"]\nmax_upstream_connections = 2")
        .replace("token_timeout = \"5s\"", "token_timeout = \"5s\"\nreject_refresh_interval = \"1s\"");
    let config = load(&text).unwrap();
    let server = &config.server;
    assert_eq!(server.idle_timeout, Duration::from_secs(5));
    assert_eq!(server.max_concurrent_streams, 7);
    assert_eq!(server.max_upstream_connections, 9);
    assert_eq!(server.body_idle_timeout, Duration::from_secs(3));
    assert!(server.strict_file_permissions && !server.watch_files);
    assert_eq!(
        server.admin_listen,
        Some("0.0.0.0:9090".parse().unwrap()),
        "admin_listen may be remote"
    );
    let nc = &config.named_credentials["Target_Org_API"];
    assert_eq!(
        nc.methods.as_deref(),
        Some(&[http::Method::GET, http::Method::POST][..])
    );
    assert_eq!(nc.max_upstream_connections, Some(2));
    assert_eq!(oauth(&config).reject_refresh_interval, Duration::from_secs(1));

    let defaults = load(GOOD).unwrap();
    assert_eq!(defaults.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(defaults.server.max_concurrent_streams, 100);
    assert_eq!(defaults.server.max_upstream_connections, 256);
    assert_eq!(oauth(&defaults).reject_refresh_interval, Duration::from_secs(5));
    assert!(defaults.server.watch_files && defaults.server.admin_listen.is_none());
}

#[test]
fn hardening_key_refusals() {
    only_problem(
        "timeout = \"30s\"",
        "timeout = \"30s\"\nmethods = [\"TRACE\"]",
        "methods cannot allow TRACE",
    );
    only_problem(
        "timeout = \"30s\"",
        "timeout = \"30s\"\nmethods = [\"get\"]",
        "`get` is not an upper-case HTTP method",
    );
    only_problem(
        "timeout = \"30s\"",
        "timeout = \"30s\"\nmax_upstream_connections = 0",
        "max_upstream_connections must be at least 1",
    );
    only_problem(
        "[server]\n",
        "[server]\nadmin_listen = \"localhost\"\n",
        "admin_listen `localhost` is not an IP address and port",
    );
    only_problem(
        "[server]\n",
        "[server]\nmax_concurrent_streams = 0\n",
        "max_concurrent_streams must be at least 1",
    );
}
