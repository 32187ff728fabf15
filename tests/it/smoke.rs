use crate::harness::{Callout, basic_config};
use crate::support::{TokenServer, Upstream, http_get};

#[tokio::test]
async fn proxies_with_an_injected_token() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start_checking(token.registry()).await;
    let callout = Callout::start(&basic_config(&token, &upstream, "")).await;
    let (status, _, body) = http_get(
        &callout.url("/Api/things?x=1"),
        &[("x-callout-permission-sets", "Read_Set")],
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    let seen = upstream.last().unwrap();
    assert_eq!(seen.target, "/base/things?x=1");
    let issued = token.issued();
    assert_eq!(seen.headers["authorization"], format!("Bearer {}", issued[0]));
    assert_eq!(token.requests(), 1);
}
