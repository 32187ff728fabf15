//! The `callout` command: serve, check a config, or fetch a token by hand.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};

use callout::config::Listen;
use callout::listen::Listener;
use callout::request::{Probes, ProxyError};
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
    /// SIGHUP, or a change to the config or a file it reads (`server.watch_files`), re-reads
    /// the config and secrets (a bad config is logged and the old one keeps serving); SIGTERM
    /// or SIGINT stop accepting and let in-flight requests finish within
    /// `server.shutdown_grace`. Exit status: 0 after a clean shutdown, 1 if the config is
    /// invalid or an address cannot be bound.
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
        /// Check structure and references without reading env or file secrets (for CI
        /// that has none).
        #[arg(long)]
        no_secrets: bool,
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
        /// For token exchange: the environment variable holding the token to exchange
        /// (a variable rather than an argument, which other users could read in `ps`).
        #[arg(long, value_name = "VAR")]
        subject_token_env: Option<String>,
    },
    /// Probe a running callout: exit 0 when `/.callout/ready` answers 200, else 1.
    ///
    /// With a config, asks `server.admin_listen` when it is set, else the `listen` address
    /// or Unix socket; secrets are not read. Meant as an exec probe where there is no shell
    /// or curl. Gives up after 2 s. The reason for a failure goes to stderr.
    Health {
        /// Path of the TOML config file of the callout to probe.
        #[arg(long = "config", short = 'c', env = "CALLOUT_CONFIG", value_name = "PATH")]
        config: Option<PathBuf>,
        /// Probe this base URL instead of the config's addresses, e.g. http://127.0.0.1:7575.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
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
        Command::Check { config, no_secrets } => check(&config.path, !no_secrets),
        Command::Token {
            named_credential,
            permission_sets,
            config,
            reveal,
            subject_token_env,
        } => {
            init_logging(LogFormat::Text);
            let subject = match subject_token_env.map(|var| (std::env::var(&var), var)) {
                None => None,
                Some((Ok(token), _)) => match http::HeaderValue::from_str(&token) {
                    Ok(value) => Some(value),
                    Err(_) => {
                        eprintln!("error: the subject token is not a valid header value");
                        return ExitCode::FAILURE;
                    }
                },
                Some((Err(_), var)) => {
                    eprintln!("error: environment variable `{var}` is not set");
                    return ExitCode::FAILURE;
                }
            };
            let lookup = (named_credential.as_str(), permission_sets, subject);
            runtime(Some(1)).block_on(token(&config.path, lookup, reveal))
        }
        Command::Health { config, url } => runtime(Some(1)).block_on(health(config, url)),
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

/// Reads the config at `path`, reading its secrets only when asked to.
fn read(path: &Path, read_secrets: bool) -> Result<Config, String> {
    Config::load_with(path, read_secrets).map_err(|e| e.to_string())
}

/// A config fit to serve, with its warnings; the same rules at start, in `check` and on
/// every reload.
fn vetted(path: &Path, read_secrets: bool) -> Result<(Config, Vec<String>), String> {
    let config = read(path, read_secrets)?;
    let refused = config.permission_errors();
    if !refused.is_empty() {
        return Err(format!(
            "{} names secret files that other users can reach, and [server] strict_file_permissions is set:\n  {}",
            path.display(),
            refused.join("\n  ")
        ));
    }
    let warnings = config.warnings();
    Ok((config, warnings))
}

fn load(path: &Path, read_secrets: bool) -> Option<Config> {
    match vetted(path, read_secrets) {
        Ok((config, warnings)) => {
            for warning in warnings {
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
    let Some(config) = load(path, true) else {
        return ExitCode::FAILURE;
    };
    let listen = config.server.listen.clone();
    let admin_listen = config.server.admin_listen;
    let watch_files = config.server.watch_files;
    let proxy = match Proxy::new(config) {
        Ok(proxy) => proxy,
        Err(err) => {
            eprintln!("error: cannot set up TLS: {err}");
            return ExitCode::FAILURE;
        }
    };
    // admin_listen first, so that failing to bind it leaves no Unix socket behind.
    let admin = match admin_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(err) => {
                eprintln!("error: cannot listen on admin_listen {addr}: {err}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let bound = match &listen {
        Listen::Tcp(addr) => tokio::net::TcpListener::bind(addr).await.map(Listener::from),
        Listen::Unix { path, mode } => callout::listen::bind_unix(path, *mode).map(Listener::from),
    };
    let listener = match bound {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(listen = %listen, admin_listen = ?admin_listen, config = %path.display(), "callout is serving");
    tokio::spawn(reload_on_sighup(path.to_owned(), proxy.clone()));
    if watch_files {
        tokio::spawn(reload_on_change(path.to_owned(), proxy.clone()));
    }
    let stop = shutdown_signal();
    let admin = admin.map(|listener| {
        let probes = Arc::new(Probes(proxy.clone()));
        tokio::spawn(callout::listen::run(listener, probes, stopped(stop.clone())))
    });
    callout::run(listener, proxy, stopped(stop)).await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    if let Listen::Unix { path, .. } = &listen {
        let _ = std::fs::remove_file(path);
    }
    ExitCode::SUCCESS
}

/// Re-reads the config and swaps it in, or logs why not; for SIGHUP and watched files alike.
fn reload(path: &Path, proxy: &Proxy) {
    let config = match vetted(path, true) {
        Ok((config, warnings)) => {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            config
        }
        Err(err) => {
            tracing::error!("reload refused, the current config keeps serving: {err}");
            return;
        }
    };
    // The listeners, their limits and the watcher are set up once, at start.
    let old = &proxy.routes().config.server;
    let new = &config.server;
    if new.listen != old.listen
        || new.admin_listen != old.admin_listen
        || new.max_connections != old.max_connections
        || new.header_read_timeout != old.header_read_timeout
        || new.watch_files != old.watch_files
    {
        tracing::warn!(
            "server.listen, admin_listen, max_connections, header_read_timeout and watch_files take effect at the next start"
        );
    }
    match proxy.install(config) {
        Ok(()) => tracing::info!(config = %path.display(), "config reloaded"),
        Err(err) => {
            tracing::error!("reload refused, the current config keeps serving: cannot set up TLS: {err}")
        }
    }
}

async fn reload_on_sighup(path: PathBuf, proxy: Arc<Proxy>) {
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload is unavailable");
        return;
    };
    while hangups.recv().await.is_some() {
        reload(&path, &proxy);
    }
}

async fn reload_on_change(path: PathBuf, proxy: Arc<Proxy>) {
    // The files of the config now serving: a refused one may name files that do not exist.
    let files = || {
        let mut files = proxy.routes().config.files.clone();
        files.push(path.clone());
        files
    };
    let Err(err) = callout::watch::watch(files, || reload(&path, &proxy)).await;
    tracing::warn!(error = %err, "cannot watch the config's files; reload with SIGHUP");
}

/// Becomes `true` on SIGTERM or SIGINT, for every listener to stop on. The handlers are
/// installed here, before anything is served, so that an early signal is not lost.
fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM can be handled");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT can be handled");
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = which, "shutting down");
        tx.send_replace(true);
    });
    rx
}

