//! `protocol = "aws_sigv4"`: each attempt is signed with AWS Signature Version 4 (method,
//! path, query, the signed headers and the body's SHA-256), by `crate::sigv4`.

use std::time::SystemTime;

use crate::config::AwsSigV4 as Settings;
use crate::secret::Secret;
use crate::sigv4::{Credentials, Payload, Scope, SignError, sign};

use super::{Attempt, BodyRule};

/// S3 accepts `UNSIGNED-PAYLOAD`, so its bodies may stream; every other service needs the
/// body's hash, so its bodies are buffered (up to `max_request_body`).
const UNSIGNED_PAYLOAD_SERVICES: &[&str] = &["s3"];

#[derive(Clone)]
pub struct AwsSigV4 {
    credentials: std::sync::Arc<Credentials>,
    region: Box<str>,
    service: Box<str>,
}

impl std::fmt::Debug for AwsSigV4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSigV4")
            .field("access_key_id", &self.credentials.access_key_id)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl AwsSigV4 {
    pub fn new(
        settings: &Settings,
        access_key_id: &str,
        secret: &Secret,
        session_token: Option<&Secret>,
    ) -> AwsSigV4 {
        AwsSigV4 {
            credentials: std::sync::Arc::new(Credentials {
                access_key_id: access_key_id.to_owned(),
                secret_access_key: secret.clone(),
                session_token: session_token.cloned(),
            }),
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

    pub fn apply(&self, attempt: Attempt<'_>) -> Result<(), SignError> {
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
            &self.credentials,
            &scope,
            SystemTime::now(),
        )
    }
}
