//! Property tests: random trees printed to formula text must parse and render to what a
//! straightforward reference evaluator over the same tree gives; and `parse` takes any text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::{Values, param, user};
use crate::formula::{Field, Formula, is_header_safe};

/// A formula as the test sees it, independent of the module's own tree.
#[derive(Debug, Clone)]
enum Node {
    Literal(String),
    /// An index into [`FIELDS`].
    Field(usize),
    /// Joined with `+` when true, `&` otherwise.
    Concat(Vec<Node>, bool),
    Group(Box<Node>),
    Base64Encode(Box<Node>),
    Base64Decode(Box<Node>),
    Hex(Box<Node>),
    Text(Box<Node>),
    Hmac(&'static str, Box<Node>, Box<Node>),
    Hash(&'static str, Box<Node>),
    UnixTime,
}

/// Literal text and a formula, repeated, then literal text.
#[derive(Debug, Clone)]
struct Case {
    pieces: Vec<(String, Node)>,
    tail: String,
    /// Printed between tokens: whitespace is insignificant.
    space: &'static str,
    lower_case_names: bool,
}

const FIELDS: [&str; 6] = [
    "$Credential.Api.key",
    "$Credential.OAuthToken",
    "$Credential.AuthorizationHeaderValue",
    "$Credential.Username",
    "$Credential.Password",
    "$User.Department",
];

const DEPARTMENT: usize = 5;

fn field(index: usize) -> Field {
    [
        param("Api", "key"),
        Field::OAuthToken,
        Field::AuthorizationHeaderValue,
        Field::Username,
        Field::Password,
        user("Department"),
    ][index]
        .clone()
}

const ALGORITHMS: [&str; 6] = [
    "hmacSHA256",
    "hmacSHA512",
    "hmacSHA1",
    "SHA-256",
    "SHA-512",
    "SHA-1",
];

// === generation ===

/// Characters that matter to the grammar, some non-ASCII, and anything at all.
fn awkward() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z\"\\\\{}!&+,()$. \t\r\n\u{0}é→\u{1F600}]{0,8}",
        1 => any::<String>(),
    ]
}

/// Outside `{!...}`: anything but `{!`, which would open a formula.
fn text() -> impl Strategy<Value = String> {
    awkward().prop_map(|text| text.replace("{!", "{ !"))
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        3 => awkward().prop_map(Node::Literal),
        3 => (0..FIELDS.len()).prop_map(Node::Field),
        1 => Just(Node::UnixTime),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        let boxed = inner.clone().prop_map(Box::new);
        let algorithm = proptest::sample::select(&ALGORITHMS[..]);
        prop_oneof![
            3 => (vec(inner.clone(), 2..4), any::<bool>()).prop_map(|(items, plus)| Node::Concat(items, plus)),
            1 => boxed.clone().prop_map(Node::Group),
            1 => boxed.clone().prop_map(Node::Base64Encode),
            // Mostly decoding what was encoded, so that most cases render.
            1 => prop_oneof![3 => boxed.clone().prop_map(|node| Box::new(Node::Base64Encode(node))), 1 => boxed.clone()]
                .prop_map(Node::Base64Decode),
            1 => boxed.clone().prop_map(Node::Hex),
            1 => boxed.clone().prop_map(Node::Text),
            1 => (algorithm.clone(), boxed.clone(), boxed.clone()).prop_map(|(alg, value, key)| Node::Hmac(alg, value, key)),
            1 => (algorithm, boxed).prop_map(|(alg, value)| Node::Hash(alg, value)),
        ]
    })
}

/// A part whose raw digest would reach the value is refused at parse (tested on its own in
/// `errors`), so parts are encoded here instead.
fn part() -> impl Strategy<Value = Node> {
    node().prop_map(|node| {
        if raw_digest(&node) {
            Node::Hex(Box::new(node))
        } else {
            node
        }
    })
}

fn raw_digest(node: &Node) -> bool {
    match node {
        Node::Hmac(..) | Node::Hash(..) => true,
        Node::Concat(items, _) => items.iter().any(raw_digest),
        Node::Group(inner) => raw_digest(inner),
        _ => false,
    }
}

fn case() -> impl Strategy<Value = Case> {
    let space = proptest::sample::select(&["", " ", "\n\t  "][..]);
    (vec((text(), part()), 0..4), text(), space, any::<bool>()).prop_map(
        |(pieces, tail, space, lower_case_names)| Case {
            pieces,
            tail,
            space,
            lower_case_names,
        },
    )
}

/// Field values, a few missing, some with control characters.
fn values() -> impl Strategy<Value = Vec<Option<String>>> {
    vec(option::weighted(0.9, awkward()), FIELDS.len())
}

fn to_values(values: &[Option<String>]) -> Values {
    let mut fields = Values::default();
    for (index, value) in values.iter().enumerate() {
        if let Some(value) = value {
            fields = fields.with(field(index), value);
        }
    }
    fields
}

// === the printer ===

