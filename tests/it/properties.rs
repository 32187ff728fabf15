//! Property tests of the pure request-handling pieces (SPEC "Request handling" 1–3):
//! generated request targets never reach outside the named credential's URL prefix, and
//! `x-callout-permission-sets` parsing and principal choice match simple reference models.
//!
//! The fuzz targets in fuzz/ explore the same invariants without bounds; these run in CI
//! with a fixed case budget (well under a second each).

use std::cell::Cell;

use callout::config::{Principal, PrincipalKeys, UpstreamUrl};
use callout::request::{
    PERMISSION_SETS_HEADER, PrincipalIndex, asserted_sets, header_sets, parse_target, upstream_uri,
};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

const CASES: u32 = 2000;

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// Runs `test` over `strategy`, panicking with the shrunk counterexample on failure.
fn check<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    if let Err(e) = runner().run(&strategy, test) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------
// RFC 3986 helpers

/// One round of percent-decoding; malformed escapes are kept as they are.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// RFC 3986 §5.2.4 `remove_dot_segments`, step by step as the RFC writes it.
fn remove_dot_segments(path: &[u8]) -> Vec<u8> {
    fn pop_last_segment(output: &mut Vec<u8>) {
        let cut = output.iter().rposition(|&b| b == b'/').unwrap_or(0);
        output.truncate(cut);
    }
    let mut input = path.to_vec();
    let mut output = Vec::new();
    while !input.is_empty() {
        if input.starts_with(b"../") {
            input.drain(..3); // A
        } else if input.starts_with(b"./") {
            input.drain(..2); // A
        } else if input.starts_with(b"/./") {
            input.drain(..2); // B: "/./" -> "/"
        } else if input == b"/." {
            input = b"/".to_vec(); // B
        } else if input.starts_with(b"/../") {
            input.drain(..3); // C: "/../" -> "/"
            pop_last_segment(&mut output);
        } else if input == b"/.." {
            input = b"/".to_vec(); // C
            pop_last_segment(&mut output);
        } else if input == b"." || input == b".." {
            input.clear(); // D
        } else {
            // E: the first segment, with its leading "/" if any, up to the next "/".
            let start = usize::from(input[0] == b'/');
            let end = input[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(input.len(), |i| i + start);
            output.extend(input.drain(..end));
        }
    }
    output
}

/// `path` is `base` itself or below it, segment-wise.
fn within(path: &[u8], base: &[u8]) -> bool {
    path == base || (path.starts_with(base) && path[base.len()..].starts_with(b"/"))
}

#[test]
fn remove_dot_segments_matches_rfc_3986_examples() {
    let cases: [(&str, &str); 10] = [
        ("/a/b/c/./../../g", "/a/g"),
        ("mid/content=5/../6", "mid/6"),
        ("/base/..", "/"),
        ("/base/../x", "/x"),
        ("/base/./x/.", "/base/x/"),
        ("/../../x", "/x"),
        ("/a//../b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("..", ""),
        ("/a/.../b", "/a/.../b"),
    ];
    for (input, expected) in cases {
        let got = remove_dot_segments(input.as_bytes());
        assert_eq!(String::from_utf8(got).unwrap(), expected, "{input}");
    }
    assert!(within(b"/base/x", b"/base"));
    assert!(within(b"/base", b"/base"));
    assert!(!within(b"/basement", b"/base"));
    assert!(!within(b"/", b"/base"));
}

// ---------------------------------------------------------------------------------------
// (a) No request target leaves the named credential's URL prefix.

fn upstream(base_path: &str) -> UpstreamUrl {
    UpstreamUrl {
        scheme: Scheme::HTTPS,
        authority: Authority::from_static("api.example.com"),
        base_path: base_path.to_owned(),
    }
}

/// One piece of a path segment; a segment is several of these run together, so that
/// `.%2e`, `%2E.` or `a%2f..` come up as often as the plain forms.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            ".", "..", "%2e", "%2E", "%2f", "%2F", "%5C", "%5c", "\\", "a", "%41", "", "~",
            "%25", "%252e", "%00", ";", "..;", "%3B", "%C0%AE", "%EF%BC%8E", "%E2%80%A5",
            "%c0%af", "é", "\u{FF0E}", "%", "%2", "%%2e", "?", "#",
        ])
        .prop_map(str::to_owned),
        2 => "[ -~]{0,6}",
        1 => any::<String>().prop_map(|s| s.chars().take(6).collect()),
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..4).prop_map(|pieces| pieces.concat())
}

