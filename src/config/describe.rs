//! What `callout check` prints: the resolved map, never a secret.

use super::{Config, Protocol};

/// The resolved map `callout check` prints: named credential → upstream → external
/// credential → principals by sequence with their permission sets. Never a secret.
pub fn describe(config: &Config) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut named: Vec<_> = config.named_credentials.values().collect();
    named.sort_by(|a, b| a.name.cmp(&b.name));
    let _ = writeln!(
        out,
        "{}: valid, listening on {}",
        config.path.display(),
        config.server.listen
    );
    for nc in named {
        let ec = &nc.external_credential;
        let _ = writeln!(out, "{} -> {}", nc.name, nc.url);
        match &ec.protocol {
            Protocol::OAuth2(settings) => writeln!(
                out,
                "  external credential {} ({}, token_url {})",
                ec.name,
                settings.flow.as_str(),
                settings.token_url
            ),
            other => writeln!(out, "  external credential {} ({})", ec.name, other.describe()),
        }
        .expect("writing to a String cannot fail");
        for p in &ec.principals {
            let sets: Vec<&str> = p.permission_sets.iter().map(|s| &**s).collect();
            let scope = ec
                .effective_scope(p)
                .map(|s| format!(", scope \"{s}\""))
                .unwrap_or_default();
            let _ = writeln!(out, "    {}. {} [{}]{scope}", p.sequence, p.name, sets.join(", "));
        }
    }
    out
}
