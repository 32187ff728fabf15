//! Every parse error message, with the offset it points at.

use crate::formula::Formula;

/// `text` fails to parse with `message`, at the first occurrence of `at` after `after` bytes
/// (so that a marker can be picked out of a text that holds it twice).
fn check_at(text: &str, at: &str, after: usize, message: &str) {
    let expected = after
        + text[after..]
            .find(at)
            .unwrap_or_else(|| panic!("{at:?} not in {text:?}"));
    match Formula::parse(text) {
        Ok(formula) => panic!("{text:?} parsed: {formula:?}"),
        Err(error) => {
            assert_eq!(
                (error.offset, error.message.as_str()),
                (expected, message),
                "{text:?}"
            );
            assert_eq!(error.to_string(), message, "Display is the message");
        }
    }
}

fn check(text: &str, at: &str, message: &str) {
    check_at(text, at, 0, message)
}

const FUNCTIONS: &str = "the functions are BASE64ENCODE, BASE64DECODE, HMAC, HASH, HEX, TEXT and UNIXTIME";
const CREDENTIAL_HINT: &str = "use `$Credential.EXTERNAL_CREDENTIAL.PARAMETER`, `$Credential.OAuthToken`, \
     `$Credential.AuthorizationHeaderValue`, `$Credential.Username` or `$Credential.Password`";
const UNCLOSED: &str = "unclosed `{!`; a formula ends with `}`";

#[test]
fn unknown_functions() {
    check(
        "Token {!HMAK(...)}",
        "HMAK",
        "unknown function `HMAK`; did you mean `HMAC`?",
    );
    check(
        "{!base64encod(\"a\")}",
        "base64encod",
        "unknown function `base64encod`; did you mean `BASE64ENCODE`?",
    );
    check(
        "{!Hax(\"a\")}",
        "Hax",
        "unknown function `Hax`; did you mean `HEX`?",
    );
    check("{!FOO()}", "FOO", &format!("unknown function `FOO`; {FUNCTIONS}"));
    check(
        "{!BLOB(\"a\")}",
        "BLOB",
        &format!("unknown function `BLOB`; {FUNCTIONS}"),
    );
    check(
        "é {!NOW()}",
        "NOW",
        &format!("unknown function `NOW`; {FUNCTIONS}"),
    );
}

#[test]
fn names_that_are_not_calls() {
    check(
        "{!UNIXTIME}",
        "UNIXTIME",
        "`UNIXTIME` is a function; call it as `UNIXTIME(...)`",
    );
    check("{!hex}", "hex", "`HEX` is a function; call it as `HEX(...)`");
    let message = "`Department` is not a merge field, string or function; merge fields begin with `$`, strings are in double quotes";
    check("{!\"a\" & Department}", "Department", message);
}

#[test]
fn arity() {
    check(
        "{!HMAC(\"hmacSHA256\", \"x\")}",
        "HMAC",
        "`HMAC` takes 3 arguments (alg, value, key), got 2",
    );
    check(
        "{!HEX(HMAC())}",
        "HMAC",
        "`HMAC` takes 3 arguments (alg, value, key), got 0",
    );
    check(
        "{!HASH(\"SHA-256\")}",
        "HASH",
        "`HASH` takes 2 arguments (alg, value), got 1",
    );
    check("{!HEX()}", "HEX", "`HEX` takes 1 argument (value), got 0");
    check(
        "{!TEXT(\"a\", \"b\")}",
        "TEXT",
        "`TEXT` takes 1 argument (value), got 2",
    );
    check(
        "{!UNIXTIME(\"x\")}",
        "UNIXTIME",
        "`UNIXTIME` takes no arguments, got 1",
    );
}

