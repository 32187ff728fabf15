//! `[[external_credentials.NAME.principals]]`: the identities of an external credential,
//! with the keys their protocol needs.

use std::collections::{BTreeMap, HashMap};

use toml::Spanned;
use toml::de::DeValue;

use super::client::CLIENT_KEYS;
use super::external::ClientShape;
use super::names::check_name;
use super::raw::{ProtocolName, RawSecret};
use super::read::{Reader, Table};
use super::{AssumeRole, Principal, PrincipalKeys};

const COMMON_KEYS: &[&str] = &["name", "sequence", "permission_sets"];
/// Besides the client keys (`CLIENT_KEYS`).
const OAUTH2_KEYS: &[&str] = &["scope"];
const BASIC_KEYS: &[&str] = &["username", "password"];
const CUSTOM_KEYS: &[&str] = &["parameters"];
const AWS_KEYS: &[&str] = &[
    "access_key_id",
    "secret_access_key",
    "session_token",
    "role_arn",
    "role_session_name",
    "sts_url",
];

/// The principal keys of each protocol that has some.
fn protocol_keys() -> [(ProtocolName, Vec<&'static str>); 4] {
    [
        (ProtocolName::Oauth2, [OAUTH2_KEYS, CLIENT_KEYS].concat()),
        (ProtocolName::Basic, BASIC_KEYS.to_vec()),
        (ProtocolName::Custom, CUSTOM_KEYS.to_vec()),
        (ProtocolName::AwsSigv4, AWS_KEYS.to_vec()),
    ]
}

fn keys_of(protocol: Option<ProtocolName>) -> Vec<&'static str> {
    let mut keys = COMMON_KEYS.to_vec();
    for (p, more) in protocol_keys() {
        if protocol.is_none_or(|protocol| protocol == p) {
            keys.extend_from_slice(&more);
        }
    }
    keys
}

fn belongs_elsewhere(protocol: Option<ProtocolName>, key: &str) -> Option<String> {
    let protocol = protocol?;
    let owner = protocol_keys()
        .into_iter()
        .find(|(p, keys)| *p != protocol && keys.contains(&key))?
        .0;
    Some(format!(
        "is a principal key of protocol = \"{}\", not of protocol = \"{}\"",
        owner.as_str(),
        protocol.as_str()
    ))
}