async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn check(path: &Path, read_secrets: bool) -> ExitCode {
    let Some(config) = load(path, read_secrets) else {
        return ExitCode::FAILURE;
    };
    print!("{}", callout::config::describe(&config));
    ExitCode::SUCCESS
}

/// What `callout token` looks up: a named credential, the permission sets asserted, and
/// the subject token for token exchange.
type Lookup<'a> = (&'a str, Option<Vec<String>>, Option<http::HeaderValue>);

async fn token(path: &Path, (named, sets, subject): Lookup<'_>, reveal: bool) -> ExitCode {
    let Some(config) = load(path, true) else {
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
    match proxy.lookup_token(named, &asserted, subject.as_ref()).await {
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
            if let ProxyError::NoPrincipal { .. } = err {
                eprintln!("{}", sets_that_work(&proxy.routes().config, named));
            }
            ExitCode::FAILURE
        }
    }
}

/// The permission sets that select a principal of `named`, each with the principal it
/// selects when asserted alone: the lowest-sequence one that holds it.
fn sets_that_work(config: &Config, named: &str) -> String {
    let Some(nc) = config.named_credentials.get(named) else {
        return String::new();
    };
    let mut options: Vec<(&str, &str)> = Vec::new();
    // Principals are sorted by sequence, so a set's first holder is the one it selects.
    for principal in &nc.external_credential.principals {
        for set in &principal.permission_sets {
            if !options.iter().any(|(seen, _)| seen == &&**set) {
                options.push((set, &principal.name));
            }
        }
    }
    if options.is_empty() {
        return format!(
            "no principal of `{}` has a permission set",
            nc.external_credential.name
        );
    }
    let options: Vec<String> = options
        .iter()
        .map(|(set, p)| format!("{set} (principal {p})"))
        .collect();
    format!("try --permission-sets {}", options.join(" or "))
}

async fn health(config: Option<PathBuf>, url: Option<String>) -> ExitCode {
    let Err(why) = callout::probe::probe(config.as_deref(), url.as_deref()).await else {
        return ExitCode::SUCCESS;
    };
    // One line, for probe logs that keep only the first.
    eprintln!("unhealthy: {}", why.replace("\n  ", "; "));
    ExitCode::FAILURE
}
