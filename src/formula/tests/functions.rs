//! Each function against published answers, both folded at parse time (literal arguments)
//! and rendered per request (the same arguments as fields).

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Values, now, param, parse, render, render_error, user};
use crate::formula::{EvalError, Field};

/// `{!F(args)}` with literal arguments is constant; with `$User.A`, `$User.B` for the
/// arguments it renders per request. Both must give `expected`.
fn check(function: &str, args: &[&str], expected: &str) {
    let quoted: Vec<String> = args.iter().map(|arg| format!("\"{arg}\"")).collect();
    let constant = format!("{{!{function}({})}}", quoted.join(", "));
    assert_eq!(parse(&constant).constant(), Some(expected), "{constant}");

    let (mut names, mut values) = (Vec::new(), Values::default());
    for (i, arg) in args.iter().enumerate() {
        let name = format!("F{i}");
        values = values.with(user(&name), arg);
        names.push(format!("$User.{name}"));
    }
    let rendered = format!("{{!{function}({})}}", names.join(", "));
    assert_eq!(parse(&rendered).constant(), None, "{rendered}");
    assert_eq!(render(&rendered, &values), expected, "{rendered}");
}

/// The same, for a function whose algorithm stays a literal.
fn check_digest(function: &str, alg: &str, args: &[&str], expected: &str) {
    let constant = format!(
        "{{!HEX({function}(\"{alg}\", {}))}}",
        args.iter()
            .map(|arg| format!("\"{arg}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(parse(&constant).constant(), Some(expected), "{constant}");
    let mut values = Values::default();
    let mut names = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        values = values.with(param("Api", &format!("p{i}")), arg);
        names.push(format!("$Credential.Api.p{i}"));
    }
    let rendered = format!("{{!HEX({function}(\"{alg}\", {}))}}", names.join(", "));
    assert_eq!(render(&rendered, &values), expected, "{rendered}");
}

const JEFE: [&str; 2] = ["what do ya want for nothing?", "Jefe"];

#[test]
fn hmac_sha256_is_rfc4231_test_case_2() {
    let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    check_digest("HMAC", "hmacSHA256", &JEFE, expected);
    check_digest("HMAC", "SHA-256", &JEFE, expected);
    check_digest("HMAC", "HMACsha256", &JEFE, expected);
}

#[test]
fn hmac_sha512_is_rfc4231_test_case_2() {
    let expected = "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                    9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737";
    check_digest("HMAC", "hmacSHA512", &JEFE, expected);
    check_digest("HMAC", "SHA-512", &JEFE, expected);
}

#[test]
fn hmac_sha1_is_rfc2202_test_case_2() {
    let expected = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79";
    check_digest("HMAC", "hmacSHA1", &JEFE, expected);
    check_digest("HMAC", "SHA-1", &JEFE, expected);
}

#[test]
fn hash_of_abc_is_fips_180_answer() {
    let sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    check_digest("HASH", "SHA-256", &["abc"], sha256);
    check_digest("HASH", "hmacSHA256", &["abc"], sha256);
    check_digest("HASH", "sha-256", &["abc"], sha256);
    let sha512 = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                  2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
    check_digest("HASH", "SHA-512", &["abc"], sha512);
    check_digest("HASH", "hmacSHA512", &["abc"], sha512);
    let sha1 = "a9993e364706816aba3e25717850c26c9cd0d89d";
    check_digest("HASH", "SHA-1", &["abc"], sha1);
    check_digest("HASH", "hmacSHA1", &["abc"], sha1);
}

#[test]
fn base64encode_is_rfc4648_section_10() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
        ("client:s3cr\u{e9}t", "Y2xpZW50OnMzY3LDqXQ="),
    ] {
        check("BASE64ENCODE", &[plain], encoded);
        check("BASE64DECODE", &[encoded], plain);
    }
}

#[test]
fn base64decode_takes_missing_padding_and_round_trips() {
    check("BASE64DECODE", &["Zg"], "f");
    check("BASE64DECODE", &["Zm8"], "fo");
    let text = "{!TEXT(BASE64DECODE(BASE64ENCODE($User.A)))}";
    for value in ["", "a", "héllo wörld", "\u{1F600}:\"}{!"] {
        assert_eq!(render(text, &Values::default().with(user("A"), value)), value);
    }
}

