//! Just enough DER to look inside PKCS#8 and SEC1 keys and to build the few structures ring
//! wants. Key files come from users, so every read is bounds-checked and returns `None` on
//! anything malformed instead of panicking.

pub(super) const INTEGER: u8 = 0x02;
pub(super) const BIT_STRING: u8 = 0x03;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const NULL: u8 = 0x05;
pub(super) const OID: u8 = 0x06;
pub(super) const SEQUENCE: u8 = 0x30;
/// `[0]` and `[1]` explicit, as in SEC1's `parameters` and `publicKey`.
pub(super) const CONTEXT_0: u8 = 0xa0;
pub(super) const CONTEXT_1: u8 = 0xa1;

// OID contents (without tag and length).
pub(super) const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
pub(super) const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
pub(super) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub(super) const OID_DSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];
pub(super) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(super) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
pub(super) const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
pub(super) const OID_SECP256K1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x0a];
pub(super) const OID_X25519: &[u8] = &[0x2b, 0x65, 0x6e];
pub(super) const OID_X448: &[u8] = &[0x2b, 0x65, 0x6f];
pub(super) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
pub(super) const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];

/// Reads TLVs one after another from a byte slice.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(super) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element's tag and contents.
    pub(super) fn any(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        // High tag numbers never occur in the structures read here.
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            // 0x80 is BER's indefinite length, which DER forbids; more than four length bytes
            // would describe a key file of gigabytes.
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            if bytes[0] == 0 {
                return None;
            }
            let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return None;
            }
            len
        };
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Some((tag, value))
    }

    /// The contents of the next element, which must have `tag`.
    pub(super) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.any()? {
            (found, value) if found == tag => Some(value),
            _ => None,
        }
    }

    /// The contents of the next element if it has `tag`; nothing is consumed otherwise.
    pub(super) fn optional(&mut self, tag: u8) -> Option<&'a [u8]> {
        if self.peek_tag() == Some(tag) {
            self.expect(tag)
        } else {
            None
        }
    }
}

/// The contents of `input` when it is exactly one element with `tag`.
pub(super) fn single(input: &[u8], tag: u8) -> Option<&[u8]> {
    let mut reader = Reader::new(input);
    let value = reader.expect(tag)?;
    reader.is_empty().then_some(value)
}

/// A tag and length header for `len` bytes of contents.
pub(super) fn header(tag: u8, len: usize) -> Vec<u8> {
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out
}

/// One element whose contents are `parts` concatenated. Only for public data: secret
/// contents are written into a pre-sized buffer by the caller, so no copy is left behind.
pub(super) fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|part| part.len()).sum();
    let mut out = header(tag, len);
    out.reserve_exact(len);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// The number of significant bits of a DER INTEGER's contents (big-endian, maybe with a
/// leading zero byte that keeps it positive).
pub(super) fn integer_bits(value: &[u8]) -> usize {
    let skip = value.iter().take_while(|&&b| b == 0).count();
    match value.get(skip) {
        Some(&top) => (value.len() - skip) * 8 - top.leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x1234, 0x10000] {
            let value = vec![7u8; len];
            let encoded = tlv(OCTET_STRING, &[&value]);
            assert_eq!(single(&encoded, OCTET_STRING), Some(&value[..]), "length {len}");
        }
    }

    #[test]
    fn rejects_malformed_lengths() {
        for bad in [
            &[0x04, 0x80][..],                     // indefinite
            &[0x04, 0x81, 0x05, 1, 2, 3, 4, 5],    // non-minimal long form
            &[0x04, 0x82, 0x00, 0x90],             // leading zero length byte
            &[0x04, 0x85, 1, 1, 1, 1, 1],          // five length bytes
            &[0x04, 0x84, 0xff, 0xff, 0xff, 0xff], // longer than the input
            &[0x04, 0x03, 1, 2],                   // short contents
            &[0x1f, 0x01, 0x00],                   // high tag number
            &[0x04],
            &[],
        ] {
            assert_eq!(Reader::new(bad).any(), None, "{bad:02x?}");
        }
        assert_eq!(single(&[0x05, 0x00, 0x05, 0x00], NULL), None, "trailing data");
    }

    #[test]
    fn integer_bits_counts() {
        assert_eq!(integer_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(integer_bits(&[0x01, 0x00]), 9);
        assert_eq!(integer_bits(&[0x00]), 0);
        assert_eq!(integer_bits(&[]), 0);
    }
}