fn print(case: &Case) -> String {
    let mut out = String::new();
    for (text, node) in &case.pieces {
        out.push_str(text);
        out.push_str("{!");
        out.push_str(case.space);
        print_node(node, case, &mut out);
        out.push_str(case.space);
        out.push('}');
    }
    out.push_str(&case.tail);
    out
}

fn print_node(node: &Node, case: &Case, out: &mut String) {
    let space = case.space;
    let call = |name: &str, args: &[String], out: &mut String| {
        out.push_str(&if case.lower_case_names {
            name.to_lowercase()
        } else {
            name.to_owned()
        });
        out.push_str(&format!(
            "{space}({space}{}{space})",
            args.join(&format!(",{space}"))
        ));
    };
    let printed = |node: &Node| {
        let mut out = String::new();
        print_node(node, case, &mut out);
        out
    };
    match node {
        Node::Literal(text) => {
            out.push('"');
            for c in text.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        Node::Field(index) => out.push_str(FIELDS[*index]),
        Node::Concat(items, plus) => {
            let items: Vec<String> = items.iter().map(printed).collect();
            out.push_str(&items.join(&format!("{space}{}{space}", if *plus { '+' } else { '&' })));
        }
        Node::Group(inner) => out.push_str(&format!("({space}{}{space})", printed(inner))),
        Node::Base64Encode(inner) => call("BASE64ENCODE", &[printed(inner)], out),
        Node::Base64Decode(inner) => call("BASE64DECODE", &[printed(inner)], out),
        Node::Hex(inner) => call("HEX", &[printed(inner)], out),
        Node::Text(inner) => call("TEXT", &[printed(inner)], out),
        Node::Hmac(alg, value, key) => {
            call("HMAC", &[format!("\"{alg}\""), printed(value), printed(key)], out)
        }
        Node::Hash(alg, value) => call("HASH", &[format!("\"{alg}\""), printed(value)], out),
        Node::UnixTime => call("UNIXTIME", &[], out),
    }
}

// === the reference evaluator ===

/// `None` when the value cannot be rendered: a missing field, bad base64, or bytes that are
/// not UTF-8 where text is needed.
fn reference(case: &Case, values: &[Option<String>], now: u64) -> Option<String> {
    let mut out = String::new();
    for (text, node) in &case.pieces {
        out.push_str(text);
        out.push_str(&String::from_utf8(eval(node, values, now)?).ok()?);
    }
    out.push_str(&case.tail);
    Some(out)
}

fn eval(node: &Node, values: &[Option<String>], now: u64) -> Option<Vec<u8>> {
    let eval = |node: &Node| eval(node, values, now);
    Some(match node {
        Node::Literal(text) => text.as_bytes().to_vec(),
        Node::Field(index) => values[*index].clone()?.into_bytes(),
        Node::Concat(items, _) => items.iter().map(eval).collect::<Option<Vec<_>>>()?.concat(),
        Node::Group(inner) => eval(inner)?,
        Node::Base64Encode(inner) => STANDARD.encode(eval(inner)?).into_bytes(),
        Node::Base64Decode(inner) => {
            let text = eval(inner)?;
            STANDARD
                .decode(&text)
                .or_else(|_| STANDARD_NO_PAD.decode(&text))
                .ok()?
        }
        Node::Hex(inner) => eval(inner)?
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
            .into_bytes(),
        Node::Text(inner) => String::from_utf8(eval(inner)?).ok()?.into_bytes(),
        Node::Hmac(alg, value, key) => {
            let (value, key) = (eval(value)?, eval(key)?);
            let algorithm = match *alg {
                name if name.ends_with("256") => ring::hmac::HMAC_SHA256,
                name if name.ends_with("512") => ring::hmac::HMAC_SHA512,
                _ => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            };
            ring::hmac::sign(&ring::hmac::Key::new(algorithm, &key), &value)
                .as_ref()
                .to_vec()
        }
        Node::Hash(alg, value) => {
            let algorithm = match *alg {
                name if name.ends_with("256") => &ring::digest::SHA256,
                name if name.ends_with("512") => &ring::digest::SHA512,
                _ => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            };
            ring::digest::digest(algorithm, &eval(value)?).as_ref().to_vec()
        }
        Node::UnixTime => now.to_string().into_bytes(),
    })
}

/// Fields in order of first use.
fn used(node: &Node, out: &mut Vec<usize>) {
    match node {
        Node::Field(index) if !out.contains(index) => out.push(*index),
        Node::Field(_) | Node::Literal(_) | Node::UnixTime => {}
        Node::Concat(items, _) => items.iter().for_each(|item| used(item, out)),
        Node::Group(inner) | Node::Base64Encode(inner) | Node::Base64Decode(inner) => used(inner, out),
        Node::Hex(inner) | Node::Text(inner) | Node::Hash(_, inner) => used(inner, out),
        Node::Hmac(_, value, key) => [value, key].into_iter().for_each(|node| used(node, out)),
    }
}

fn uses_time(node: &Node) -> bool {
    match node {
        Node::UnixTime => true,
        Node::Field(_) | Node::Literal(_) => false,
        Node::Concat(items, _) => items.iter().any(uses_time),
        Node::Group(inner) | Node::Base64Encode(inner) | Node::Base64Decode(inner) => uses_time(inner),
        Node::Hex(inner) | Node::Text(inner) | Node::Hash(_, inner) => uses_time(inner),
        Node::Hmac(_, value, key) => uses_time(value) || uses_time(key),
    }
}

/// Fields whose value reaches the result byte for byte: through concatenation, grouping
/// and `TEXT` only.
fn verbatim(node: &Node, out: &mut Vec<usize>) {
    match node {
        Node::Field(index) => out.push(*index),
        Node::Concat(items, _) => items.iter().for_each(|item| verbatim(item, out)),
        Node::Group(inner) | Node::Text(inner) => verbatim(inner, out),
        _ => {}
    }
}

fn clock(seconds: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(seconds))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn render_agrees_with_the_reference_model(case in case(), values in values(), seconds in any::<u32>()) {
        let text = print(&case);
        let expected = reference(&case, &values, u64::from(seconds));
        let parsed = Formula::parse(&text);
        let formula = match (parsed, &expected) {
            (Ok(formula), _) => formula,
            // A constant part that cannot be evaluated is refused at parse; then it fails
            // whatever the fields hold.
            (Err(error), None) => {
                for other in ["", "Zg=="] {
                    let others = vec![Some(other.to_owned()); FIELDS.len()];
                    prop_assert!(reference(&case, &others, 0).is_none(), "{text:?}: {error}");
                }
                return Ok(());
            }
            (Err(error), Some(_)) => panic!("{text:?} at {}: {error}", error.offset),
        };
        let rendered = formula.render(&to_values(&values), clock(seconds));
        match (&expected, rendered) {
            (Some(expected), Ok(rendered)) => prop_assert_eq!(expected.as_str(), rendered.as_ref()),
            (None, Err(_)) => {}
            (expected, rendered) => panic!("{text:?}: expected {expected:?}, rendered {rendered:?}"),
        }

        let mut fields = Vec::new();
        case.pieces.iter().for_each(|(_, node)| used(node, &mut fields));
        let listed: Vec<Field> = formula.fields().cloned().collect();
        prop_assert_eq!(listed, fields.iter().map(|&index| field(index)).collect::<Vec<_>>());
        prop_assert_eq!(formula.uses_user(), fields.contains(&DEPARTMENT));
        prop_assert_eq!(formula.holds_secret(), fields.iter().any(|&index| index != DEPARTMENT));
        let varies = !fields.is_empty() || case.pieces.iter().any(|(_, node)| uses_time(node));
        prop_assert_eq!(formula.constant().is_none(), varies);
        if let (Some(constant), Some(expected)) = (formula.constant(), &expected) {
            prop_assert_eq!(constant, expected.as_str());
        }
    }

    #[test]
    fn control_characters_in_verbatim_fields_reach_the_value(
        case in case(),
        values in vec(option::weighted(0.95, "[a\r\n\u{0}\t ]{0,4}"), FIELDS.len()),
    ) {
        let Ok(formula) = Formula::parse(&print(&case)) else { return Ok(()) };
        let Some(expected) = reference(&case, &values, 0) else { return Ok(()) };
        // Rendering never drops or alters them: refusing the value is the caller's job.
        let rendered = formula.render(&to_values(&values), UNIX_EPOCH).unwrap();
        prop_assert_eq!(rendered.as_ref(), expected.as_str());
        let mut fields = Vec::new();
        case.pieces.iter().for_each(|(_, node)| verbatim(node, &mut fields));
        let unsafe_field = fields
            .iter()
            .filter_map(|&index| values[index].as_deref())
            .any(|value| value.contains(['\r', '\n', '\0']));
        if unsafe_field {
            prop_assert!(!is_header_safe(&rendered), "{rendered:?}");
        }
    }

    #[test]
    fn text_without_a_formula_is_a_constant_of_itself(text in prop_oneof![text(), any::<String>()]) {
        prop_assume!(!text.contains("{!"));
        let formula = Formula::parse(&text).unwrap();
        prop_assert_eq!(formula.constant(), Some(text.as_str()));
        prop_assert_eq!(formula.fields().count(), 0);
    }

    #[test]
    fn parse_takes_any_text(text in prop_oneof![
        any::<String>(),
        "[{}!\"\\\\$.&+,() a-zA-Z_\u{e9}]{0,24}",
        "\\{![A-Za-z$.\"(), &+\\\\]{0,24}",
    ]) {
        check_parse_error(&text);
    }

    #[test]
    fn parse_takes_any_truncation_of_a_valid_formula(case in case(), cut in any::<prop::sample::Index>()) {
        let text = print(&case);
        let boundaries: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
        check_parse_error(&text[..boundaries[cut.index(boundaries.len())]]);
    }
}

/// Parse errors point inside the text, on a character boundary.
fn check_parse_error(text: &str) {
    if let Err(error) = Formula::parse(text) {
        assert!(
            error.offset <= text.len() && text.is_char_boundary(error.offset),
            "{text:?}: {error:?}"
        );
        assert!(!error.message.is_empty());
    }
}
