//! The grammar: literal text, `{!...}` parts, strings, concatenation, calls, fields.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Values, now, param, parse, render, user};
use crate::formula::Field;

fn constant(text: &str) -> String {
    let formula = parse(text);
    let Some(value) = formula.constant() else {
        panic!("{text:?} is not constant: {formula:?}")
    };
    // A constant renders borrowed: no allocation per request.
    let rendered = formula.render(&Values::default(), now()).unwrap();
    assert!(
        matches!(rendered, Cow::Borrowed(borrowed) if borrowed == value),
        "{text:?}"
    );
    value.to_owned()
}

#[test]
fn text_without_formulas_is_itself_and_constant() {
    for text in [
        "",
        "plain",
        "Bearer abc",
        "a{b!c}d!{ !{}",
        "{ !x}",
        "!{",
        "{{",
        "}",
        "é{",
    ] {
        assert_eq!(constant(text), text);
    }
}

#[test]
fn formulas_over_literals_are_folded_at_parse() {
    assert_eq!(constant(r#"{!"a" & "b"}"#), "ab");
    assert_eq!(constant(r#"x{!HEX("a")}y{!"z"}"#), "x61yz");
    assert_eq!(
        constant(r#"{!BASE64ENCODE("user" & ":" & "pass")}"#),
        "dXNlcjpwYXNz"
    );
    assert_eq!(constant(r#"{!""}"#), "");
    assert_eq!(
        constant(r#"{!HEX(HASH("SHA-1", ""))}"#),
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    );
}

#[test]
fn concatenation_takes_plus_and_ampersand_in_any_mix() {
    let values = Values::default().with(user("X"), "x").with(user("Y"), "y");
    assert_eq!(
        render(r#"{!"a" + $User.X & "c" + $User.Y & "e"}"#, &values),
        "axcye"
    );
    assert_eq!(render(r#"{!$User.X&$User.Y+$User.X}"#, &values), "xyx");
    assert_eq!(render(r#"{!("a" & $User.X) + ("b")}"#, &values), "axb");
}

#[test]
fn nested_calls() {
    let values = Values::default().with(user("X"), "x").with(Field::Password, "pw");
    let inner = ring::digest::digest(&ring::digest::SHA256, b"x:pw");
    let hex: String = inner.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    let expected = STANDARD.encode(&hex);
    let text = r#"{!BASE64ENCODE(HEX(HASH("SHA-256", $User.X & ":" & $Credential.Password)))}"#;
    assert_eq!(render(text, &values), expected);
    let text = r#"{!TEXT(BASE64DECODE(BASE64ENCODE(TEXT($User.X))))}"#;
    assert_eq!(render(text, &values), "x");
}

#[test]
fn string_literals_hold_braces_and_escapes() {
    let values = Values::default().with(user("X"), "x");
    assert_eq!(render(r#"{!"}" & "{!" & $User.X & "}"}"#, &values), "}{!x}");
    assert_eq!(constant(r#"{!"say \"hi\" \\ bye"}"#), r#"say "hi" \ bye"#);
    assert_eq!(constant(r#"{!"\\"}"#), "\\");
    assert_eq!(
        constant(r#"{!"é — ✓ & + , ( ) $User.X"}"#),
        "é — ✓ & + , ( ) $User.X"
    );
}

#[test]
fn whitespace_inside_formulas_is_insignificant() {
    let values = Values::default().with(user("X"), "x");
    let text = "{!  HEX (  \"a\"  )  &\n\t$User.X\r\n  +\" b \"  }";
    assert_eq!(render(text, &values), "61x b ");
    assert_eq!(render("{!$User.X}", &values), render("{!\n $User.X \n}", &values));
    assert_eq!(constant("{!\t\"a\"\n}"), "a");
}

#[test]
fn function_names_and_built_in_fields_match_in_any_case() {
    assert_eq!(constant(r#"{!hex("a")}{!Hex("a")}{!HEX("a")}"#), "616161");
    assert_eq!(constant(r#"{!Base64Encode("a")}"#), "YQ==");
    assert_eq!(constant(r#"{!hex(hash("sha-256", ""))}"#).len(), 64);
    let values = Values::default()
        .with(Field::OAuthToken, "tok")
        .with(user("dept"), "d");
    assert_eq!(
        render("{!$credential.oauthtoken}/{!$USER.dept}", &values),
        "tok/d"
    );
    assert_eq!(
        parse("{!$User.Dept}").fields().collect::<Vec<_>>(),
        [&user("Dept")],
        "as written"
    );
}

#[test]
fn several_parts_with_text_around() {
    let values = Values::default()
        .with(Field::OAuthToken, "tok")
        .with(user("Name"), "ada")
        .with(param("Api", "key"), "k1");
    let text =
        "Bearer {!$Credential.OAuthToken}; user={!$User.Name}, t={!UNIXTIME()} k={!$Credential.Api.key}!";
    assert_eq!(render(text, &values), "Bearer tok; user=ada, t=1700000000 k=k1!");
    assert_eq!(render("{!$User.Name}{!$User.Name}", &values), "adaada");
    assert_eq!(render("{{!$User.Name}}", &values), "{ada}");
}

#[test]
fn merge_field_shapes() {
    let fields = |text: &str| parse(text).fields().cloned().collect::<Vec<_>>();
    assert_eq!(
        fields("{!$Credential.My_Api.api_key}"),
        [param("My_Api", "api_key")]
    );
    assert_eq!(
        fields("{!$Credential.OAuthToken.key}"),
        [param("OAuthToken", "key")]
    );
    assert_eq!(
        fields(
            "{!$Credential.OAuthToken & $Credential.AuthorizationHeaderValue & $Credential.Username \
             & $Credential.Password & $User.Department}"
        ),
        [
            Field::OAuthToken,
            Field::AuthorizationHeaderValue,
            Field::Username,
            Field::Password,
            user("Department")
        ]
    );
}

#[test]
fn fields_are_listed_once_in_order_of_use() {
    let formula = parse("{!$User.A & $Credential.OAuthToken}-{!HEX($User.A)}{!$User.B}");
    assert_eq!(
        formula.fields().collect::<Vec<_>>(),
        [&user("A"), &Field::OAuthToken, &user("B")]
    );
    assert!(formula.holds_secret());
    assert!(formula.uses_user());
}

#[test]
fn secrets_and_users_are_told_apart() {
    let user_only = parse(r#"{!"role:" & $User.Department}"#);
    assert!(!user_only.holds_secret());
    assert!(user_only.uses_user());
    let secret_only = parse(r#"{!HEX(HASH("SHA-256", $Credential.Api.key))}"#);
    assert!(secret_only.holds_secret());
    assert!(!secret_only.uses_user());
    let neither = parse("t={!UNIXTIME()}");
    assert!(!neither.holds_secret() && !neither.uses_user());
    assert_eq!(neither.constant(), None);
}

#[test]
fn raw_digest_bytes_are_allowed_under_text_and_encodings() {
    for text in [
        r#"{!TEXT(HMAC("hmacSHA256", $User.X, "k"))}"#,
        r#"{!HEX(HMAC("hmacSHA256", $User.X, HASH("SHA-256", "k")))}"#,
        r#"{!BASE64ENCODE("v1:" & HASH("SHA-256", $User.X))}"#,
    ] {
        parse(text);
    }
}

#[test]
fn equal_formulas_compare_equal() {
    assert_eq!(parse(r#"{!"a" & $User.X}"#), parse(r#"{! "a"+$User.X }"#));
    assert_ne!(parse(r#"{!"a" & $User.X}"#), parse(r#"{!$User.X & "a"}"#));
    assert_eq!(parse(r#"{!"ab"}"#), parse("ab"));
}
