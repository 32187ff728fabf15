//! The parsed tree and its evaluation: what each function does to bytes.
//!
//! The parser folds every subtree that needs no merge field and no clock through the same
//! [`write`], so a constant part and a rendered one cannot disagree.

use std::borrow::Cow;
use std::ops::Deref;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ring::{digest, hmac};
use zeroize::Zeroizing;

use super::{EvalError, Field, Fields};

/// One piece of a value that varies per request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Part {
    /// Literal text, with constant `{!...}` parts already folded in.
    Text(String),
    /// A `{!...}` part; its value must be UTF-8.
    Formula(Expr),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Expr {
    /// A string literal, or a folded constant (then not necessarily UTF-8).
    Bytes(Vec<u8>),
    Field(Field),
    /// Never nested and never two `Bytes` side by side: the parser flattens and merges.
    Concat(Vec<Expr>),
    /// The arguments, the algorithm of `HMAC` and `HASH` taken out: `[value, key]`, `[value]`.
    Call(Function, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Function {
    Base64Encode,
    Base64Decode,
    Hmac(Digest),
    Hash(Digest),
    Hex,
    Text,
    UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Digest {
    Sha1,
    Sha256,
    Sha512,
}

// === impl Digest ===

/// Salesforce's Crypto names: `generateMac` says `hmacSHA256`, `generateDigest` says
/// `SHA-256`. Both functions take either, since which family is meant is never in doubt.
const DIGEST_NAMES: [(&str, Digest); 6] = [
    ("hmacSHA256", Digest::Sha256),
    ("hmacSHA512", Digest::Sha512),
    ("hmacSHA1", Digest::Sha1),
    ("SHA-256", Digest::Sha256),
    ("SHA-512", Digest::Sha512),
    ("SHA-1", Digest::Sha1),
];

impl Digest {
    /// The algorithm `name` stands for, in any case (Java's, so Salesforce's, lookup ignores
    /// case too).
    pub(super) fn named(name: &str) -> Option<Digest> {
        DIGEST_NAMES
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|&(_, digest)| digest)
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Digest::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Digest::Sha256 => &digest::SHA256,
            Digest::Sha512 => &digest::SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Digest::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Digest::Sha256 => hmac::HMAC_SHA256,
            Digest::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

// === evaluation ===

/// Renders the parts of a value that varies per request.
pub(super) fn render(parts: &[Part], fields: &dyn Fields, now: SystemTime) -> Result<String, EvalError> {
    // Wiped on drop, so an error half-way leaves no secret bytes behind; on success the
    // bytes move out into the value the caller asked for.
    let mut out = Zeroizing::new(Vec::with_capacity(capacity_hint(parts)));
    for part in parts {
        match part {
            Part::Text(text) => out.extend_from_slice(text.as_bytes()),
            Part::Formula(expr) => {
                let start = out.len();
                write(expr, fields, now, &mut out)?;
                if std::str::from_utf8(&out[start..]).is_err() {
                    return Err(EvalError::NotUtf8("{!...}"));
                }
            }
        }
    }
    // Each part is UTF-8 on its own, so the whole is; the check costs one pass.
    String::from_utf8(std::mem::take(&mut *out)).map_err(|_| EvalError::NotUtf8("{!...}"))
}

/// The literal text plus room for a typical token, so that most values need one allocation.
fn capacity_hint(parts: &[Part]) -> usize {
    let literal: usize = parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => text.len(),
            Part::Formula(_) => 0,
        })
        .sum();
    literal + 256
}

/// Appends the value of `expr` to `out`.
pub(super) fn write(
    expr: &Expr,
    fields: &dyn Fields,
    now: SystemTime,
    out: &mut Vec<u8>,
) -> Result<(), EvalError> {
    match expr {
        Expr::Bytes(bytes) => out.extend_from_slice(bytes),
        Expr::Field(field) => out.extend_from_slice(get(fields, field)?.as_bytes()),
        Expr::Concat(items) => {
            for item in items {
                write(item, fields, now, out)?;
            }
        }
        Expr::Call(function, args) => call(*function, args, fields, now, out)?,
    }
    Ok(())
}

fn call(
    function: Function,
    args: &[Expr],
    fields: &dyn Fields,
    now: SystemTime,
    out: &mut Vec<u8>,
) -> Result<(), EvalError> {
    let operand = |index: usize| Operand::of(&args[index], fields, now);
    match function {
        Function::Text => {
            // Writes in place: TEXT only checks what its argument gives.
            let start = out.len();
            write(&args[0], fields, now, out)?;
            if std::str::from_utf8(&out[start..]).is_err() {
                return Err(EvalError::NotUtf8("TEXT"));
            }
        }
        Function::Base64Encode => {
            let value = operand(0)?;
            let start = out.len();
            let len =
                base64::encoded_len(value.len(), true).expect("base64 of bytes in memory fits in memory");
            out.resize(start + len, 0);
            let written = STANDARD
                .encode_slice(&*value, &mut out[start..])
                .expect("sized by encoded_len");
            out.truncate(start + written);
        }
        Function::Base64Decode => {
            // Padded, or with no padding at all, as Salesforce's `EncodingUtil.base64Decode`
            // takes it. The crate's error names the offending byte, so it is dropped: the
            // text may be a secret.
            let value = operand(0)?;
            let start = out.len();
            if STANDARD.decode_vec(&*value, out).is_err() {
                out.truncate(start);
                if STANDARD_NO_PAD.decode_vec(&*value, out).is_err() {
                    out.truncate(start);
                    return Err(EvalError::BadBase64);
                }
            }
        }
        Function::Hex => {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            let value = operand(0)?;
            out.reserve(value.len() * 2);
            for byte in value.iter() {
                out.push(DIGITS[usize::from(byte >> 4)]);
                out.push(DIGITS[usize::from(byte & 0x0f)]);
            }
        }
        Function::Hash(algorithm) => {
            let value = operand(0)?;
            out.extend_from_slice(digest::digest(algorithm.digest(), &value).as_ref());
        }
        Function::Hmac(algorithm) => {
            let (value, key) = (operand(0)?, operand(1)?);
            let key = hmac::Key::new(algorithm.hmac(), &key);
            out.extend_from_slice(hmac::sign(&key, &value).as_ref());
        }
        Function::UnixTime => {
            let seconds = now
                .duration_since(UNIX_EPOCH)
                .map_err(|_| EvalError::ClockBeforeEpoch)?
                .as_secs();
            out.extend_from_slice(seconds.to_string().as_bytes());
        }
    }
    Ok(())
}

fn get<'a>(fields: &'a dyn Fields, field: &Field) -> Result<Cow<'a, str>, EvalError> {
    fields
        .get(field)
        .ok_or_else(|| EvalError::MissingField(field.clone()))
}

/// A function's argument: borrowed when it is a literal or a field, so `HMAC(alg, $Field,
/// "key")` copies nothing; computed into a buffer wiped on drop otherwise.
enum Operand<'a> {
    Borrowed(&'a [u8]),
    Field(Cow<'a, str>),
    Owned(Zeroizing<Vec<u8>>),
}

impl<'a> Operand<'a> {
    fn of(expr: &'a Expr, fields: &'a dyn Fields, now: SystemTime) -> Result<Self, EvalError> {
        Ok(match expr {
            Expr::Bytes(bytes) => Operand::Borrowed(bytes),
            Expr::Field(field) => Operand::Field(get(fields, field)?),
            _ => {
                let mut buffer = Zeroizing::new(Vec::new());
                write(expr, fields, now, &mut buffer)?;
                Operand::Owned(buffer)
            }
        })
    }
}

impl Deref for Operand<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Operand::Borrowed(bytes) => bytes,
            Operand::Field(text) => text.as_bytes(),
            Operand::Owned(buffer) => buffer,
        }
    }
}
