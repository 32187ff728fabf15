//! `protocol = "aws_sigv4"`: each attempt is signed with AWS Signature Version 4 (method,
//! path, query, the signed headers and the body's SHA-256), by `crate::sigv4`; with a
//! `role_arn`, by the role's temporary credentials (`assume_role.rs`).

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{AssumeRole, AwsSigV4 as Settings};
use crate::secret::Secret;
use crate::sigv4::{Credentials, Payload, Scope, sign};

use super::assume_role::Assumed;
use super::{Attempt, AuthError, BodyRule};

/// S3 accepts `UNSIGNED-PAYLOAD`, so its bodies may stream; every other service needs the
/// body's hash, so its bodies are buffered (up to `max_request_body`).
const UNSIGNED_PAYLOAD_SERVICES: &[&str] = &["s3"];

#[derive(Clone)]
pub struct AwsSigV4 {
    keys: Keys,
    region: Box<str>,
    service: Box<str>,
}

/// What a request is signed with.
#[derive(Clone)]
enum Keys {
    Static(Arc<Credentials>),
    /// A role's temporary credentials, from STS.
    Assumed(Arc<Assumed>),
}

impl std::fmt::Debug for AwsSigV4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSigV4")
            .field("assumes_role", &matches!(self.keys, Keys::Assumed(_)))
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl AwsSigV4 {
    /// With `assume_role`, requests are signed with that role's temporary credentials,
    /// which the principal's own keys obtain.
    pub fn new(
        settings: &Settings,
        (access_key_id, secret, session_token): (&str, &Secret, Option<&Secret>),
        assume_role: Option<&AssumeRole>,
    ) -> AwsSigV4 {
        let credentials = Credentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret.clone(),
            session_token: session_token.cloned(),
        };
        let keys = match assume_role {
            None => Keys::Static(Arc::new(credentials)),
            Some(role) => match Assumed::new(credentials.clone(), role, &settings.region) {
                Ok(assumed) => Keys::Assumed(Arc::new(assumed)),
                // Building a TLS client fails only without usable roots; the principal's
                // own keys then sign, and the upstream refuses them visibly.
                Err(_) => Keys::Static(Arc::new(credentials)),
            },
        };
        AwsSigV4 {
            keys,
            region: settings.region.as_str().into(),
            service: settings.service.as_str().into(),
        }
    }

    pub fn body_rule(&self) -> BodyRule {
        if UNSIGNED_PAYLOAD_SERVICES.contains(&&*self.service) {
            BodyRule::Stream
        } else {
            BodyRule::Buffer
        }
    }

    pub async fn apply(&self, attempt: Attempt<'_>) -> Result<(), AuthError> {
        let assumed;
        let credentials = match &self.keys {
            Keys::Static(credentials) => &**credentials,
            Keys::Assumed(role) => {
                assumed = role.credentials().await?;
                &assumed.credentials
            }
        };
        let payload = match attempt.body {
            Some(bytes) => Payload::Bytes(bytes),
            // Only where the body streams, which `body_rule` allows for S3 alone.
            None => Payload::Unsigned,
        };
        let scope = Scope {
            region: &self.region,
            service: &self.service,
        };
        sign(
            attempt.method,
            attempt.uri,
            attempt.headers,
            payload,
            credentials,
            &scope,
            SystemTime::now(),
        )?;
        Ok(())
    }
}