/// A request target: `/NAME` + segments + an optional query, or (rarely) anything at all.
fn request_target() -> impl Strategy<Value = String> {
    let structured = (
        prop::sample::select(vec!["N", "Target_Org_API", "%2e%2e", "..", "."]),
        prop::collection::vec(segment(), 0..6),
        prop::option::of("[ -~]{0,12}"),
        any::<bool>(),
    )
        .prop_map(|(name, segments, query, trailing_slash)| {
            let mut target = format!("/{name}");
            for s in &segments {
                target.push('/');
                target.push_str(s);
            }
            if trailing_slash {
                target.push('/');
            }
            if let Some(q) = query {
                target.push('?');
                target.push_str(&q);
            }
            target
        });
    prop_oneof![
        9 => structured,
        1 => "/[ -~]{0,24}",
    ]
}

#[test]
fn no_request_target_leaves_the_url_prefix() {
    let accepted = Cell::new(0u32);
    let bases = prop::sample::select(vec!["", "/base", "/services/data/v60.0", "/a/b"]);
    check((bases, request_target()), |(base, target)| {
        // What hyper hands to routing: the target must parse, and routing sees its path and
        // query as `Uri` splits them.
        let Ok(pq) = target.parse::<PathAndQuery>() else {
            return Ok(());
        };
        let Ok(parsed) = parse_target(pq.path(), pq.query()) else {
            return Ok(());
        };
        accepted.set(accepted.get() + 1);
        let uri = upstream_uri(&upstream(base), &parsed);

        prop_assert_eq!(uri.scheme_str(), Some("https"));
        prop_assert_eq!(uri.authority().map(|a| a.as_str()), Some("api.example.com"));
        prop_assert_eq!(uri.query(), pq.query());
        let path = uri.path();
        if base.is_empty() {
            prop_assert!(path.starts_with('/'), "{} -> {}", target, uri);
        } else {
            prop_assert!(within(path.as_bytes(), base.as_bytes()), "{} -> {}", target, uri);
        }
        // Byte for byte: the base path, then the rest of the caller's path.
        prop_assert_eq!(
            &path[base.len()..],
            if parsed.rest.is_empty() && base.is_empty() {
                "/"
            } else {
                parsed.rest
            }
        );

        // However the upstream reads it: once percent-decoded, then dot segments resolved,
        // the path is still at or below the base path.
        let resolved = remove_dot_segments(&percent_decode(path));
        prop_assert!(
            within(&resolved, base.as_bytes()) || (base.is_empty() && resolved.starts_with(b"/")),
            "{} -> {} resolves to {:?}",
            target,
            uri,
            String::from_utf8_lossy(&resolved)
        );
        // And it names the same resource as the unresolved path: nothing was a dot segment.
        prop_assert_eq!(resolved, percent_decode(path), "{} -> {}", target, uri);
        // No segment hides a separator an upstream might split on after decoding
        // (`%2f`, `%5c`, or a raw backslash).
        for segment in path.split('/') {
            let decoded = percent_decode(segment);
            prop_assert!(
                !decoded.contains(&b'/') && !decoded.contains(&b'\\'),
                "{} -> {}: separator inside {:?}",
                target,
                uri,
                segment
            );
        }
        Ok(())
    });
    // The generator must reach the interesting side too, not only rejections.
    assert!(
        accepted.get() > CASES / 10,
        "only {} of {CASES} targets were accepted",
        accepted.get()
    );
}

