//! Caller connections: HTTP/2 told from HTTP/1.1 by the first bytes, and HTTP/1.1
//! keep-alive. Between exchanges callout hands the socket
//! back from one hyper connection to the next; none of that may show: every request on a
//! connection is answered, in order, whether it arrives after a pause, pipelined behind
//! another, or split across the previous response.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::{Callout, basic_config};
use crate::support::{TokenServer, Upstream};

const STEP: Duration = Duration::from_secs(5);

fn get(path: &str) -> String {
    format!("GET /Api{path} HTTP/1.1\r\nHost: callout\r\nx-callout-permission-sets: Admin_Set\r\n\r\n")
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST /Api{path} HTTP/1.1\r\nHost: callout\r\nx-callout-permission-sets: Admin_Set\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one response with a `Content-Length` body: its status and body.
async fn response(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    let read = async {
        let mut status_line = String::new();
        reader.read_line(&mut status_line).await.unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line:?}");
        let status = status_line[9..12].parse().unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header line");
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.unwrap();
        (status, String::from_utf8(body).unwrap())
    };
    tokio::time::timeout(STEP, read)
        .await
        .expect("a response in time")
}

async fn setup() -> (TokenServer, Upstream, Callout) {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&basic_config(&token, &upstream, "")).await;
    (token, upstream, callout)
}

fn targets(upstream: &Upstream) -> Vec<String> {
    upstream.seen().into_iter().map(|s| s.target).collect()
}

#[tokio::test]
async fn one_connection_serves_requests_sent_after_pauses() {
    let (_token, upstream, callout) = setup().await;
    let mut conn = BufReader::new(TcpStream::connect(callout.addr).await.unwrap());
    for i in 0..4 {
        let request = if i % 2 == 0 {
            get(&format!("/pause/{i}"))
        } else {
            post(&format!("/pause/{i}"), "some body")
        };
        conn.get_mut().write_all(request.as_bytes()).await.unwrap();
        let (status, body) = response(&mut conn).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        targets(&upstream),
        ["/base/pause/0", "/base/pause/1", "/base/pause/2", "/base/pause/3"]
    );
    assert_eq!(upstream.seen()[1].body_len, 9);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_token, upstream, callout) = setup().await;
    let mut conn = BufReader::new(TcpStream::connect(callout.addr).await.unwrap());
    let batch = [get("/p/1"), post("/p/2", "two"), get("/p/3")].concat();
    conn.get_mut().write_all(batch.as_bytes()).await.unwrap();
    for i in 1..=3 {
        let (status, body) = response(&mut conn).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!("/p/{i}")),
            "response {i} out of order: {body}"
        );
    }
    assert_eq!(targets(&upstream), ["/base/p/1", "/base/p/2", "/base/p/3"]);
}

#[tokio::test]
async fn a_request_head_split_across_the_previous_response_is_not_lost() {
    let (_token, upstream, callout) = setup().await;
    let mut conn = BufReader::new(TcpStream::connect(callout.addr).await.unwrap());
    let second = get("/split/2");
    let (early, late) = second.split_at(20);
    conn.get_mut()
        .write_all((get("/split/1") + early).as_bytes())
        .await
        .unwrap();
    let (status, body) = response(&mut conn).await;
    assert_eq!(status, 200, "{body}");
    // The first response is out and the second head is incomplete: the connection sits
    // with part of a request buffered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.get_mut().write_all(late.as_bytes()).await.unwrap();
    let (status, body) = response(&mut conn).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/split/2"), "{body}");
    assert_eq!(targets(&upstream), ["/base/split/1", "/base/split/2"]);

    // A body that arrives after a pause belongs to its request, not to a new one.
    let upload = post("/split/3", "0123456789");
    let (head, rest) = upload.split_at(upload.len() - 4);
    conn.get_mut().write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.get_mut().write_all(rest.as_bytes()).await.unwrap();
    let (status, body) = response(&mut conn).await;
    assert_eq!(status, 200, "{body}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].body_len, 10);
}

#[tokio::test]
async fn an_error_answered_before_the_upload_ends_does_not_start_a_request_from_its_body() {
    let (_token, upstream, callout) = setup().await;
    let mut conn = BufReader::new(TcpStream::connect(callout.addr).await.unwrap());
    // No such named credential: callout answers 404 without reading the body, whose
    // second half, sent later, is itself shaped like a request.
    let smuggled = get("/smuggled");
    let head = format!(
        "POST /Nope/x HTTP/1.1\r\nHost: callout\r\nContent-Length: {}\r\n\r\n",
        2 * smuggled.len()
    );
    conn.get_mut()
        .write_all((head + &smuggled).as_bytes())
        .await
        .unwrap();
    let (status, _) = response(&mut conn).await;
    assert_eq!(status, 404);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Whether callout reads the rest of the body or closes, the next request it may serve
    // here is this one.
    let _ = conn
        .get_mut()
        .write_all((smuggled + &get("/after")).as_bytes())
        .await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("/smuggled"), "{rest}");
    assert!(
        !targets(&upstream).iter().any(|t| t.ends_with("/smuggled")),
        "{:?}",
        targets(&upstream)
    );
}

#[tokio::test]
async fn an_http2_preface_sent_in_pieces_is_still_http2() {
    let (_token, _upstream, callout) = setup().await;
    let mut conn = TcpStream::connect(callout.addr).await.unwrap();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    conn.write_all(&preface[..7]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.write_all(&preface[7..]).await.unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    conn.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut frame_head = [0; 9];
    tokio::time::timeout(STEP, conn.read_exact(&mut frame_head))
        .await
        .expect("an answer in time")
        .unwrap();
    assert_eq!(frame_head[3], 4, "not an HTTP/2 SETTINGS frame: {frame_head:?}");
}

#[tokio::test]
async fn a_caller_that_half_closes_after_its_request_still_gets_the_response() {
    let (_token, upstream, callout) = setup().await;
    upstream.set_delay(Duration::from_millis(100));
    let mut conn = TcpStream::connect(callout.addr).await.unwrap();
    conn.write_all(get("/half-closed").as_bytes()).await.unwrap();
    conn.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(STEP, conn.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("/half-closed"), "{answer}");
}
