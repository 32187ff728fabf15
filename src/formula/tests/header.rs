//! CR, LF and NUL: rendering keeps them, `is_header_safe` finds them.

use proptest::prelude::*;

use super::{Values, now, param, parse, render, user};
use crate::formula::is_header_safe;

#[test]
fn a_field_holding_crlf_renders_and_is_not_header_safe() {
    let values = Values::default().with(user("Department"), "Sales\r\nX-Injected: 1");
    let value = render("dept={!$User.Department}", &values);
    assert_eq!(value, "dept=Sales\r\nX-Injected: 1");
    assert!(!is_header_safe(&value));
}

#[test]
fn encodings_of_such_a_field_are_header_safe() {
    let values = Values::default().with(param("Api", "key"), "a\r\n\0b");
    let value = render(
        "{!BASE64ENCODE($Credential.Api.key)}:{!HEX($Credential.Api.key)}",
        &values,
    );
    assert_eq!(value, "YQ0KAGI=:610d0a0062");
    assert!(is_header_safe(&value));
}

#[test]
fn header_safety_refuses_control_characters_but_tab() {
    for safe in ["", "Bearer abc.def", "a\tb", "é ✓ \u{1F600}", "\u{a0}", "\u{7e}"] {
        assert!(is_header_safe(safe), "{safe:?}");
    }
    for refused in [
        "\r",
        "\n",
        "\0",
        "a\r\nb",
        "\u{1}",
        "\u{1b}[0m",
        "\u{7f}",
        "\u{85}",
        "\u{9f}",
    ] {
        assert!(!is_header_safe(refused), "{refused:?}");
    }
}

#[test]
fn a_literal_holding_crlf_is_kept_too() {
    // Config text can hold them (a TOML basic string with `\r\n`); check refuses them later.
    let formula = parse("{!\"a\r\nb\"}");
    assert_eq!(formula.constant(), Some("a\r\nb"));
    assert!(!is_header_safe(
        formula.render(&Values::default(), now()).unwrap().as_ref()
    ));
}

proptest! {
    #[test]
    fn header_safety_of_a_value_is_that_of_its_verbatim_fields(
        a in any::<String>(),
        b in "[a\r\n\u{0}\t\u{7f} é]{0,6}",
        c in any::<String>(),
    ) {
        let values = Values::default().with(user("A"), &a).with(user("B"), &b).with(param("Api", "c"), &c);
        let value = render(
            r#"x-{!"p" & $User.A + TEXT($User.B)}-{!BASE64ENCODE($Credential.Api.c) & HEX($User.A)}"#,
            &values,
        );
        let verbatim = format!("p{a}{b}");
        prop_assert!(value.contains(&verbatim));
        prop_assert_eq!(is_header_safe(&value), is_header_safe(&a) && is_header_safe(&b));
    }
}
