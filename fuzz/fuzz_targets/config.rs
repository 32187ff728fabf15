//! Config text → validated model or a list of problems (SPEC "Configuration", and "no secret
//! ever appears in an error"): never a panic, every problem has a place in the file, and no
//! problem, `callout check` description or `Debug` output shows a literal secret.
//!
//! Input: the config file's text. `env` resolves every variable to "x"; `{ file = ... }`
//! secrets and `ca_file`s are relative to /nonexistent, so they cannot be read. Inputs
//! naming absolute paths are skipped so the fuzzer cannot make validation read
//! /dev/zero or the like.

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

/// Already reported findings to step over, so that a run can go on past them: `FUZZ_KNOWN`
/// is a comma-separated list of ids (see run.sh). Unset, every invariant is checked.
static KNOWN: LazyLock<Vec<String>> = LazyLock::new(|| {
    let known = std::env::var("FUZZ_KNOWN").unwrap_or_default();
    known
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
});

/// seeds/config/crash-recursion-limit-no-line.toml: deeply nested keys make the TOML parser
/// stop with "recursion limit", a problem without a line.
fn known_unplaced(message: &str) -> bool {
    KNOWN.iter().any(|k| k == "config-recursion-limit") && message == "recursion limit"
}

const SECRET_KEYS: [&str; 2] = ["client_secret", "token"];

/// Literal secrets written as `client_secret = "..."` / `token = '...'`, found by a plain
/// scan (no escapes, no multi-line strings), that are at least 8 characters long and occur
/// nowhere else in the text, so that finding one in an error can only mean it leaked.
fn literal_secrets(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for key in SECRET_KEYS {
        for (at, _) in text.match_indices(key) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| !matches!(c, ' ' | '\t' | '\n' | '{' | ',' | '.')) {
                continue;
            }
            let rest = text[at + key.len()..].trim_start_matches([' ', '\t']);
            let Some(rest) = rest.strip_prefix('=') else {
                continue;
            };
            let rest = rest.trim_start_matches([' ', '\t']);
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let rest = &rest[1..];
            if rest.starts_with(quote) {
                continue; // empty or multi-line string
            }
            let Some(end) = rest.find(quote) else {
                continue;
            };
            let value = &rest[..end];
            if value.len() < 8 || value.contains(['\\', '\n', '\r']) {
                continue;
            }
            if text.matches(value).count() == 1 {
                found.push(value);
            }
        }
    }
    found
}

/// Whether validation could be steered into reading a real file: any string (key or value)
/// that is an absolute path. Unparseable text is rejected before any file is read.
fn names_absolute_path(text: &str) -> bool {
    fn walk(v: &toml::Value) -> bool {
        match v {
            toml::Value::String(s) => s.starts_with('/') || s.starts_with('\\'),
            toml::Value::Array(a) => a.iter().any(walk),
            toml::Value::Table(t) => t.iter().any(|(k, v)| k.starts_with('/') || walk(v)),
            _ => false,
        }
    }
    match text.parse::<toml::Table>() {
        Ok(table) => table.iter().any(|(k, v)| k.starts_with('/') || walk(v)),
        // Belt and braces, should the two parses ever disagree.
        Err(_) => ["/dev", "/proc", "/sys", "\\u", "\\U"]
            .iter()
            .any(|s| text.contains(s)),
    }
}

/// Everything validation lets a user see: `callout check`'s description and the `Debug`
/// form of a valid config, or the full error text.
fn rendered(text: &str) -> String {
    let path = Path::new("/nonexistent/callout.toml");
    match callout::Config::from_toml(path, text, &|_| Some("x".into())) {
        Ok(config) => format!("{}\n{config:?}", callout::config::describe(&config)),
        Err(err) => err.to_string(),
    }
}

/// `text` with every occurrence of `secret` replaced by as many characters not in it.
fn with_other_secret(text: &str, secret: &str) -> String {
    let c = ['Q', 'Z', 'K']
        .into_iter()
        .find(|c| !secret.contains(*c))
        .unwrap();
    text.replace(secret, &c.to_string().repeat(secret.chars().count()))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if names_absolute_path(text) {
        return;
    }
    let path = Path::new("/nonexistent/callout.toml");
    let lines = text.split('\n').count();

    let shown = match callout::Config::from_toml(path, text, &|_| Some("x".into())) {
        Ok(config) => {
            let _ = config.warnings();
            format!("{}\n{config:?}", callout::config::describe(&config))
        }
        Err(err) => {
            assert!(!err.problems.is_empty(), "an error without problems");
            for p in &err.problems {
                assert!(
                    p.line >= 1 || p.message.contains("cannot read") || known_unplaced(&p.message),
                    "a problem without a place: {p:?}"
                );
                if p.line >= 1 {
                    assert!(p.column >= 1, "line without column: {p:?}");
                    assert!(
                        p.line <= lines,
                        "line {} past the end ({lines} lines): {p:?}",
                        p.line
                    );
                }
            }
            err.to_string()
        }
    };

    for secret in literal_secrets(text) {
        // When the same text shows up with a different secret in the file, it is part of
        // a message or the path, not the secret.
        if shown.contains(secret) && !rendered(&with_other_secret(text, secret)).contains(secret) {
            panic!("a literal secret shows in errors, `callout check` output or Debug: {shown}");
        }
    }
});
