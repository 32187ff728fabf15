use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

use crate::sigv4::{
    Parts, PathRules, SignError, canonical_headers, canonical_query, canonical_request, canonical_uri,
    trim_all,
};

#[test]
fn trim_all_removes_outer_blanks_and_collapses_inner_runs() {
    assert_eq!(trim_all("  a   b \t c  "), "a b c");
    assert_eq!(trim_all("\"a   b   c\""), "\"a b c\"");
    assert_eq!(trim_all("value"), "value");
    assert_eq!(trim_all("   "), "");
    assert_eq!(trim_all(""), "");
}

#[test]
fn query_pairs_are_decoded_encoded_and_sorted() {
    let cases = [
        ("", ""),
        ("a=1", "a=1"),
        // Sorted by name, then by value; a repeated name keeps every value.
        ("b=2&a=3&a=1&a=", "a=&a=1&a=3&b=2"),
        // Upper case sorts before lower case (byte order).
        ("a=1&B=2&A=3", "A=3&B=2&a=1"),
        // A name without `=` has an empty value; empty pairs are dropped.
        ("flag&&a=1&", "a=1&flag="),
        ("=v", "=v"),
        // Space as %20, never `+`; `+` on the wire means a space, `%2B` a plus.
        ("q=a+b%20c", "q=a%20b%20c"),
        ("q=a%2Bb", "q=a%2Bb"),
        // Re-encoding: lower-case hex becomes upper case, encoded unreserved bytes plain.
        ("p=%2f%7E%41", "p=%2F~A"),
        // Reserved characters in a value are encoded; only the first `=` splits.
        ("a=b=c", "a=b%3Dc"),
        ("k=/?:@!$'()*,;", "k=%2F%3F%3A%40%21%24%27%28%29%2A%2C%3B"),
        // A `%` that starts no escape is a percent sign.
        ("p=100%&q=%zz&r=%4", "p=100%25&q=%25zz&r=%254"),
        // UTF-8, raw or encoded, comes out encoded; sorting is on the encoded name.
        ("ሴ=1&A=2", "%E1%88%B4=1&A=2"),
        ("%E1%88%B4=bar", "%E1%88%B4=bar"),
        ("-._~=-._~", "-._~=-._~"),
    ];
    for (query, want) in cases {
        assert_eq!(canonical_query(query), want, "query {query:?}");
    }
}

#[test]
fn paths_outside_s3_are_normalised_and_encoded_again() {
    let cases = [
        ("", "/"),
        ("/", "/"),
        ("//", "/"),
        ("//example//", "/example/"),
        ("/a//b", "/a/b"),
        ("/./a/.", "/a"),
        ("/a/b/../c", "/a/c"),
        ("/..", "/"),
        // What is on the wire is encoded once already: `%` is encoded again.
        ("/example%20space/", "/example%2520space/"),
        ("/%E1%88%B4", "/%25E1%2588%25B4"),
        ("/a:b@c!$&'()*+,;=", "/a%3Ab%40c%21%24%26%27%28%29%2A%2B%2C%3B%3D"),
        ("/-._~AZaz09", "/-._~AZaz09"),
    ];
    for (path, want) in cases {
        assert_eq!(canonical_uri(path, PathRules::Normalized), want, "path {path:?}");
    }
}

#[test]
fn s3_paths_are_used_as_sent() {
    for path in ["/bucket//key/../x/./y", "/example%20space/", "/a:b+c", "/"] {
        assert_eq!(canonical_uri(path, PathRules::S3), path);
    }
    assert_eq!(canonical_uri("", PathRules::S3), "/");
    assert_eq!(PathRules::for_service("s3"), PathRules::S3);
    assert_eq!(PathRules::for_service("s3-outposts"), PathRules::Normalized);
    assert_eq!(PathRules::for_service("execute-api"), PathRules::Normalized);
}

#[test]
fn headers_are_lower_cased_sorted_trimmed_and_joined() {
    let mut headers = HeaderMap::new();
    headers.append(
        HeaderName::from_bytes(b"X-Amz-Meta-B").unwrap(),
        HeaderValue::from_static("  two   words "),
    );
    headers.append("x-amz-meta-a", HeaderValue::from_static("first"));
    headers.append("x-amz-meta-a", HeaderValue::from_static(" second\t\tvalue"));
    let text = canonical_headers(
        &headers,
        &["x-amz-meta-b", "x-amz-meta-a", "host"],
        Some("h.example:8443"),
    )
    .unwrap();
    assert_eq!(
        text,
        "host:h.example:8443\nx-amz-meta-a:first,second value\nx-amz-meta-b:two words\n"
    );
}

#[test]
fn a_host_header_wins_over_the_authority() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("from.header"));
    let text = canonical_headers(&headers, &["host"], Some("from.uri")).unwrap();
    assert_eq!(text, "host:from.header\n");
}

#[test]
fn a_value_that_is_not_visible_ascii_is_refused_by_name() {
    let mut headers = HeaderMap::new();
    headers.insert("x-amz-meta-k", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
    let err = canonical_headers(&headers, &["x-amz-meta-k"], None).unwrap_err();
    assert!(
        matches!(&err, SignError::HeaderValue { name } if name == "x-amz-meta-k"),
        "{err:?}"
    );
    let err = canonical_headers(&headers, &["content-md5"], None).unwrap_err();
    assert!(
        matches!(&err, SignError::MissingHeader { name } if name == "content-md5"),
        "{err:?}"
    );
}

#[test]
fn the_canonical_request_has_its_lines_in_order() {
    let mut headers = HeaderMap::new();
    headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
    let parts = Parts {
        method: "GET",
        path: "/a b",
        query: "z=1&y",
        headers: &headers,
        host: Some("example.amazonaws.com"),
        signed: &["x-amz-date", "host", "host"],
        payload_hash: "UNSIGNED-PAYLOAD",
        rules: PathRules::Normalized,
    };
    assert_eq!(
        canonical_request(&parts).unwrap(),
        "GET\n/a%20b\ny=&z=1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\nUNSIGNED-PAYLOAD"
    );
}