#[test]
fn algorithms() {
    let hmac_names = r#""hmacSHA256", "hmacSHA512", "hmacSHA1", "SHA-256", "SHA-512" or "SHA-1""#;
    let hash_names = r#""SHA-256", "SHA-512", "SHA-1", "hmacSHA256", "hmacSHA512" or "hmacSHA1""#;
    check(
        "{!HEX(HMAC(\"sha256\", \"v\", \"k\"))}",
        "\"sha256\"",
        &format!("unknown algorithm \"sha256\"; use {hmac_names}"),
    );
    check(
        "{!HEX(HASH( \"MD5\" , \"v\"))}",
        "\"MD5\"",
        &format!("unknown algorithm \"MD5\"; use {hash_names}"),
    );
    check(
        "{!HEX(HASH(\"a\\\"b\", \"v\"))}",
        "\"a",
        &format!("unknown algorithm \"a\\\"b\"; use {hash_names}"),
    );
    let literal = "`HASH` takes its algorithm as a string literal, such as \"SHA-256\"";
    check("{!HEX(HASH($User.Alg, \"v\"))}", "$User", literal);
    check("{!HEX(HASH(\"SHA\" & \"-256\", \"v\"))}", "\"SHA\"", literal);
    check("{!HEX(HASH((\"SHA-256\"), \"v\"))}", "(\"SHA", literal);
    let literal = "`HMAC` takes its algorithm as a string literal, such as \"hmacSHA256\"";
    check(
        "{!HEX(HMAC(TEXT(\"hmacSHA256\"), \"v\", \"k\"))}",
        "TEXT",
        literal,
    );
}

#[test]
fn merge_fields() {
    check(
        "{!$Credential.Foo}",
        "$",
        &format!("unknown merge field `$Credential.Foo`; {CREDENTIAL_HINT}"),
    );
    check(
        "x {!$Credential.Pasword}",
        "$",
        "unknown merge field `$Credential.Pasword`; did you mean `$Credential.Password`?",
    );
    check(
        "{!$Credential.A.B.C}",
        "$",
        &format!("unknown merge field `$Credential.A.B.C`; {CREDENTIAL_HINT}"),
    );
    check(
        "{!$Credential}",
        "$",
        &format!("unknown merge field `$Credential`; {CREDENTIAL_HINT}"),
    );
    let one_name = "a `$User` field has one name, as in `$User.Department`";
    check(
        "{!$User}",
        "$",
        &format!("unknown merge field `$User`; {one_name}"),
    );
    check(
        "{!$User.Address.City}",
        "$",
        &format!("unknown merge field `$User.Address.City`; {one_name}"),
    );
    check(
        "{!$Credentials.OAuthToken}",
        "$",
        "unknown merge field `$Credentials.OAuthToken`; did you mean `$Credential`?",
    );
    check(
        "{!$Organization.Id}",
        "$",
        "unknown merge field `$Organization.Id`; merge fields begin with `$Credential.` or `$User.`",
    );
    check("{!$}", "}", "expected a name after `$`");
    check("{!$ User.X}", " User", "expected a name after `$`");
    check("{!$User.}", "}", "expected a name after `.`");
    check("{!$User..X}", ".X", "expected a name after `.`");
    check_at(
        "{!$User.X}{!$Credential.Nope}",
        "$",
        10,
        &format!("unknown merge field `$Credential.Nope`; {CREDENTIAL_HINT}"),
    );
}