impl Reader<'_> {
    /// The principals of the external credential `t`, sorted by sequence.
    pub(super) fn principals(
        &mut self,
        t: &mut Table<'_>,
        protocol: Option<ProtocolName>,
        shape: Option<&ClientShape>,
    ) -> Vec<Principal> {
        let context = t.context.clone();
        let Some(value) = t.raw("principals") else {
            return Vec::new();
        };
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.problem(
                Some(span),
                format!("{context}: principals must be an array of tables ([[external_credentials.NAME.principals]])"),
            );
            return Vec::new();
        };
        let mut principals = Vec::new();
        let mut names: HashMap<String, ()> = HashMap::new();
        let mut sequences: HashMap<i64, String> = HashMap::new();
        for (i, item) in items.into_iter().enumerate() {
            let Some(mut p) = self.table(format!("{context}: principal #{}", i + 1), item) else {
                continue;
            };
            let name = self.require::<String>(&mut p, "name");
            if let Some(name) = &name {
                let pname = name.get_ref();
                if let Err(why) = check_name(pname) {
                    self.problem(
                        Some(name.span()),
                        format!("{context}: principal name `{pname}` {why}"),
                    );
                }
                if names.insert(pname.clone(), ()).is_some() {
                    self.problem(
                        Some(name.span()),
                        format!("{context}: principal `{pname}` is defined twice"),
                    );
                }
                p.context = format!("{context}: principal `{pname}`");
            }
            let pname = name.as_ref().map_or("?", |n| n.get_ref().as_str()).to_owned();
            let sequence = self.require::<i64>(&mut p, "sequence");
            if let Some(sequence) = &sequence
                && let Some(other) = sequences.insert(*sequence.get_ref(), pname.clone())
            {
                self.problem(
                    Some(sequence.span()),
                    format!(
                        "{context}: sequence {} of principal `{pname}` is already used by principal `{other}`; sequences must be unique",
                        sequence.get_ref()
                    ),
                );
            }
            let sets = self.take::<Vec<Spanned<String>>>(&mut p, "permission_sets");
            let permission_sets =
                self.permission_sets(&context, &sets.map(Spanned::into_inner).unwrap_or_default());
            if permission_sets.is_empty() {
                self.problem(
                    Some(p.span.clone()),
                    format!("{context}: principal `{pname}` has no permission_sets, so no caller could ever use it"),
                );
            }
            let scope = match protocol {
                Some(ProtocolName::Oauth2) => {
                    let scope = self.take::<String>(&mut p, "scope");
                    if let Some(scope) = &scope {
                        let context = p.context.clone();
                        self.check_scope(&context, scope);
                    }
                    scope.map(Spanned::into_inner)
                }
                _ => None,
            };
            let keys = self.principal_keys(&mut p, protocol, shape);
            self.finish(p, &keys_of(protocol), &|key| belongs_elsewhere(protocol, key));
            if let (Some(name), Some(sequence), Some(keys)) = (name, sequence, keys) {
                principals.push(Principal {
                    name: name.into_inner().into_boxed_str(),
                    sequence: sequence.into_inner(),
                    permission_sets,
                    scope,
                    keys,
                });
            }
        }
        principals.sort_by_key(|p| p.sequence);
        principals
    }

    /// The keys that `protocol` needs of a principal.
    fn principal_keys(
        &mut self,
        p: &mut Table<'_>,
        protocol: Option<ProtocolName>,
        shape: Option<&ClientShape>,
    ) -> Option<PrincipalKeys> {
        let context = p.context.clone();
        match protocol? {
            ProtocolName::Oauth2 => {
                let shape = shape.expect("an oauth2 external credential has a client shape");
                if let Some(provider) = &shape.provider {
                    for key in CLIENT_KEYS {
                        if let Some(value) = p.raw(key) {
                            self.problem(
                                Some(value.span()),
                                format!("{context}: {key} is a registration key: it comes from auth provider `{provider}`"),
                            );
                        }
                    }
                    return Some(PrincipalKeys::Provider);
                }
                let client = self.oauth_client(p, shape.flow, shape.client_auth);
                Some(PrincipalKeys::Client(Box::new(client?)))
            }
            ProtocolName::Basic => {
                let username = self.require::<RawSecret>(p, "username");
                let password = self.require::<RawSecret>(p, "password");
                let user = username.and_then(|u| {
                    let secret = self.secret(&format!("{context}: username"), &u)?;
                    if secret.expose().contains(':') {
                        // RFC 7617 §2: the first colon ends the user-id.
                        self.problem(
                            Some(u.span()),
                            format!("{context}: username must not contain `:`, which Basic authentication cannot carry"),
                        );
                        return None;
                    }
                    Some(secret)
                });
                let password = password.and_then(|pw| self.secret(&format!("{context}: password"), &pw));
                Some(PrincipalKeys::Basic {
                    username: user?,
                    password: password?,
                })
            }
            ProtocolName::Custom => {
                let raw = self.require::<BTreeMap<String, Spanned<RawSecret>>>(p, "parameters")?;
                let mut parameters = Vec::new();
                for (name, value) in raw.into_inner() {
                    if let Err(why) = check_name(&name) {
                        self.problem(
                            Some(value.span()),
                            format!("{context}: parameter name `{name}` {why}"),
                        );
                        continue;
                    }
                    let secret = self.secret(&format!("{context}: parameter `{name}`"), &value)?;
                    parameters.push((name, secret));
                }
                Some(PrincipalKeys::Custom { parameters })
            }
            ProtocolName::AwsSigv4 => {
                let id = self.require::<String>(p, "access_key_id");
                let secret = self.require::<RawSecret>(p, "secret_access_key");
                let session = self.take::<RawSecret>(p, "session_token");
                let role_arn = self.take::<String>(p, "role_arn");
                let session_name = self.take::<String>(p, "role_session_name");
                let sts_url = self.take::<String>(p, "sts_url");
                let sts_url = sts_url.and_then(|url| self.endpoint_url(&context, "sts_url", &url, false));
                let assume_role = role_arn.map(|arn| AssumeRole {
                    role_arn: arn.into_inner(),
                    session_name: session_name
                        .map(Spanned::into_inner)
                        .unwrap_or_else(|| "callout".to_owned()),
                    sts_url,
                });
                let secret = secret.and_then(|s| self.secret(&format!("{context}: secret_access_key"), &s));
                let session_token = match session {
                    Some(s) => Some(self.secret(&format!("{context}: session_token"), &s)?),
                    None => None,
                };
                Some(PrincipalKeys::Aws {
                    access_key_id: id?.into_inner(),
                    secret_access_key: secret?,
                    session_token,
                    assume_role,
                })
            }
            ProtocolName::None => Some(PrincipalKeys::None),
        }
    }
}
