//! Who is calling: with `[callers]` configured, every proxied request must prove it comes
//! from a known caller, by a `Proxy-Authorization: Bearer` token or, on a Unix socket, by the
//! peer's uid. A caller may use only the permission sets it was granted.

use http::HeaderMap;
use http::header::PROXY_AUTHORIZATION;
use subtle::ConstantTimeEq;

use super::error::ProxyError;
use crate::config::Caller;
use crate::listen::Peer;

/// The caller a request comes from: `Ok(None)` when no callers are configured.
pub fn authenticate<'a>(
    callers: &'a [Caller],
    headers: &HeaderMap,
    peer: Peer,
) -> Result<Option<&'a Caller>, ProxyError> {
    if callers.is_empty() {
        return Ok(None);
    }
    if let Some(value) = headers.get(PROXY_AUTHORIZATION) {
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| unauthorized("Proxy-Authorization must be `Bearer <caller token>`"))?;
        // Compare with every caller, in constant time per comparison, so the time taken
        // does not tell how much of a token was right.
        let mut found = None;
        for caller in callers {
            if let Some(token) = &caller.token
                && bool::from(token.expose().as_bytes().ct_eq(presented.as_bytes()))
            {
                found = Some(caller);
            }
        }
        return found
            .map(Some)
            .ok_or_else(|| unauthorized("the caller token is not known"));
    }
    if let Some(uid) = peer.uid
        && let Some(caller) = callers.iter().find(|c| c.uid == Some(uid))
    {
        return Ok(Some(caller));
    }
    Err(unauthorized(
        "this proxy requires a caller token: send `Proxy-Authorization: Bearer <caller token>`",
    ))
}

/// The permission sets a request may use: what it asserts (or, without the header, what the
/// defaults say), limited to what its caller was granted. A caller that asserts none gets all
/// of its grant. An iterator, so that the usual case (no header, the defaults) allocates
/// nothing.
pub fn effective_sets<'a>(
    caller: Option<&'a Caller>,
    asserted: Option<Vec<&'a str>>,
    defaults: &'a [Box<str>],
) -> EffectiveSets<'a> {
    match (caller, asserted) {
        (caller, Some(sets)) => EffectiveSets::Asserted(sets.into_iter(), caller),
        (None, None) => EffectiveSets::Listed(defaults.iter()),
        (Some(caller), None) => EffectiveSets::Listed(caller.permission_sets.iter()),
    }
}

/// See `effective_sets`.
pub enum EffectiveSets<'a> {
    /// Asserted sets, kept when the caller (if any) was granted them.
    Asserted(std::vec::IntoIter<&'a str>, Option<&'a Caller>),
    /// The defaults, or a caller's whole grant.
    Listed(std::slice::Iter<'a, Box<str>>),
}

impl<'a> Iterator for EffectiveSets<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            EffectiveSets::Asserted(sets, None) => sets.next(),
            EffectiveSets::Asserted(sets, Some(caller)) => {
                sets.find(|s| caller.permission_sets.iter().any(|g| &**g == *s))
            }
            EffectiveSets::Listed(sets) => sets.next().map(|s| &**s),
        }
    }
}

fn unauthorized(why: &str) -> ProxyError {
    ProxyError::CallerUnauthorized(why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn callers() -> Vec<Caller> {
        vec![
            Caller {
                name: "Orders".into(),
                token: Some(Secret::new("orders-token-0123456789")),
                uid: None,
                admin: false,
                assert_users: false,
                permission_sets: vec!["Orders".into(), "Shared".into()],
            },
            Caller {
                name: "Batch".into(),
                token: None,
                uid: Some(1000),
                admin: false,
                assert_users: false,
                permission_sets: vec!["Batch".into()],
            },
        ]
    }

    fn who(header: Option<&str>, uid: Option<u32>) -> Result<Option<String>, String> {
        let callers = callers();
        let mut headers = HeaderMap::new();
        if let Some(h) = header {
            headers.insert(PROXY_AUTHORIZATION, h.parse().unwrap());
        }
        authenticate(&callers, &headers, Peer { uid })
            .map(|c| c.map(|c| c.name.to_string()))
            .map_err(|e| e.code().0.to_owned())
    }

    #[test]
    fn identifies_callers_by_token_or_uid() {
        assert_eq!(
            who(Some("Bearer orders-token-0123456789"), None),
            Ok(Some("Orders".into()))
        );
        assert_eq!(
            who(Some("bearer  orders-token-0123456789"), None),
            Ok(Some("Orders".into()))
        );
        assert_eq!(who(None, Some(1000)), Ok(Some("Batch".into())));
        for (header, uid) in [
            (None, None),
            (Some("Bearer orders-token-012345678"), None),
            (Some("Bearer orders-token-0123456789x"), None),
            (Some("Basic b3JkZXJz"), None),
            (Some("Bearer"), None),
            (None, Some(0)),
            (Some("Bearer wrong"), Some(1000)),
        ] {
            assert_eq!(
                who(header, uid),
                Err("caller_unauthorized".into()),
                "{header:?} {uid:?}"
            );
        }
        assert_eq!(
            authenticate(&[], &HeaderMap::new(), Peer::default())
                .unwrap()
                .map(|c| &*c.name),
            None
        );
    }

    #[test]
    fn a_caller_never_widens_its_grant() {
        let callers = callers();
        let orders = Some(&callers[0]);
        assert_eq!(
            effective_sets(orders, Some(vec!["Orders", "Admin"]), &[]).collect::<Vec<_>>(),
            ["Orders"]
        );
        assert_eq!(
            effective_sets(orders, Some(vec!["Admin"]), &[]).collect::<Vec<_>>(),
            Vec::<&str>::new()
        );
        assert_eq!(
            effective_sets(orders, None, &["Admin".into()]).collect::<Vec<_>>(),
            ["Orders", "Shared"]
        );
        assert_eq!(
            effective_sets(None, None, &["Admin".into()]).collect::<Vec<_>>(),
            ["Admin"]
        );
        assert_eq!(
            effective_sets(None, Some(vec!["X"]), &["Admin".into()]).collect::<Vec<_>>(),
            ["X"]
        );
    }
}
