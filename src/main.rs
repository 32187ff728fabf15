//! The `callout` command: serve, check a config, or fetch a token by hand.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};

use callout::config::Listen;
use callout::listen::Listener;
use callout::{Config, Proxy};

/// A credential-injecting HTTP reverse proxy.
///
/// Applications call `http://127.0.0.1:PORT/NAMED_CREDENTIAL/path`; callout picks the
/// principal for the permission sets they assert in `x-callout-permission-sets`, gets an
/// OAuth 2.0 token for it, and forwards the request with `Authorization: Bearer <token>`.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    ///
    /// SIGHUP re-reads the config and secrets (a bad config is logged and the old one keeps
    /// serving); SIGTERM or SIGINT stop accepting and let in-flight requests finish within
    /// `server.shutdown_grace`. Exit status: 0 after a clean shutdown, 1 if the config is
    /// invalid or the listen address cannot be bound.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Log line format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Worker threads. Default: one per CPU this process may run on; with a single CPU
        /// (a sidecar's usual limit) callout runs everything on one thread, which costs
        /// less per request than a multi-threaded scheduler.
        #[arg(long, env = "CALLOUT_WORKERS", value_name = "N")]
        workers: Option<usize>,
    },
    /// Validate a config and print what it resolves to.
    ///
    /// Prints each named credential with its upstream, external credential and principals
    /// by sequence. Every problem is reported at once with its line and column. Exit
    /// status: 0 if the config is valid, 1 if not.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Resolve a principal and fetch its token like a request would.
    ///
    /// Prints the principal, scope and expiry; the token itself only with `--reveal`.
    /// Exit status: 0 with a token, 1 if none could be had.
    Token {
        /// The named credential, as in the first path segment of a request.
        named_credential: String,
        /// Permission sets to assert, comma-separated (default: `server.default_permission_sets`).
        #[arg(long, value_delimiter = ',')]
        permission_sets: Option<Vec<String>>,
        #[command(flatten)]
        config: ConfigArg,
        /// Print the access token itself on the last line (for scripts).
        #[arg(long)]
        reveal: bool,
    },
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Path of the TOML config file.
    #[arg(long = "config", short = 'c', env = "CALLOUT_CONFIG", value_name = "PATH")]
    path: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            log_format,
            workers,
        } => {
            init_logging(log_format);
            runtime(workers).block_on(serve(&config.path))
        }
        Command::Check { config } => check(&config.path),
        Command::Token {
            named_credential,
            permission_sets,
            config,
            reveal,
        } => {
            init_logging(LogFormat::Text);
            runtime(Some(1)).block_on(token(&config.path, &named_credential, permission_sets, reveal))
        }
    }
}

fn runtime(workers: Option<usize>) -> tokio::runtime::Runtime {
    let workers = workers
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.enable_all().build().expect("the tokio runtime starts")
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    // Colours only for a person at a terminal, never in files or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn load(path: &Path) -> Option<Config> {
    match Config::load(path) {
        Ok(config) => {
            for warning in config.warnings() {
                eprintln!("warning: {warning}");
            }
            Some(config)
        }
        Err(err) => {
            eprintln!("error: {err}");
            None
        }
    }
}

async fn serve(path: &Path) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::FAILURE;
    };
    let listen = config.server.listen.clone();
    let proxy = match Proxy::new(config) {
        Ok(proxy) => proxy,
        Err(err) => {
            eprintln!("error: cannot set up TLS: {err}");
            return ExitCode::FAILURE;
        }
    };
    let listener: Listener = match &listen {
        Listen::Tcp(addr) => tokio::net::TcpListener::bind(addr).await.map(Listener::from),
        Listen::Unix { path, mode } => callout::listen::bind_unix(path, *mode).map(Listener::from),
    }
    .unwrap_or_else(|err| {
        eprintln!("error: cannot listen on {listen}: {err}");
        std::process::exit(1);
    });
    tracing::info!(listen = %listen, config = %path.display(), "callout is serving");
    tokio::spawn(reload_on_sighup(path.to_owned(), proxy.clone()));
    callout::run(listener, proxy, shutdown_signal()).await;
    if let Listen::Unix { path, .. } = &listen {
        let _ = std::fs::remove_file(path);
    }
    ExitCode::SUCCESS
}

async fn reload_on_sighup(path: PathBuf, proxy: Arc<Proxy>) {
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload is unavailable");
        return;
    };
    while hangups.recv().await.is_some() {
        let config = match Config::load(&path) {
            Ok(config) => {
                for warning in config.warnings() {
                    tracing::warn!("{warning}");
                }
                config
            }
            Err(err) => {
                tracing::error!("reload refused, the current config keeps serving: {err}");
                continue;
            }
        };
        // The listener and its limits are set up once, at start.
        let old = &proxy.routes().config.server;
        if config.server.listen != old.listen
            || config.server.max_connections != old.max_connections
            || config.server.header_read_timeout != old.header_read_timeout
        {
            tracing::warn!(
                "server.listen, max_connections and header_read_timeout take effect at the next start"
            );
        }
        match proxy.install(config) {
            Ok(()) => tracing::info!(config = %path.display(), "config reloaded"),
            Err(err) => {
                tracing::error!("reload refused, the current config keeps serving: cannot set up TLS: {err}")
            }
        }
    }
}

async fn shutdown_signal() {
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM can be handled");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT can be handled");
    let which = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!(signal = which, "shutting down");
}

fn check(path: &Path) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::FAILURE;
    };
    print!("{}", callout::config::describe(&config));
    ExitCode::SUCCESS
}

async fn token(path: &Path, named: &str, sets: Option<Vec<String>>, reveal: bool) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::FAILURE;
    };
    let sets: Vec<String> = sets.unwrap_or_else(|| {
        config
            .server
            .default_permission_sets
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let proxy = match Proxy::new(config) {
        Ok(proxy) => proxy,
        Err(err) => {
            eprintln!("error: cannot set up TLS: {err}");
            return ExitCode::FAILURE;
        }
    };
    let asserted: Vec<&str> = sets.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    match proxy.lookup_token(named, &asserted).await {
        Ok(found) => {
            let now = tokio::time::Instant::now();
            println!("named credential: {named}");
            println!("principal: {}", found.principal);
            println!("scope: {}", found.scope.as_deref().unwrap_or("(none)"));
            let Some(token) = found.token else {
                println!("token: none (this protocol uses no tokens)");
                return ExitCode::SUCCESS;
            };
            match token.expires_in(now) {
                Some(left) => println!("expires in: {}s", left.as_secs()),
                None => println!("expires in: (not given; used until the upstream rejects it)"),
            }
            if reveal {
                println!("{}", token.access_token().expose());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            let (code, _) = err.code();
            eprintln!("error: {code}: {err}");
            ExitCode::FAILURE
        }
    }
}
