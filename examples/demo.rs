//! The quick-start demo: a local token endpoint and a local echo API, with callout in front
//! of them, serving `config/demo.toml`.
//!
//! `cargo run --example demo` makes one proxied request to show the injected token, then
//! keeps serving on 127.0.0.1:7575 until Ctrl-C so you can try it with curl.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // callout's own log lines (one per request) go to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let issued = Arc::new(AtomicU64::new(0));
    serve("127.0.0.1:7580", move |req| token_endpoint(req, issued.clone())).await?;
    serve("127.0.0.1:7581", echo_api).await?;

    let config = callout::Config::load(CONFIG.as_ref())?;
    let callout::config::Listen::Tcp(listen) = config.server.listen else {
        return Err("config/demo.toml must listen on TCP".into());
    };
    let proxy = callout::Proxy::new(config)?;
    let listener = TcpListener::bind(listen).await?;
    tokio::spawn(callout::run(listener, proxy, async {
        let _ = tokio::signal::ctrl_c().await;
    }));

    println!("token endpoint  http://127.0.0.1:7580/oauth2/token");
    println!("echo API        http://127.0.0.1:7581/api/v1/...");
    println!("callout         http://{listen}  (config/demo.toml)\n");
    let url = format!("http://{listen}/Demo_API/hello?who=world");
    println!("$ curl -H 'x-callout-permission-sets: Demo_Users' {url}");
    let client =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::get(&url)
        .header("x-callout-permission-sets", "Demo_Users")
        .body(Full::default())?;
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("HTTP {status}\n{}\n", String::from_utf8_lossy(&body));
    println!("The echo API saw the bearer token callout injected. Try the Demo_Admins set, or no");
    println!("header at all (403 no_principal), or /.callout/credentials. Ctrl-C stops.");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Serves `handler` on `addr` in the background.
async fn serve<F, Fut>(addr: &str, handler: F) -> std::io::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            let service = service_fn(move |req| {
                let response = handler(req);
                async move { Ok::<_, Infallible>(response.await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(())
}

/// A client credentials token endpoint that trusts everyone: tokens live 60 seconds.
async fn token_endpoint(req: Request<Incoming>, issued: Arc<AtomicU64>) -> Response<Full<Bytes>> {
    let form = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let scope = form_urlencoded::parse(&form)
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let n = issued.fetch_add(1, Ordering::Relaxed) + 1;
    json(serde_json::json!({
        "access_token": format!("demo-token-{n}"),
        "token_type": "Bearer",
        "expires_in": 60,
        "scope": scope,
    }))
}

/// Answers with what it received, so the injected token can be seen.
async fn echo_api(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    json(serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()),
        "authorization": header("authorization"),
        "x-request-source": header("x-request-source"),
    }))
}

fn json(value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(
        serde_json::to_string_pretty(&value).unwrap_or_default(),
    )));
    response
        .headers_mut()
        .insert("content-type", http::HeaderValue::from_static("application/json"));
    response
}