#[test]
fn the_oracle_catches_escapes_that_slip_past_routing() {
    // Targets routing refuses, built by hand: the checks above must flag each of them, so
    // that a routing regression cannot pass them unnoticed.
    for rest in [
        "/..",
        "/../x",
        "/a/../../x",
        "/%2e%2e/x",
        "/.%2E/x",
        "/%2E",
        "/a/./b",
        "/a%2f..%2f..%2fx",
        "/%5c..",
    ] {
        let target = callout::request::Target {
            name: "N",
            rest,
            query: None,
        };
        let uri = upstream_uri(&upstream("/base"), &target);
        let decoded = percent_decode(uri.path());
        let resolved = remove_dot_segments(&decoded);
        let has_separator = uri.path().split('/').any(|segment| {
            let d = percent_decode(segment);
            d.contains(&b'/') || d.contains(&b'\\')
        });
        assert!(
            !within(&resolved, b"/base") || resolved != decoded || has_separator,
            "{rest} went unnoticed"
        );
    }
}

/// `text` percent-encoded `rounds` times (every byte the first time, then the `%`s).
fn encode(text: &str, rounds: usize) -> String {
    let mut out = text.to_owned();
    for round in 0..rounds {
        out = if round == 0 {
            out.bytes().map(|b| format!("%{b:02X}")).collect()
        } else {
            out.replace('%', "%25")
        };
    }
    out
}

#[test]
fn dot_segments_and_lookalikes_are_refused_however_often_encoded() {
    // Upstreams that decode more than once, or fold lookalikes into `.`, would read each of
    // these as a step up.
    let dots = prop::sample::select(vec![
        ".",
        "..",
        "\u{2024}",
        "\u{2024}\u{2024}",
        ".\u{ff0e}",
        "\u{3002}",
    ]);
    let separators = prop::sample::select(vec!["a/b", "\\"]);
    check(
        (dots, separators, 0..4usize, 0..4usize),
        |(dot, separator, n, m)| {
            let path = format!("/N/x/{}/y", encode(dot, n));
            prop_assert!(parse_target(&path, None).is_err(), "{} accepted", path);
            let path = format!("/N/x/{}/y", encode(separator, m + 1));
            prop_assert!(parse_target(&path, None).is_err(), "{} accepted", path);
            Ok(())
        },
    );
}