#[test]
fn strings() {
    check("{!\"abc}", "\"", "unterminated string");
    check("x {!\"abc\\", "\"", "unterminated string");
    check("{!HEX(\"a\") & \"b}", "\"b", "unterminated string");
    check("{!'a'}", "'", "strings are in double quotes, not single quotes");
    let escape =
        |shown: &str| format!("unknown escape `\\{shown}` in a string; the escapes are `\\\"` and `\\\\`");
    check(r#"{!"a\nb"}"#, "\\", &escape("n"));
    check(r#"{!"a\'b"}"#, "\\", &escape("'"));
    check("{!\"a\\\u{1}b\"}", "\\", &escape("\\u{1}"));
    check(r#"{!"\é"}"#, "\\", &escape("é"));
}

#[test]
fn unclosed_formulas() {
    check("a {!$User.X", "{!", UNCLOSED);
    check("{!$User.X", "{!", UNCLOSED);
    check("{!", "{!", UNCLOSED);
    check("{!   ", "{!", UNCLOSED);
    check("{!HMAC(", "{!", UNCLOSED);
    check("{!HEX(\"a\"", "{!", UNCLOSED);
    check("{!\"a\" &", "{!", UNCLOSED);
    check("{!(\"a\"", "{!", UNCLOSED);
    check_at("{!\"a\"} then {!\"b\" &", "{!", 1, UNCLOSED);
}

#[test]
fn unexpected_tokens() {
    check("{!}", "{!", "empty formula `{!}`");
    check("x{!  \n}", "{!", "empty formula `{!}`");
    check("{!\"a\" \"b\"}", "\"b", "expected `&`, `+` or `}`, found `\"`");
    check("{!$User.X-1}", "-", "expected `&`, `+` or `}`, found `-`");
    check("{!HEX(\"a\" \"b\")}", "\"b", "expected `,` or `)`, found `\"`");
    check("{!HEX(\"a\"}", "}", "expected `,` or `)`, found `}`");
    check(
        "{!HEX(\"a\",)}",
        ")",
        "expected a string, merge field or function, found `)`",
    );
    check(
        "{!\"a\" & }",
        "}",
        "expected a string, merge field or function, found `}`",
    );
    check(
        "{!\"a\" && \"b\"}",
        "& \"",
        "expected a string, merge field or function, found `&`",
    );
    check(
        "{!1}",
        "1",
        "expected a string, merge field or function, found `1`",
    );
    check(
        "{!\u{0}}",
        "\u{0}",
        "expected a string, merge field or function, found `\\0`",
    );
    check(
        "{!→}",
        "→",
        "expected a string, merge field or function, found `→`",
    );
    check("{!(\"a\"}", "}", "expected `&`, `+` or `)`, found `}`");
    check("{!\"a\"))}", ")", "expected `&`, `+` or `}`, found `)`");
}

#[test]
fn raw_digests_must_be_encoded() {
    let raw =
        |name: &str| format!("`{name}` gives raw bytes, not text; wrap it in HEX(...) or BASE64ENCODE(...)");
    check("{!HMAC(\"hmacSHA256\", $User.X, \"k\")}", "HMAC", &raw("HMAC"));
    check("{!\"x\" & hash(\"SHA-256\", \"a\")}", "hash", &raw("HASH"));
    check("{!(HASH(\"SHA-256\", $User.X))}", "HASH", &raw("HASH"));
}

#[test]
fn constant_parts_that_cannot_be_evaluated() {
    let not_text =
        "this formula gives bytes that are not UTF-8 text; encode them with HEX(...) or BASE64ENCODE(...)";
    check("ok {!BASE64DECODE(\"/w==\")}", "{!", not_text);
    check(
        "{!HEX(BASE64DECODE(\"%%%\"))}",
        "BASE64DECODE",
        "`BASE64DECODE` was given text that is not base64",
    );
    check(
        "{!HEX(TEXT(BASE64DECODE(\"/w==\")))}",
        "TEXT",
        "`TEXT` gave bytes that are not UTF-8 text",
    );
    check(
        "{!$User.X & TEXT(HASH(\"SHA-256\", \"abc\"))}",
        "TEXT",
        "`TEXT` gave bytes that are not UTF-8 text",
    );
}

#[test]
fn nesting_is_bounded() {
    let nested = |depth: usize| format!("{{!{}\"a\"{}}}", "(".repeat(depth), ")".repeat(depth));
    assert!(Formula::parse(&nested(63)).is_ok());
    check(&nested(64), "\"a", "formula nested more than 64 deep");
    let calls = format!("{{!{}$User.X{}}}", "HEX(".repeat(100), ")".repeat(100));
    check_at(&calls, "HEX", 2 + 4 * 64, "formula nested more than 64 deep");
    let deep = format!("{{!{}", "(".repeat(100_000));
    check_at(&deep, "(", 2 + 64, "formula nested more than 64 deep");
}

#[test]
fn offsets_are_bytes_on_character_boundaries() {
    let text = "é→ {!HMAK()}";
    let error = Formula::parse(text).unwrap_err();
    assert_eq!(error.offset, "é→ {!".len());
    assert!(text.is_char_boundary(error.offset));
}
