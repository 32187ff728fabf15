//! Limits and hostile peers: oversized heads, too many connections, redirects.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Callout, basic_config};
use crate::support::{TokenServer, Upstream, http_get, raw_request};

fn request_with(headers: &str) -> Vec<u8> {
    format!("GET /Api/x HTTP/1.1\r\nHost: callout\r\nx-callout-permission-sets: Admin_Set\r\n{headers}Connection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn oversized_or_overcrowded_request_heads_are_refused() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&basic_config(&token, &upstream, "")).await;

    let big = format!("X-Big: {}\r\n", "a".repeat(70 * 1024));
    let answer = raw_request(callout.addr, &request_with(&big)).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );

    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw_request(callout.addr, &request_with(&many)).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );

    assert_eq!(upstream.requests(), 0);
    assert_eq!(token.requests(), 0);
    let answer = raw_request(callout.addr, &request_with("X-Fine: yes\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Sends one keep-alive request on a new connection and reads its whole response.
async fn open_and_use(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /.callout/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    stream
}

#[tokio::test]
async fn connections_past_the_limit_wait_for_a_free_one() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let config = basic_config(&token, &upstream, "").replace("[server]", "[server]\nmax_connections = 2");
    let callout = Callout::start(&config).await;

    let first = open_and_use(callout.addr).await;
    let _second = open_and_use(callout.addr).await;
    // The third connection is accepted by the kernel but not served while two are open.
    let mut third = TcpStream::connect(callout.addr).await.unwrap();
    third
        .write_all(b"GET /.callout/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "served past max_connections");
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test]
async fn redirects_are_passed_back_never_followed() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    // The fixture redirects from its root `/redirect`: route there without the base path.
    let config =
        basic_config(&token, &upstream, "").replace(&format!("{}/base", upstream.url()), &upstream.url());
    let callout = Callout::start(&config).await;
    let (status, headers, _) = http_get(
        &callout.url("/Api/redirect"),
        &[("x-callout-permission-sets", "Admin_Set")],
    )
    .await;
    assert_eq!(status, 302);
    assert_eq!(headers["location"], "http://elsewhere.example/");
    assert_eq!(upstream.requests(), 1, "callout did not follow the redirect");
    assert!(headers.get("x-callout-error").is_none());
}

#[tokio::test]
async fn a_client_trickling_its_request_head_is_cut_off() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let config = basic_config(&token, &upstream, "").replace(
        "[server]",
        "[server]\nheader_read_timeout = \"300ms\"\nidle_timeout = \"300ms\"",
    );
    let callout = Callout::start(&config).await;

    let mut slow = TcpStream::connect(callout.addr).await.unwrap();
    slow.write_all(b"GET /Api/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The head never completes: callout closes the connection (with a 408 or nothing)
    // instead of holding it forever.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a half-sent request head kept the connection open"
    );
    let answer = String::from_utf8_lossy(&rest);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert_eq!(upstream.requests(), 0);

    // An idle keep-alive connection is closed after idle_timeout.
    let mut idle = open_and_use(callout.addr).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "an idle keep-alive connection was kept past idle_timeout"
    );
}
