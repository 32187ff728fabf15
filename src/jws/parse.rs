//! PEM text to a ring key pair, with errors a `callout check` user can act on.
//!
//! ring reads RSA keys as PKCS#8 or PKCS#1 and EC keys only as PKCS#8, and its rejections are
//! terse codes. So the key's type, size and curve are read here first (from the PKCS#1,
//! PKCS#8 or SEC1 structure), SEC1 keys are rewrapped as PKCS#8, and ring is asked last.

use ring::error::KeyRejected;
use ring::signature::{EcdsaKeyPair, RsaKeyPair};
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use zeroize::Zeroizing;

use super::der::{self, Reader};
use super::key::{Curve, KeyError, Pair};
use super::rng;

const SUPPORTED: &str = "callout signs with RSA keys (RS256, RS384, RS512, PS256) \
                         and EC P-256 or P-384 keys (ES256, ES384)";

/// The ring key pair of the first private key in `pem`.
pub(super) fn key_pair(pem: &[u8]) -> Result<Pair, KeyError> {
    refuse_unreadable(pem)?;
    let (kind, der) = first_private_key(pem)?;
    match kind {
        SectionKind::RsaPrivateKey => rsa_pair(&der, &der, RsaKeyPair::from_der),
        SectionKind::EcPrivateKey => {
            let curve = sec1_curve(&der, None)?;
            ec_pair(curve, &wrap_sec1(curve, &der))
        }
        _ => match pkcs8_contents(&der)? {
            Pkcs8::Rsa(pkcs1) => rsa_pair(pkcs1, &der, RsaKeyPair::from_pkcs8),
            Pkcs8::Ec(curve, sec1) => {
                sec1_curve(sec1, Some(curve))?;
                ec_pair(curve, &der)
            }
        },
    }
}

/// Refuses, by its BEGIN line, a first private key that cannot be read: pki-types skips
/// labels it does not know (so "ENCRYPTED PRIVATE KEY" would look like no key at all) and
/// fails on the headers of an encrypted traditional key with a base64 error.
fn refuse_unreadable(pem: &[u8]) -> Result<(), KeyError> {
    let mut lines = pem
        .split(|&b| b == b'\n' || b == b'\r')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty());
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix(b"-----BEGIN ")
            .and_then(|rest| rest.strip_suffix(b"-----"))
        else {
            continue;
        };
        if !label.ends_with(b"PRIVATE KEY") {
            continue;
        }
        return match label {
            b"ENCRYPTED PRIVATE KEY" => Err(KeyError::Encrypted),
            b"PRIVATE KEY" | b"RSA PRIVATE KEY" | b"EC PRIVATE KEY" => match lines.next() {
                Some(next) if next.starts_with(b"Proc-Type:") && next.ends_with(b"ENCRYPTED") => {
                    Err(KeyError::Encrypted)
                }
                _ => Ok(()),
            },
            // Only letters, digits and spaces reach the message.
            other if other.iter().all(|&b| b.is_ascii_alphanumeric() || b == b' ') => {
                Err(KeyError::Unsupported(format!(
                    "holds a BEGIN {} block, which callout cannot read (expected BEGIN PRIVATE KEY, \
                     BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)",
                    String::from_utf8_lossy(other)
                )))
            }
            _ => Err(KeyError::NoKey),
        };
    }
    Ok(())
}

/// The kind and DER of the first private key section, wiped when dropped.
fn first_private_key(pem: &[u8]) -> Result<(SectionKind, Zeroizing<Vec<u8>>), KeyError> {
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|error| {
            // pki-types' own messages quote the offending line; these do not.
            KeyError::Unsupported(
                match error {
                    pem::Error::MissingSectionEnd { .. } => {
                        "is not valid PEM: a BEGIN line has no matching END line"
                    }
                    pem::Error::IllegalSectionStart { .. } => "is not valid PEM: a BEGIN line is malformed",
                    pem::Error::Base64Decode(_) => {
                        "is not valid PEM: the text between BEGIN and END is not base64"
                    }
                    _ => "is not valid PEM",
                }
                .to_owned(),
            )
        })?;
        let der = Zeroizing::new(der);
        if matches!(
            kind,
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
        ) {
            return Ok((kind, der));
        }
    }
    Err(KeyError::NoKey)
}

