//! The names a formula may use: merge fields, functions and algorithms, with the messages
//! (and "did you mean" suggestions) for the ones it may not.

use super::Field;
use super::eval::{Digest, Function};

// === merge fields ===

const CREDENTIAL_FIELDS: [(&str, Field); 4] = [
    ("OAuthToken", Field::OAuthToken),
    ("AuthorizationHeaderValue", Field::AuthorizationHeaderValue),
    ("Username", Field::Username),
    ("Password", Field::Password),
];

/// The shape of a merge field. Names of external credentials and parameters are the
/// config's to check; here only `$Credential.A.B` versus `$Credential.OAuthToken` matters.
/// `$Credential`, `$User` and the built-in names match in any case, as Salesforce's do.
pub(super) fn resolve(written: &str, segments: &[&str]) -> Result<Field, String> {
    let (namespace, rest) = segments.split_first().expect("at least one segment");
    if namespace.eq_ignore_ascii_case("Credential") {
        return match rest {
            [name] => CREDENTIAL_FIELDS
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(name))
                .map(|(_, field)| field.clone())
                .ok_or_else(
                    || match closest(name, CREDENTIAL_FIELDS.iter().map(|(known, _)| *known)) {
                        Some(close) => {
                            format!("unknown merge field `{written}`; did you mean `$Credential.{close}`?")
                        }
                        None => format!("unknown merge field `{written}`; {CREDENTIAL_HINT}"),
                    },
                ),
            [external_credential, name] => Ok(Field::Parameter {
                external_credential: (*external_credential).to_owned(),
                name: (*name).to_owned(),
            }),
            _ => Err(format!("unknown merge field `{written}`; {CREDENTIAL_HINT}")),
        };
    }
    if namespace.eq_ignore_ascii_case("User") {
        return match rest {
            [name] => Ok(Field::User((*name).to_owned())),
            _ => Err(format!(
                "unknown merge field `{written}`; a `$User` field has one name, as in `$User.Department`"
            )),
        };
    }
    Err(match closest(namespace, ["Credential", "User"].into_iter()) {
        Some(close) => format!("unknown merge field `{written}`; did you mean `${close}`?"),
        None => {
            format!("unknown merge field `{written}`; merge fields begin with `$Credential.` or `$User.`")
        }
    })
}

const CREDENTIAL_HINT: &str = "use `$Credential.EXTERNAL_CREDENTIAL.PARAMETER`, `$Credential.OAuthToken`, \
     `$Credential.AuthorizationHeaderValue`, `$Credential.Username` or `$Credential.Password`";

// === functions ===

pub(super) struct Signature {
    pub(super) name: &'static str,
    pub(super) params: &'static [&'static str],
    pub(super) builds: Builds,
}

/// What a call of the function becomes in the tree.
pub(super) enum Builds {
    Function(Function),
    /// `HMAC` and `HASH`: their first argument names the digest, and is taken out.
    WithDigest(fn(Digest) -> Function),
}

const SIGNATURES: [Signature; 7] = [
    Signature {
        name: "BASE64ENCODE",
        params: &["value"],
        builds: Builds::Function(Function::Base64Encode),
    },
    Signature {
        name: "BASE64DECODE",
        params: &["value"],
        builds: Builds::Function(Function::Base64Decode),
    },
    Signature {
        name: "HMAC",
        params: &["alg", "value", "key"],
        builds: Builds::WithDigest(Function::Hmac),
    },
    Signature {
        name: "HASH",
        params: &["alg", "value"],
        builds: Builds::WithDigest(Function::Hash),
    },
    Signature {
        name: "HEX",
        params: &["value"],
        builds: Builds::Function(Function::Hex),
    },
    Signature {
        name: "TEXT",
        params: &["value"],
        builds: Builds::Function(Function::Text),
    },
    Signature {
        name: "UNIXTIME",
        params: &[],
        builds: Builds::Function(Function::UnixTime),
    },
];

impl Signature {
    /// Function names match in any case, as in Salesforce formulas.
    pub(super) fn find(name: &str) -> Option<&'static Signature> {
        SIGNATURES
            .iter()
            .find(|known| known.name.eq_ignore_ascii_case(name))
    }

    /// The digest an `HMAC` or `HASH` algorithm names; `literal` is `None` when the argument
    /// is not a string literal: the algorithm is checked at load, so it must be one.
    pub(super) fn algorithm(&self, literal: Option<&str>) -> Result<Digest, String> {
        let name = self.name;
        let Some(alg) = literal else {
            let example = if name == "HASH" { "SHA-256" } else { "hmacSHA256" };
            return Err(format!(
                "`{name}` takes its algorithm as a string literal, such as \"{example}\""
            ));
        };
        Digest::named(alg).ok_or_else(|| {
            // Each function's own family first.
            let known = match name {
                "HASH" => r#""SHA-256", "SHA-512", "SHA-1", "hmacSHA256", "hmacSHA512" or "hmacSHA1""#,
                _ => r#""hmacSHA256", "hmacSHA512", "hmacSHA1", "SHA-256", "SHA-512" or "SHA-1""#,
            };
            format!("unknown algorithm {alg:?}; use {known}")
        })
    }

    pub(super) fn arity_message(&self, got: usize) -> String {
        let name = self.name;
        match self.params {
            [] => format!("`{name}` takes no arguments, got {got}"),
            [one] => format!("`{name}` takes 1 argument ({one}), got {got}"),
            params => format!(
                "`{name}` takes {} arguments ({}), got {got}",
                params.len(),
                params.join(", ")
            ),
        }
    }
}

pub(super) fn unknown_function(name: &str) -> String {
    match closest(name, SIGNATURES.iter().map(|known| known.name)) {
        Some(close) => format!("unknown function `{name}`; did you mean `{close}`?"),
        None => format!(
            "unknown function `{name}`; the functions are BASE64ENCODE, BASE64DECODE, HMAC, HASH, HEX, TEXT and UNIXTIME"
        ),
    }
}

/// The candidate nearest to `name` (ignoring case), when it is near enough to be a typo:
/// one edit in a short name, two in a longer one.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = if name.len() <= 4 { 1 } else { 2 };
    candidates
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over ASCII-lowercased bytes (names here are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (
        a.to_ascii_lowercase().into_bytes(),
        b.to_ascii_lowercase().into_bytes(),
    );
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
