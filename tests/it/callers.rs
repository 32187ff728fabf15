//! Caller authentication: caller tokens, Unix socket peers, and grants that never widen.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::harness::{Callout, write_config};
use crate::support::{TokenServer, Upstream, http_get};

const ORDERS_TOKEN: &str = "orders-caller-token-6f1d2c";
const BATCH_TOKEN: &str = "batch-caller-token-93ab07e";

fn config(token: &TokenServer, upstream: &Upstream, extra_server: &str, batch_uid: Option<u32>) -> String {
    let uid = batch_uid.map(|u| format!("uid = {u}")).unwrap_or_default();
    format!(
        r#"
[server]
{extra_server}

[callers.Orders_App]
token = "{ORDERS_TOKEN}"
permission_sets = ["Orders"]

[callers.Batch_Job]
token = "{BATCH_TOKEN}"
permission_sets = ["Batch", "Orders"]
{uid}

[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{}"

[[external_credentials.Idp.principals]]
name = "Admin"
sequence = 1
permission_sets = ["Admin"]
client_id = "admin-client"
client_secret = "admin-secret"

[[external_credentials.Idp.principals]]
name = "Batch"
sequence = 5
permission_sets = ["Batch"]
client_id = "batch-client"
client_secret = "batch-secret"

[[external_credentials.Idp.principals]]
name = "Orders"
sequence = 10
permission_sets = ["Orders"]
client_id = "orders-client"
client_secret = "orders-secret"

[named_credentials.Api]
url = "{}"
external_credential = "Idp"
"#,
        token.url(),
        upstream.url()
    )
}

/// The client id of the principal the last token request was for.
fn last_client(token: &TokenServer) -> Option<String> {
    token
        .last_request()
        .and_then(|r| r.basic_auth())
        .map(|(id, _)| id)
}

#[tokio::test]
async fn every_request_needs_a_known_caller() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&config(&token, &upstream, "", None)).await;
    let url = callout.url("/Api/x");
    for headers in [
        vec![],
        vec![("proxy-authorization", "Bearer not-a-known-caller-token")],
        vec![("proxy-authorization", "Basic b3JkZXJz")],
        vec![("authorization", &*format!("Bearer {ORDERS_TOKEN}"))],
    ] {
        let (status, response_headers, body) = http_get(&url, &headers).await;
        assert_eq!(status, 401, "{headers:?}: {body:?}");
        assert_eq!(response_headers["x-callout-error"], "caller_unauthorized");
        assert!(!String::from_utf8_lossy(&body).contains(ORDERS_TOKEN));
    }
    assert_eq!(upstream.requests(), 0);
    assert_eq!(token.requests(), 0);

    let bearer = format!("Bearer {ORDERS_TOKEN}");
    let (status, _, _) = http_get(&url, &[("proxy-authorization", &bearer)]).await;
    assert_eq!(status, 200);
    let seen = upstream.last().unwrap();
    assert!(
        seen.headers.get("proxy-authorization").is_none(),
        "the caller token stays with callout"
    );
    assert_eq!(last_client(&token).as_deref(), Some("orders-client"));
}

#[tokio::test]
async fn asserting_outside_the_grant_never_widens_access() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&config(&token, &upstream, "", None)).await;
    let url = callout.url("/Api/x");
    let orders = format!("Bearer {ORDERS_TOKEN}");
    let batch = format!("Bearer {BATCH_TOKEN}");

    // Orders_App asserts Admin (not granted): nothing is left, so no principal.
    let (status, headers, _) = http_get(
        &url,
        &[
            ("proxy-authorization", &orders),
            ("x-callout-permission-sets", "Admin"),
        ],
    )
    .await;
    assert_eq!(
        (status.as_u16(), &headers["x-callout-error"]),
        (403, &"no_principal".parse().unwrap())
    );
    // Asserting Admin next to a granted set gets only the granted one.
    let (status, _, _) = http_get(
        &url,
        &[
            ("proxy-authorization", &orders),
            ("x-callout-permission-sets", "Admin, Orders"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(last_client(&token).as_deref(), Some("orders-client"));
    assert_eq!(token.requests(), 1);

    // Batch_Job asserting nothing gets its whole grant: Batch (sequence 5) beats Orders (10).
    let (status, _, _) = http_get(&url, &[("proxy-authorization", &batch)]).await;
    assert_eq!(status, 200);
    assert_eq!(last_client(&token).as_deref(), Some("batch-client"));
    // ...and can narrow itself to Orders.
    let (status, _, _) = http_get(
        &url,
        &[
            ("proxy-authorization", &batch),
            ("x-callout-permission-sets", "Orders"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let seen = upstream.last().unwrap();
    let issued = token.issued();
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {}", issued[0]),
        "the Orders principal's token"
    );
}

#[tokio::test]
async fn a_unix_socket_maps_the_peer_uid_to_a_caller() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let my_uid = std::fs::metadata(dir.path()).unwrap().uid();
    let socket = dir.path().join("callout.sock");
    let listen = format!("listen = \"unix:{}\"", socket.display());
    let config = write_config(&dir, &config(&token, &upstream, &listen, Some(my_uid)));
    let proxy = callout::Proxy::new(config).unwrap();
    let listener = callout::listen::bind_unix(&socket, 0o600).unwrap();
    let server = tokio::spawn(callout::run(listener, proxy, std::future::pending()));

    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the owner may connect");

    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/Api/over-unix")
        .header("host", "localhost")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(upstream.last().unwrap().target, "/over-unix");
    assert_eq!(
        last_client(&token).as_deref(),
        Some("batch-client"),
        "uid {my_uid} is Batch_Job"
    );
    server.abort();
}

#[tokio::test]
async fn a_remote_listen_address_is_accepted_once_callers_are_configured() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(&token, &upstream, "listen = \"0.0.0.0:7575\"", None);
    let config = write_config(&dir, &text);
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:7575");
    let without_callers = text.replace("[callers.", "[ignored.");
    std::fs::write(dir.path().join("c.toml"), without_callers).unwrap();
    let err = callout::Config::load(&dir.path().join("c.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a loopback address"), "{err}");
}
