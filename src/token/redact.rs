//! Token endpoint text made fit to show: the RFC 6749 §5.2 `error` code checked for callers,
//! and `error_description` (or any other text of the answer) with every secret and token
//! replaced by `[redacted]`, in printable ASCII and bounded, for operators.
//!
//! Pure: the caller passes the secrets to look for (see `TokenSlot::fetch` for which).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

/// What stands in for a secret.
pub const REDACTED: &str = "[redacted]";
/// What stands in for an `error` code that is not one.
pub const INVALID_RESPONSE: &str = "invalid_response";
/// The longest sanitised text, in characters (bytes: it is ASCII).
pub const MAX_TEXT: usize = 200;
/// Shorter secrets are not looked for: a one- or two-character "secret" would blank out
/// every description it happens to occur in, and one that short protects nothing anyway.
/// (A test config's `abc` stays visible if the token endpoint repeats it.)
pub const MIN_SECRET: usize = 4;
const MAX_CODE: usize = 64;
/// A redaction can join text into a new match (`…d` + `]x` of a secret `d]x` next to a
/// marker); passes repeat until none is left, and past this many the whole text goes.
const MAX_PASSES: usize = 8;
/// A redacted span while the text is worked on. U+FFFF is a noncharacter that no honest
/// answer holds; one in the input is turned into U+FFFD first, so a marker is always ours.
const MARK: char = '\u{FFFF}';

/// `raw` when it is an RFC 6749 §5.2 error code of a sane size (ASCII letters, digits and
/// `_`, 1 to 64 characters), else `invalid_response`. The RFC allows more (any of
/// `%x20-21 / %x23-5B / %x5D-7E`), but no registered code uses more, and spaces or quotes
/// are how a server would smuggle a sentence into a field callers see.
pub fn error_code(raw: &str) -> &str {
    let fits =
        (1..=MAX_CODE).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if fits { raw } else { INVALID_RESPONSE }
}

/// `text` with every occurrence of each of `secrets` (and of its form-urlencoded and
/// base64 forms) replaced by `[redacted]`, then every character outside printable ASCII
/// replaced by `?`, then cut to at most `MAX_TEXT` characters.
///
/// Redaction comes first, on the text as received, so that a secret with non-ASCII
/// characters is still recognised, and again after the `?`s went in (a secret `a?b?` could
/// otherwise be spelled by control characters). The cut comes last and only between a
/// character and a marker, so it can never leave half a secret or half a marker.
///
/// A secret that is part of `[redacted]` itself (`dact`) cannot be kept out of the output;
/// no real secret is.
pub fn sanitize(text: &str, secrets: &[&str]) -> String {
    let needles = needles(secrets);
    let mut work: Zeroizing<String> = Zeroizing::new(text.replace(MARK, "\u{FFFD}"));
    redact(&mut work, &needles);
    let printable: Zeroizing<String> = Zeroizing::new(
        work.chars()
            .map(|c| {
                if c == MARK || (' '..='~').contains(&c) {
                    c
                } else {
                    '?'
                }
            })
            .collect(),
    );
    work = printable;
    redact(&mut work, &needles);
    let mut out = String::with_capacity(MAX_TEXT);
    for c in work.chars() {
        let piece = if c == MARK { REDACTED.len() } else { 1 };
        if out.len() + piece > MAX_TEXT {
            break;
        }
        if c == MARK {
            out.push_str(REDACTED);
        } else {
            out.push(c);
        }
    }
    out
}

/// What to look for: each secret of `MIN_SECRET` bytes or more as it is, form-urlencoded
/// (as a form field echoed from a request body, `+` or `%20` for a space, either case of
/// hex), and base64 (as a Basic header echoed, of the raw or the form-encoded value).
fn needles(secrets: &[&str]) -> Vec<Zeroizing<String>> {
    let mut out: Vec<Zeroizing<String>> = Vec::new();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET) {
        let form: Zeroizing<String> =
            Zeroizing::new(form_urlencoded::byte_serialize(secret.as_bytes()).collect());
        let spaced = Zeroizing::new(form.replace('+', "%20"));
        let spellings = [
            Zeroizing::new(secret.to_string()),
            Zeroizing::new(lower_hex(&form)),
            Zeroizing::new(lower_hex(&spaced)),
            form,
            spaced,
        ];
        for spelling in &spellings {
            out.extend(base64_cores(spelling.as_bytes()));
        }
        out.extend(spellings);
    }
    out.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    out.dedup();
    out
}

