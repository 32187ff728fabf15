//! Temporary AWS credentials from STS AssumeRole, for `aws_sigv4` principals with a
//! `role_arn`: requested with the principal's own keys (a SigV4-signed form POST), cached,
//! and renewed in the background before they expire (`token::schedule`, as for tokens),
//! one STS request at a time; only the first request, or one after an outage, waits.

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
/// their end they are no longer used (less for short-lived ones, see `token::schedule`).
const DURATION: Duration = Duration::from_secs(3600);
const MARGIN: Duration = Duration::from_secs(300);
/// After a failed renewal in the background, the next is not tried before this.
const RETRY: Duration = Duration::from_secs(5);
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
    current: ArcSwapOption<Current>,
    /// Held while a request to STS is in flight: the others wait for its result.
    renewing: Arc<tokio::sync::Mutex<()>>,
    /// When a renewal in the background last failed.
    failed_at: std::sync::Mutex<Option<Instant>>,
}

/// Temporary credentials and when they are renewed and no longer used.
pub struct Current {
    pub credentials: Credentials,
    refresh_at: Instant,
    usable_until: Instant,
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
            renewing: Arc::new(tokio::sync::Mutex::new(())),
            failed_at: std::sync::Mutex::new(None),
        })
    }

    /// Usable temporary credentials: the cached ones (starting their renewal in the
    /// background when it is due), or new ones from STS.
    pub async fn credentials(self: &Arc<Self>) -> Result<Arc<Current>, TokenError> {
        let now = Instant::now();
        if let Some(current) = self.current.load_full().filter(|c| now < c.usable_until) {
            if now >= current.refresh_at {
                self.renew_in_background(now);
            }
            return Ok(current);
        }
        let _turn = self.renewing.lock().await;
        if let Some(current) = self
            .current
            .load_full()
            .filter(|c| Instant::now() < c.usable_until)
        {
            return Ok(current);
        }
        self.renew().await
    }

    fn renew_in_background(self: &Arc<Self>, now: Instant) {
        let recently_failed = self
            .failed_at
            .lock()
            .expect("poisoned")
            .is_some_and(|at| now.saturating_duration_since(at) < RETRY);
        if recently_failed {
            return;
        }
        let Ok(turn) = self.renewing.clone().try_lock_owned() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _turn = turn;
            if let Err(e) = this.renew().await {
                *this.failed_at.lock().expect("poisoned") = Some(Instant::now());
                tracing::warn!(role_arn = %this.role.role_arn, "renewing the role's credentials failed: {}", e.detail_for_operators());
            }
        });
    }

    /// Asks STS (the caller holds `renewing`) and caches the answer.
    async fn renew(&self) -> Result<Arc<Current>, TokenError> {
        let sent = Instant::now();
        let (credentials, lifetime) = self.assume().await?;
        let (refresh, usable) = crate::token::schedule(lifetime, MARGIN, sent.elapsed());
        let fresh = Arc::new(Current {
            credentials,
            refresh_at: sent + refresh,
            usable_until: sent + usable,
        });
        self.current.store(Some(fresh.clone()));
        Ok(fresh)
    }

    /// New temporary credentials and how long they live.
    async fn assume(&self) -> Result<(Credentials, Duration), TokenError> {
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
        // The answer's `Expiration`, when it reads; else the lifetime asked for.
        let lifetime = element(&text, "Expiration")
            .and_then(|e| seconds_since_epoch(&e))
            .and_then(|end| {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()?
                    .as_secs();
                Some(Duration::from_secs(end.saturating_sub(now)))
            })
            .unwrap_or(DURATION);
        let credentials = Credentials {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: Some(Secret::new(session)),
        };
        Ok((credentials, lifetime.min(DURATION)))
    }
}

/// Seconds since the epoch of an ISO 8601 UTC time as STS writes it
/// (`2026-12-03T15:00:00Z`, optionally with fractional seconds).
fn seconds_since_epoch(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !text.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
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
    use super::{element, seconds_since_epoch};

    #[test]
    fn sts_expiration_times_are_read() {
        assert_eq!(seconds_since_epoch("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(seconds_since_epoch("2026-12-03T15:00:00Z"), Some(1_796_310_000));
        assert_eq!(seconds_since_epoch("2000-03-01T00:00:01.123Z"), Some(951_868_801));
        assert_eq!(seconds_since_epoch("2026-12-03 15:00:00"), None);
        assert_eq!(seconds_since_epoch("2026-13-03T15:00:00Z"), None);
        assert_eq!(seconds_since_epoch("garbage"), None);
    }

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