#[test]
fn harmless_paths_are_forwarded_byte_for_byte() {
    // Segments that only look suspicious: all must be accepted and kept as sent.
    let safe = prop::sample::select(vec![
        "a",
        "%41",
        "~",
        "",
        "a.b",
        "...",
        "..a",
        ".a",
        "a..",
        "%2e%2e%2e",
        "%252e%41",
        "%25",
        "%2",
        "%",
        "x%2ey",
        "-_",
        "%20",
    ]);
    let target = (
        prop::collection::vec(prop::collection::vec(safe, 1..3).prop_map(|p| p.concat()), 0..5),
        prop::option::of("[a-z0-9=&%./+-]{0,12}"),
    );
    check(target, |(segments, query)| {
        let rest: String = segments.iter().map(|s| format!("/{s}")).collect();
        let path = format!("/N{rest}");
        let parsed = parse_target(&path, query.as_deref());
        prop_assert!(parsed.is_ok(), "{} refused: {:?}", path, parsed);
        let uri = upstream_uri(&upstream("/base"), &parsed.unwrap());
        prop_assert_eq!(uri.path(), format!("/base{rest}"));
        prop_assert_eq!(uri.query(), query.as_deref());
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// (b) x-callout-permission-sets against a reference model, (c) principal choice.

/// The reference model: every line split on ',', trimmed, empties dropped; `None` when a
/// line is not text (anything but visible ASCII, space and tab).
fn model(lines: &[Vec<u8>]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for line in lines {
        if !line.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return None;
        }
        let text = std::str::from_utf8(line).ok()?;
        out.extend(
            text.split(',')
                .map(|s| s.trim_matches([' ', '\t']))
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    Some(out)
}

/// A header line: names (some with inner spaces) and separators with stray whitespace.
fn header_line() -> impl Strategy<Value = Vec<u8>> {
    let item = prop_oneof![
        prop::sample::select(vec!["Sales", "Support", "a b", "x", "", "Integration_Admin"])
            .prop_map(str::to_owned),
        "[A-Za-z0-9_ \t]{0,6}",
    ];
    let sep = prop::sample::select(vec![",", ", ", " ,", ",,", "\t,\t", " , , ", ","]);
    let structured = (
        "[ \t]{0,2}",
        prop::collection::vec((item, sep), 0..6),
        "[ \t]{0,2}",
    )
        .prop_map(|(lead, items, trail)| {
            let mut line = lead;
            for (item, sep) in items {
                line.push_str(&item);
                line.push_str(sep);
            }
            line.push_str(&trail);
            line.into_bytes()
        });
    prop_oneof![
        6 => structured,
        2 => "[ -~\t]{0,16}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ]
}

#[test]
fn header_sets_match_the_reference_model() {
    check(prop::collection::vec(header_line(), 1..4), |lines| {
        let mut headers = HeaderMap::new();
        headers.append("x-callout-other", HeaderValue::from_static("Sales"));
        for line in &lines {
            // What hyper would refuse never reaches callout.
            let Ok(value) = HeaderValue::from_bytes(line) else {
                return Ok(());
            };
            headers.append(PERMISSION_SETS_HEADER, value);
        }
        let defaults: Vec<Box<str>> = vec!["Everyone".into()];
        match (header_sets(&headers), model(&lines)) {
            (Ok(Some(got)), Some(expected)) => {
                prop_assert_eq!(&got, &expected);
                prop_assert_eq!(asserted_sets(&headers, &defaults).unwrap(), got);
            }
            (Err(_), None) => prop_assert!(asserted_sets(&headers, &defaults).is_err()),
            (got, expected) => {
                prop_assert!(false, "lines {:?}: got {:?}, model {:?}", lines, got, expected)
            }
        }
        Ok(())
    });
    // Without the header the defaults stand in, and they are not re-split.
    let defaults: Vec<Box<str>> = vec!["Everyone".into(), "a,b".into()];
    assert_eq!(header_sets(&HeaderMap::new()).unwrap(), None);
    assert_eq!(
        asserted_sets(&HeaderMap::new(), &defaults).unwrap(),
        vec!["Everyone", "a,b"]
    );
}

#[test]
fn the_lowest_sequence_granted_principal_wins() {
    const SETS: [&str; 5] = ["A", "B", "C", "D", "E"];
    let principal = (
        -5i64..50,
        prop::collection::vec(prop::sample::select(SETS.to_vec()), 0..3),
    );
    let input = (
        prop::collection::vec(principal, 0..6),
        prop::collection::vec(
            prop::sample::select(vec!["A", "B", "C", "D", "E", "F", "a"]),
            0..4,
        ),
    );
    check(input, |(raw, asserted)| {
        let mut principals: Vec<Principal> = Vec::new();
        for (sequence, sets) in raw {
            // Config validation rejects duplicate sequences.
            if principals.iter().any(|p| p.sequence == sequence) {
                continue;
            }
            principals.push(Principal {
                name: format!("P{sequence}").into(),
                sequence,
                permission_sets: sets.into_iter().map(Into::into).collect(),
                scope: None,
                keys: PrincipalKeys::None,
            });
        }
        principals.sort_by_key(|p| p.sequence);
        let chosen = PrincipalIndex::new(&principals)
            .choose(asserted.iter().copied())
            .map(|i| principals[i].sequence);
        let expected = principals
            .iter()
            .filter(|p| p.permission_sets.iter().any(|s| asserted.contains(&&**s)))
            .map(|p| p.sequence)
            .min();
        prop_assert_eq!(chosen, expected);
        Ok(())
    });
}