/// `%3A` as `%3a`: percent-encoding is case-insensitive and some servers re-encode.
fn lower_hex(form: &str) -> String {
    let mut out = String::with_capacity(form.len());
    let mut hex_left = 0;
    for c in form.chars() {
        if hex_left > 0 {
            out.push(c.to_ascii_lowercase());
            hex_left -= 1;
        } else {
            hex_left = if c == '%' { 2 } else { 0 };
            out.push(c);
        }
    }
    out
}

/// The base64 characters that `value` alone decides, wherever it sits in the encoded
/// bytes: inside `Basic base64(id:secret)` the secret starts at any offset modulo 3, and
/// the characters it shares with its neighbours differ by neighbour. Standard and URL-safe
/// alphabets; at least 4 characters for a 4-byte value, at any offset.
fn base64_cores(value: &[u8]) -> Vec<Zeroizing<String>> {
    let mut out = Vec::new();
    for offset in 0..3usize {
        let mut bytes = Zeroizing::new(vec![0u8; offset]);
        bytes.extend_from_slice(value);
        let first = (8 * offset).div_ceil(6);
        let end = 8 * (offset + value.len()) / 6;
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = Zeroizing::new(engine.encode(&*bytes));
            out.push(Zeroizing::new(encoded[first..end].to_owned()));
        }
    }
    out
}

/// Replaces every match of `needles` in `work` (markers read as `[redacted]`) by a marker,
/// until no match is left that is more than part of one marker.
fn redact(work: &mut Zeroizing<String>, needles: &[Zeroizing<String>]) {
    if needles.is_empty() {
        return;
    }
    for _ in 0..MAX_PASSES {
        match redact_once(work.as_str(), needles) {
            Some(next) => *work = next,
            None => return,
        }
    }
    // Only a text built to make redactions cascade gets here; none of it is worth the risk.
    *work = Zeroizing::new(MARK.to_string());
}