#[test]
fn base64decode_of_a_field_that_is_not_base64_is_an_error() {
    let text = "{!BASE64DECODE($Credential.Api.key)}";
    for bad in ["%%%%", "Zg=", "Z", "Zm9v\n"] {
        let values = Values::default().with(param("Api", "key"), bad);
        assert_eq!(render_error(text, &values), EvalError::BadBase64, "{bad:?}");
    }
}

#[test]
fn hex_is_lower_case() {
    check("HEX", &["abc"], "616263");
    check("HEX", &[""], "");
    assert_eq!(parse("{!HEX(BASE64DECODE(\"/+8A\"))}").constant(), Some("ffef00"));
}

#[test]
fn text_passes_utf8_and_refuses_other_bytes() {
    let text = "{!TEXT(BASE64DECODE($User.A))}";
    assert_eq!(
        render(text, &Values::default().with(user("A"), "aMOp")),
        "h\u{e9}"
    );
    assert_eq!(
        render_error(text, &Values::default().with(user("A"), "/w==")),
        EvalError::NotUtf8("TEXT")
    );
}

#[test]
fn a_part_that_renders_to_other_bytes_than_utf8_is_an_error() {
    let text = "x{!BASE64DECODE($User.A)}";
    assert_eq!(
        render(text, &Values::default().with(user("A"), "w6k=")),
        "x\u{e9}"
    );
    assert_eq!(
        render_error(text, &Values::default().with(user("A"), "/w==")),
        EvalError::NotUtf8("{!...}")
    );
}

#[test]
fn unixtime_is_whole_seconds_now() {
    let formula = parse("ts={!UNIXTIME()}");
    assert_eq!(formula.constant(), None);
    assert_eq!(
        formula.render(&Values::default(), now()).unwrap(),
        "ts=1700000000"
    );
    assert_eq!(formula.render(&Values::default(), UNIX_EPOCH).unwrap(), "ts=0");
    let before = UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(
        formula.render(&Values::default(), before),
        Err(EvalError::ClockBeforeEpoch)
    );
}

#[test]
fn signatures_in_the_usual_shapes() {
    // An API signature: base64 of an HMAC over a string built from a field and the time.
    let text =
        r#"{!BASE64ENCODE(HMAC("hmacSHA256", $User.Name & ":" & UNIXTIME(), $Credential.Api.secret))}"#;
    let values = Values::default()
        .with(user("Name"), "ada")
        .with(param("Api", "secret"), "key");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"key");
    let tag = ring::hmac::sign(&key, b"ada:1700000000");
    assert_eq!(render(text, &values), STANDARD.encode(tag.as_ref()));
}

#[test]
fn a_missing_field_names_the_field() {
    let error = render_error("{!$Credential.Api.key}", &Values::default());
    assert_eq!(error, EvalError::MissingField(param("Api", "key")));
    assert_eq!(error.to_string(), "no value for `$Credential.Api.key`");
    for (field, shown) in [
        (Field::OAuthToken, "$Credential.OAuthToken"),
        (
            Field::AuthorizationHeaderValue,
            "$Credential.AuthorizationHeaderValue",
        ),
        (Field::Username, "$Credential.Username"),
        (Field::Password, "$Credential.Password"),
        (user("Department"), "$User.Department"),
    ] {
        assert_eq!(field.to_string(), shown);
    }
}

#[test]
fn errors_never_show_values() {
    const SECRET: &str = "hunter2-\u{ff}-secret";
    let cases = [
        (
            "{!BASE64DECODE($Credential.Password)}",
            Values::default().with(Field::Password, SECRET),
        ),
        (
            "{!TEXT(BASE64DECODE($Credential.Password))}",
            Values::default().with(Field::Password, "/3h1bnRlcjI="),
        ),
        (
            "{!HEX(HMAC(\"hmacSHA1\", $User.A, $Credential.Password))}",
            Values::default().with(Field::Password, SECRET),
        ),
    ];
    for (text, values) in cases {
        let error = parse(text).render(&values, now()).unwrap_err();
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("/3h1"), "{shown}");
        }
    }
}

#[test]
fn rendering_through_a_field_allocates_once_and_owns_the_value() {
    let formula = parse("{!$Credential.OAuthToken}");
    let value = formula
        .render(&Values::default().with(Field::OAuthToken, "tok"), now())
        .unwrap();
    assert!(matches!(value, Cow::Owned(ref text) if text == "tok"));
}
