//! `x-callout-permission-sets` → asserted sets → the lowest-sequence principal granted one
//! of them (SPEC "Request handling" 3).
//!
//! Input: the first byte picks how many header lines (1–3); the rest is split on `\n` into
//! those lines' values. Inputs with a value `HeaderValue` rejects are skipped (hyper would
//! have refused the request).

#![no_main]

use callout::config::{Principal, PrincipalKeys};
use callout::request::{PERMISSION_SETS_HEADER, PrincipalIndex, asserted_sets, header_sets};
use callout::secret::Secret;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn principal(name: &str, sequence: i64, sets: &[&str]) -> Principal {
    Principal {
        name: name.into(),
        sequence,
        permission_sets: sets.iter().map(|s| (*s).into()).collect(),
        scope: None,
        keys: PrincipalKeys::Client {
            client_id: "id".into(),
            client_secret: Secret::new("secret"),
        },
    }
}

/// Sorted by sequence (as config validation leaves them); sets overlap on purpose, and
/// short names make them easy for the fuzzer to hit.
fn principals() -> Vec<Principal> {
    let mut list = vec![
        principal("Admin", -3, &["Integration_Admin", "x"]),
        principal("Ops", 1, &["Support", "Ops", "a"]),
        principal("Reader", 5, &["Sales", "Support", "b", "a"]),
        principal("Spaced", 20, &["a b", "Sales"]),
        principal("Fallback", 100, &["Everyone", "c", "b"]),
        principal("Unused", 200, &[]),
    ];
    list.sort_by_key(|p| p.sequence);
    list
}

/// The reference model: split every line on ',', trim, drop empties.
fn model(lines: &[&[u8]]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for line in lines {
        let text = std::str::from_utf8(line).ok()?;
        // `HeaderValue::to_str` accepts only visible ASCII, space and tab.
        if !text.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return None;
        }
        out.extend(
            text.split(',')
                .map(|s| s.trim_matches([' ', '\t']))
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let count = 1 + usize::from(first % 3);
    let lines: Vec<&[u8]> = rest.splitn(count, |&b| b == b'\n').collect();

    let mut headers = HeaderMap::new();
    // Unrelated headers must not matter.
    headers.append("x-callout-other", HeaderValue::from_static("Integration_Admin"));
    for line in &lines {
        let Ok(value) = HeaderValue::from_bytes(line) else {
            return;
        };
        headers.append(PERMISSION_SETS_HEADER, value);
    }

    let defaults: Vec<Box<str>> = vec!["Everyone".into()];
    let from_header = header_sets(&headers);
    let asserted = asserted_sets(&headers, &defaults);
    let expected = model(&lines);

    let sets: Vec<&str> = match (&from_header, &asserted, &expected) {
        (Ok(Some(got)), Ok(asserted), Some(expected)) => {
            assert_eq!(got, expected, "lines {lines:?}");
            assert_eq!(asserted, got, "the header present: defaults must not stand in");
            for s in got {
                assert!(!s.is_empty() && !s.contains(','));
                assert_eq!(*s, s.trim_matches([' ', '\t']));
            }
            got.clone()
        }
        (Err(_), Err(_), None) => return,
        (Ok(None), ..) => panic!("header lines present but header_sets saw none: {lines:?}"),
        _ => panic!(
            "disagreement on {lines:?}: header_sets {from_header:?}, asserted_sets {asserted:?}, model {expected:?}"
        ),
    };

    let principals = principals();
    let index = PrincipalIndex::new(&principals);
    let chosen = index.choose(sets.iter().copied());
    let granted = |p: &Principal| p.permission_sets.iter().any(|s| sets.contains(&&**s));
    match chosen {
        Some(i) => {
            let winner = &principals[i];
            assert!(granted(winner), "{} holds none of {sets:?}", winner.name);
            for p in &principals {
                assert!(
                    p.sequence >= winner.sequence || !granted(p),
                    "{} (sequence {}) also holds one of {sets:?} and beats {} (sequence {})",
                    p.name,
                    p.sequence,
                    winner.name,
                    winner.sequence
                );
            }
        }
        None => {
            for p in &principals {
                assert!(
                    !granted(p),
                    "{} holds one of {sets:?} but nobody was chosen",
                    p.name
                );
            }
        }
    }

    // No header at all: the defaults stand in.
    let empty = HeaderMap::new();
    assert_eq!(header_sets(&empty).unwrap(), None);
    assert_eq!(asserted_sets(&empty, &defaults).unwrap(), vec!["Everyone"]);
});