/// One pass over `work`: `None` when nothing is left to redact.
fn redact_once(work: &str, needles: &[Zeroizing<String>]) -> Option<Zeroizing<String>> {
    // The text as it will read, and for each of its bytes the character of `work` it
    // comes from, so that a match that runs into a marker takes the marker with it.
    let mut shown = Zeroizing::new(String::with_capacity(work.len()));
    let mut origin = Vec::with_capacity(work.len());
    for (at, c) in work.char_indices() {
        let before = shown.len();
        if c == MARK {
            shown.push_str(REDACTED);
        } else {
            shown.push(c);
        }
        origin.resize(origin.len() + shown.len() - before, at);
    }
    let mut spans = Vec::new();
    for needle in needles {
        let mut from = 0;
        while let Some(found) = shown[from..].find(needle.as_str()) {
            let start = from + found;
            let (first, last) = (origin[start], origin[start + needle.len() - 1]);
            // Inside one marker already: the needle is part of `[redacted]`.
            if !(first == last && work[first..].starts_with(MARK)) {
                let last_len = work[last..].chars().next().map_or(1, char::len_utf8);
                spans.push((first, last + last_len));
            }
            // Overlapping matches too: `abab` in `ababab` is two of them.
            from = start + shown[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut out = Zeroizing::new(String::with_capacity(work.len()));
    let mut copied = 0;
    let mut spans = spans.into_iter().peekable();
    while let Some((start, mut end)) = spans.next() {
        while let Some(&(next_start, next_end)) = spans.peek()
            && next_start <= end
        {
            end = end.max(next_end);
            spans.next();
        }
        out.push_str(&work[copied..start]);
        out.push(MARK);
        copied = end;
    }
    out.push_str(&work[copied..]);
    // Neighbouring markers become one, so that a match is never made of markers alone.
    let mut merged = Zeroizing::new(String::with_capacity(out.len()));
    for c in out.chars() {
        if !(c == MARK && merged.ends_with(MARK)) {
            merged.push(c);
        }
    }
    Some(merged)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    const SECRET: &str = "s3cr:t %+/=&ü";

    fn form(s: &str) -> String {
        form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    #[test]
    fn error_codes() {
        for good in ["invalid_client", "invalid_grant", "E42", "a", &"x".repeat(64)] {
            assert_eq!(error_code(good), good);
        }
        for bad in [
            "",
            "invalid client",
            "invalid_client\r\nX-Evil: 1",
            "\"quoted\"",
            "invalid-client",
            "érreur",
            "a.b",
            &"x".repeat(65),
        ] {
            assert_eq!(error_code(bad), INVALID_RESPONSE, "{bad:?}");
        }
    }

    #[test]
    fn a_secret_in_the_middle() {
        let text = format!("client secret {SECRET} is wrong");
        assert_eq!(sanitize(&text, &[SECRET]), "client secret [redacted] is wrong");
    }

    #[test]
    fn every_occurrence_and_every_secret() {
        let text = "aaaa then bbbbb then aaaa and aaaabbbbb";
        assert_eq!(
            sanitize(text, &["aaaa", "bbbbb"]),
            "[redacted] then [redacted] then [redacted] and [redacted]"
        );
        // Overlapping occurrences go together.
        assert_eq!(sanitize("x abababab y", &["abab"]), "x [redacted] y");
    }

    #[test]
    fn form_encoded_and_base64_echoes() {
        let body = format!("grant_type=client_credentials&client_secret={}", form(SECRET));
        assert_eq!(
            sanitize(&body, &[SECRET]),
            "grant_type=client_credentials&client_secret=[redacted]"
        );
        let spaced = form(SECRET).replace('+', "%20").to_lowercase();
        assert_eq!(sanitize(&spaced, &[SECRET]), "[redacted]");
        for id in ["", "i", "id", "my+id"] {
            for value in [SECRET.to_owned(), form(SECRET)] {
                let basic = STANDARD.encode(format!("{id}:{value}"));
                let shown = sanitize(&format!("Authorization: Basic {basic}"), &[SECRET]);
                assert!(shown.contains(REDACTED), "{id:?} {shown}");
                assert!(!shown.contains(&basic), "{id:?} {shown}");
                // What is left of the secret is at most the bits it shares with its
                // neighbours, and the padding.
                let left = shown.len() - "Authorization: Basic ".len() - REDACTED.len();
                assert!(
                    left <= STANDARD.encode(format!("{id}:")).len() + 3,
                    "{id:?} {shown}"
                );
            }
        }
        let alone = STANDARD.encode(SECRET);
        assert!(!sanitize(&alone, &[SECRET]).contains(&alone));
    }

    #[test]
    fn the_cut_comes_after_redaction() {
        // A secret across the 200th character is redacted whole, not cut in two.
        let text = format!("{}{SECRET} and more", "x".repeat(195));
        let shown = sanitize(&text, &[SECRET]);
        assert_eq!(shown, "x".repeat(195), "no room for the whole marker");
        let text = format!("{}{SECRET}", "x".repeat(190));
        assert_eq!(
            sanitize(&text, &[SECRET]),
            format!("{}{REDACTED}", "x".repeat(190))
        );
        assert_eq!(sanitize(&"y".repeat(1000), &[]).len(), MAX_TEXT);
        // A secret that the cut would have halved, without redaction.
        let text = format!("{}wxyz-secret", "x".repeat(196));
        assert_eq!(sanitize(&text, &["wxyz-secret"]), "x".repeat(196));
    }

    #[test]
    fn only_printable_ascii() {
        assert_eq!(sanitize("a\r\nb\tc\u{0}d\u{7f}e", &[]), "a??b?c?d?e");
        assert_eq!(sanitize("café ☕ 日本", &[]), "caf? ? ??");
        assert_eq!(sanitize("\u{FFFF}", &[]), "?");
        // Control characters cannot spell a secret that has `?` in it.
        assert_eq!(sanitize("<\u{1}b\u{2}c>", &["?b?c"]), "<[redacted]>");
        // A secret with non-ASCII is found before the `?`s go in.
        assert_eq!(sanitize("pässwörd", &["pässwörd"]), REDACTED);
    }

    #[test]
    fn matches_that_a_marker_completes() {
        // `ed]x` appears only once `abcd` has become `[redacted]`.
        let shown = sanitize("[redacteabcdx", &["abcd", "ed]x"]);
        assert!(!shown.contains("ed]x"), "{shown}");
        assert!(shown.chars().all(|c| (' '..='~').contains(&c)));
    }

    #[test]
    fn short_secrets_are_not_looked_for() {
        assert_eq!(sanitize("abc is short", &["abc", ""]), "abc is short");
    }

    #[test]
    fn base64_cores_cover_every_offset() {
        for n in MIN_SECRET..12 {
            let secret: String = "abcdefghijklmnop"[..n].into();
            for prefix in ["", "a", "ab", "abc"] {
                let encoded = STANDARD.encode(format!("{prefix}{secret}"));
                let cores = base64_cores(secret.as_bytes());
                assert!(cores.iter().any(|c| c.len() >= 4 && encoded.contains(c.as_str())));
            }
        }
    }
}
