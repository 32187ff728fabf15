//! Temporary AWS credentials from STS AssumeRole, for `aws_sigv4` principals with a
//! `role_arn`: requested with the principal's own keys (a SigV4-signed form POST), cached,
//! and renewed a few minutes before they expire, one request at a time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full, Limited};
use tokio::time::Instant;

use crate::cause::cause_chain;
use crate::config::AssumeRole;
use crate::secret::Secret;
use crate::sigv4::{Credentials, Payload, Scope, sign};
use crate::token::TokenError;

/// How long the temporary credentials are asked for (STS's default), and how long before
/// their end they are no longer used.
const DURATION: Duration = Duration::from_secs(3600);
const MARGIN: Duration = Duration::from_secs(300);
/// An AssumeRole answer is a few KiB; anything larger is not one.
const MAX_RESPONSE: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

type Http = hyper_util::client::legacy::Client<crate::upstream::Connector, Full<Bytes>>;

/// A role's temporary credentials and how to get new ones.
pub struct Assumed {
    base: Credentials,
    role: AssumeRole,
    sts_url: http::Uri,
    region: Box<str>,
    http: Http,
    current: ArcSwapOption<(Credentials, Instant)>,
    /// Held while a request to STS is in flight: the others wait for its result.
    renewing: tokio::sync::Mutex<()>,
}

impl Assumed {
    pub fn new(base: Credentials, role: &AssumeRole, region: &str) -> Result<Assumed, rustls::Error> {
        let sts_url = role.sts_url.clone().unwrap_or_else(|| {
            format!("https://sts.{region}.amazonaws.com/")
                .parse()
                .expect("a region makes a valid host")
        });
        Ok(Assumed {
            base,
            role: role.clone(),
            sts_url,
            region: region.into(),
            http: crate::upstream::pooled(&[], None)?,
            current: ArcSwapOption::empty(),
            renewing: tokio::sync::Mutex::new(()),
        })
    }

    /// Usable temporary credentials: the cached ones, or new ones from STS.
    pub async fn credentials(&self) -> Result<Arc<(Credentials, Instant)>, TokenError> {
        let usable = |c: &Arc<(Credentials, Instant)>| Instant::now() < c.1;
        if let Some(current) = self.current.load_full().filter(usable) {
            return Ok(current);
        }
        let _turn = self.renewing.lock().await;
        if let Some(current) = self.current.load_full().filter(usable) {
            return Ok(current);
        }
        let sent = Instant::now();
        let fresh = Arc::new((self.assume().await?, sent + DURATION - MARGIN));
        self.current.store(Some(fresh.clone()));
        Ok(fresh)
    }

    async fn assume(&self) -> Result<Credentials, TokenError> {
        // The serializer is not `Send`: it is done before the first await.
        let body = Bytes::from(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("Action", "AssumeRole")
                .append_pair("Version", "2011-06-15")
                .append_pair("RoleArn", &self.role.role_arn)
                .append_pair("RoleSessionName", &self.role.session_name)
                .append_pair("DurationSeconds", &DURATION.as_secs().to_string())
                .finish(),
        );
        let mut headers = http::HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap());
        let scope = Scope {
            region: &self.region,
            service: "sts",
        };
        let method = http::Method::POST;
        sign(
            &method,
            &self.sts_url,
            &mut headers,
            Payload::Bytes(&body),
            &self.base,
            &scope,
            SystemTime::now(),
        )
        .map_err(|e| TokenError::Malformed(format!("cannot sign the AssumeRole request: {e}")))?;
        let mut request = http::Request::post(self.sts_url.clone())
            .body(Full::new(body))
            .expect("the STS URL is valid");
        *request.headers_mut() = headers;
        let response = tokio::time::timeout(TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| TokenError::Timeout(TIMEOUT))?
            .map_err(|e| TokenError::Unreachable(format!("STS: {}", cause_chain(&e))))?;
        let status = response.status().as_u16();
        let text = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| TokenError::Malformed(format!("reading the STS answer failed: {e}")))?
            .to_bytes();
        let text = String::from_utf8_lossy(&text);
        if status != 200 {
            // Only STS's error code, never its message, which may quote the request.
            let code =
                element(&text, "Code").filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
            return Err(TokenError::OAuth {
                status,
                error: code.unwrap_or_else(|| "invalid_response".to_owned()),
                description: None,
            });
        }
        let (Some(id), Some(secret), Some(session)) = (
            element(&text, "AccessKeyId"),
            element(&text, "SecretAccessKey"),
            element(&text, "SessionToken"),
        ) else {
            return Err(TokenError::Malformed(
                "the AssumeRole answer has no credentials".into(),
            ));
        };
        Ok(Credentials {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: Some(Secret::new(session)),
        })
    }
}

/// The text of the first `<name>...</name>` in `xml`, with XML's five entities decoded.
/// STS answers are flat and small; a general XML parser would add nothing here.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    let raw = xml[start..end].trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::element;

    #[test]
    fn credentials_are_read_from_an_assume_role_answer() {
        let xml = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult><Credentials>
    <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
    <SecretAccessKey>se/cr+et</SecretAccessKey>
    <SessionToken>to&amp;ken</SessionToken>
    <Expiration>2026-12-03T15:00:00Z</Expiration>
  </Credentials></AssumeRoleResult></AssumeRoleResponse>"#;
        assert_eq!(element(xml, "AccessKeyId").as_deref(), Some("ASIAEXAMPLE"));
        assert_eq!(element(xml, "SecretAccessKey").as_deref(), Some("se/cr+et"));
        assert_eq!(element(xml, "SessionToken").as_deref(), Some("to&ken"));
        assert_eq!(element(xml, "Missing"), None);
        assert_eq!(element("<Code>AccessDenied", "Code"), None);
    }
}
