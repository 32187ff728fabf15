//! What `callout check` prints: the resolved map, never a secret or key material.

use super::{Config, OAuth2, OAuthClient, PrincipalKeys, Protocol};
use crate::config::Flow;

/// The resolved map `callout check` prints: named credential → upstream → external
/// credential → principals by sequence with their permission sets and, for OAuth, how
/// each authenticates (flow, client authentication, key type and algorithm).
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
        let mtls = nc
            .client_identity
            .as_ref()
            .map(|i| format!(" (mutual TLS, {})", i.describe()))
            .unwrap_or_default();
        let _ = writeln!(out, "{} -> {}{mtls}", nc.name, nc.url);
        for (name, _) in &nc.headers {
            let _ = writeln!(out, "  header {name}");
        }
        for t in &nc.header_templates {
            let shown = if t.secret {
                "[formula with a secret, redacted]"
            } else {
                "[formula]"
            };
            let _ = writeln!(out, "  header {}: {shown}", t.name);
        }
        match &ec.protocol {
            Protocol::OAuth2(settings) => {
                let provider = settings
                    .auth_provider
                    .as_ref()
                    .map(|p| format!(", auth provider {p}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "  external credential {} ({}, token_url {}{provider})",
                    ec.name,
                    settings.flow.as_str(),
                    settings.token_url()
                )
            }
            Protocol::AwsSigV4(aws) => writeln!(
                out,
                "  external credential {} (aws_sigv4, region {}, service {})",
                ec.name, aws.region, aws.service
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
            let auth = match (&ec.protocol, &p.keys) {
                (Protocol::OAuth2(settings), PrincipalKeys::Client(client)) => {
                    format!(", {}", client_auth(settings, client))
                }
                (Protocol::OAuth2(settings), PrincipalKeys::Provider) => {
                    match &settings.registration.client {
                        Some(client) => {
                            format!(", {} (from the auth provider)", client_auth(settings, client))
                        }
                        None => String::new(),
                    }
                }
                (_, PrincipalKeys::Custom { parameters }) => {
                    let names: Vec<&str> = parameters.iter().map(|(n, _)| n.as_str()).collect();
                    format!(", parameters {}", names.join(", "))
                }
                (
                    _,
                    PrincipalKeys::Aws {
                        access_key_id,
                        session_token,
                        assume_role,
                        ..
                    },
                ) => {
                    let session = if session_token.is_some() {
                        " with a session token"
                    } else {
                        ""
                    };
                    let role = assume_role
                        .as_ref()
                        .map(|r| format!(", assumes role {}", r.role_arn))
                        .unwrap_or_default();
                    format!(", access key {access_key_id}{session}{role}")
                }
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "    {}. {} [{}]{scope}{auth}",
                p.sequence,
                p.name,
                sets.join(", ")
            );
        }
    }
    out
}

/// How `client` authenticates, e.g. `client_auth private_key_jwt, key EC P-256, ES256`.
fn client_auth(settings: &OAuth2, client: &OAuthClient) -> String {
    let mut parts = vec![match settings.flow {
        Flow::JwtBearer => "jwt_bearer assertion".to_owned(),
        _ => format!("client_auth {}", settings.client_auth().as_str()),
    }];
    if !client.client_id.is_empty() {
        parts.push(format!("client_id {}", client.client_id));
    }
    if let Some(jwt) = &client.jwt {
        let key = jwt.key.as_ref().map_or_else(
            || "not read".to_owned(),
            |k| format!("{} {}", k.description(), k.fingerprint()),
        );
        parts.push(format!("key {key}, {}", jwt.algorithm.as_str()));
        if let Some(kid) = &jwt.key_id {
            parts.push(format!("kid {kid}"));
        }
        if let Some((_, x5t_s256)) = &jwt.thumbprints {
            parts.push(format!("certificate x5t#S256 {x5t_s256}"));
        }
        if let Some(issuer) = &jwt.issuer {
            parts.push(format!("issuer {issuer}"));
        }
        if let Some(subject) = &jwt.subject {
            parts.push(format!("subject {subject}"));
        }
    }
    if let Some(tls) = &client.tls {
        parts.push(tls.describe());
    }
    if client.next_client_secret.is_some() {
        parts.push("next_client_secret staged".to_owned());
    }
    parts.join(", ")
}