fn invalid(format: &str) -> KeyError {
    KeyError::Unsupported(format!(
        "is not a valid {format} private key (its DER is malformed)"
    ))
}

/// ring's rejection code: `KeyRejected` has `Display` only with ring's `std` feature.
fn reason(rejected: KeyRejected) -> String {
    let debug = format!("{rejected:?}");
    debug
        .strip_prefix("KeyRejected(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .map_or_else(|| debug.clone(), str::to_owned)
}

/// An RSA key pair from `input` (PKCS#1 or PKCS#8, as `parse` takes it), whose PKCS#1 DER is
/// `pkcs1`. The sizes ring refuses are checked first, to name them in the message.
fn rsa_pair(
    pkcs1: &[u8],
    input: &[u8],
    parse: fn(&[u8]) -> Result<RsaKeyPair, KeyRejected>,
) -> Result<Pair, KeyError> {
    // RSAPrivateKey: SEQUENCE { version, n, e, d, p, q, ... }
    let integers: Option<Vec<&[u8]>> = der::single(pkcs1, der::SEQUENCE).map(|body| {
        let mut reader = Reader::new(body);
        std::iter::from_fn(|| reader.expect(der::INTEGER))
            .take(5)
            .collect()
    });
    let Some([_, n, _, _, p]) = integers.as_deref() else {
        return Err(invalid("RSA"));
    };
    let bits = der::integer_bits(n);
    if bits < 2048 {
        return Err(KeyError::Unsupported(format!(
            "is an RSA {bits}-bit key; callout needs at least 2048 bits (ring refuses smaller RSA keys)"
        )));
    }
    // ring also wants primes of a multiple of 512 bits and at most 4096-bit moduli.
    if bits > 4096 || !der::integer_bits(p).is_multiple_of(512) {
        return Err(KeyError::Unsupported(format!(
            "is an RSA {bits}-bit key; ring signs only with 2048-, 3072- or 4096-bit RSA keys"
        )));
    }
    parse(input).map(Pair::Rsa).map_err(|rejected| {
        KeyError::Unsupported(format!(
            "is an RSA {bits}-bit key that ring refuses ({})",
            reason(rejected)
        ))
    })
}

fn ec_pair(curve: Curve, pkcs8: &[u8]) -> Result<Pair, KeyError> {
    EcdsaKeyPair::from_pkcs8(curve.signing(), pkcs8, rng())
        .map(|pair| Pair::Ec(pair, curve))
        .map_err(|rejected| {
            KeyError::Unsupported(format!(
                "is an EC {} key that ring refuses ({})",
                curve.name(),
                reason(rejected)
            ))
        })
}

/// The curve named by an OID's contents, if ring can sign with it.
fn named_curve(oid: &[u8]) -> Result<Curve, KeyError> {
    let name = match oid {
        der::OID_P256 => return Ok(Curve::P256),
        der::OID_P384 => return Ok(Curve::P384),
        der::OID_P521 => "an EC P-521 key",
        der::OID_SECP256K1 => "an EC secp256k1 key",
        _ => "an EC key on a curve callout does not know",
    };
    Err(KeyError::Unsupported(format!("is {name}; {SUPPORTED}")))
}

/// Checks a SEC1 ECPrivateKey and returns its curve: the one it names, which must agree with
/// `expected` (from a PKCS#8 wrapper, where SEC1 may omit it).
fn sec1_curve(sec1: &[u8], expected: Option<Curve>) -> Result<Curve, KeyError> {
    // ECPrivateKey: SEQUENCE { version 1, privateKey, [0] parameters?, [1] publicKey? }
    let (parameters, public_key) = der::single(sec1, der::SEQUENCE)
        .and_then(|body| {
            let mut reader = Reader::new(body);
            (reader.expect(der::INTEGER)? == [1]).then_some(())?;
            reader.expect(der::OCTET_STRING)?;
            Some((reader.optional(der::CONTEXT_0), reader.optional(der::CONTEXT_1)))
        })
        .ok_or_else(|| invalid("EC"))?;
    let curve = match (parameters.map(|p| Reader::new(p).any()), expected) {
        (None, Some(expected)) => expected,
        (None, None) => {
            return Err(KeyError::Unsupported(
                "is an EC private key that does not name its curve (its SEC1 parameters are missing)"
                    .to_owned(),
            ));
        }
        (Some(Some((der::OID, oid))), _) => named_curve(oid)?,
        (Some(Some((der::SEQUENCE, _))), _) => {
            return Err(KeyError::Unsupported(
                "is an EC key with explicit curve parameters; callout needs a named curve \
                 (openssl ec -in key.pem -param_enc named_curve -out key-named.pem)"
                    .to_owned(),
            ));
        }
        (Some(_), _) => return Err(invalid("EC")),
    };
    if expected.is_some_and(|expected| expected != curve) {
        return Err(invalid("EC"));
    }
    if public_key.is_none() {
        // ring checks the private key against the public key, so it wants both.
        return Err(KeyError::Unsupported(
            "is an EC private key without its public key, which ring needs \
             (openssl ec -in key.pem -out key-with-public.pem adds it)"
                .to_owned(),
        ));
    }
    Ok(curve)
}

/// A SEC1 key as the PKCS#8 PrivateKeyInfo ring reads: SEQUENCE { INTEGER 0,
/// SEQUENCE { ecPublicKey, curve }, OCTET STRING sec1 }. Written into one buffer of the
/// right size, so that no reallocation leaves a copy of the key behind.
fn wrap_sec1(curve: Curve, sec1: &[u8]) -> Zeroizing<Vec<u8>> {
    let version: &[u8] = &[der::INTEGER, 1, 0];
    let algorithm = der::tlv(
        der::SEQUENCE,
        &[
            &der::tlv(der::OID, &[der::OID_EC_PUBLIC_KEY]),
            &der::tlv(der::OID, &[curve.oid()]),
        ],
    );
    let octet_header = der::header(der::OCTET_STRING, sec1.len());
    let body_len = version.len() + algorithm.len() + octet_header.len() + sec1.len();
    let outer_header = der::header(der::SEQUENCE, body_len);
    let mut out = Zeroizing::new(Vec::with_capacity(outer_header.len() + body_len));
    for part in [&outer_header[..], version, &algorithm, &octet_header, sec1] {
        out.extend_from_slice(part);
    }
    out
}

enum Pkcs8<'a> {
    /// The PKCS#1 RSAPrivateKey inside.
    Rsa(&'a [u8]),
    /// The curve and the SEC1 ECPrivateKey inside.
    Ec(Curve, &'a [u8]),
}

/// What a PKCS#8 PrivateKeyInfo holds, by its algorithm OID.
fn pkcs8_contents(pkcs8: &[u8]) -> Result<Pkcs8<'_>, KeyError> {
    // PrivateKeyInfo: SEQUENCE { version, AlgorithmIdentifier, OCTET STRING privateKey, ... }
    let (algorithm, parameters, private_key) = der::single(pkcs8, der::SEQUENCE)
        .and_then(|body| {
            let mut reader = Reader::new(body);
            reader.expect(der::INTEGER)?;
            let mut algorithm = Reader::new(reader.expect(der::SEQUENCE)?);
            let private_key = reader.expect(der::OCTET_STRING)?;
            Some((algorithm.expect(der::OID)?, algorithm.any(), private_key))
        })
        .ok_or_else(|| invalid("PKCS#8"))?;
    let name = match algorithm {
        der::OID_RSA_ENCRYPTION => return Ok(Pkcs8::Rsa(private_key)),
        der::OID_EC_PUBLIC_KEY => {
            return match parameters {
                Some((der::OID, oid)) => Ok(Pkcs8::Ec(named_curve(oid)?, private_key)),
                _ => Err(invalid("EC")),
            };
        }
        der::OID_ED25519 => "an Ed25519 key",
        der::OID_ED448 => "an Ed448 key",
        der::OID_X25519 => "an X25519 key, which is for key agreement",
        der::OID_X448 => "an X448 key, which is for key agreement",
        der::OID_RSASSA_PSS => "an RSA-PSS-only key (id-RSASSA-PSS); a plain RSA key signs PS256 too",
        der::OID_DSA => "a DSA key",
        _ => "a private key of a type callout does not know",
    };
    Err(KeyError::Unsupported(format!("is {name}; {SUPPORTED}")))
}
