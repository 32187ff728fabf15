//! `[callers.NAME]`: who may call callout, and with which permission sets.

use toml::Spanned;

use super::Caller;
use super::raw::RawSecret;
use super::read::{Reader, Table};
use crate::secret::Secret;

/// Caller tokens are bearer secrets: anything shorter is guessable.
const MIN_CALLER_TOKEN: usize = 16;

const KEYS: &[&str] = &["token", "uid", "permission_sets", "admin", "assert_users"];

impl Reader<'_> {
    /// One caller; `seen` holds the tokens of the callers read before it.
    pub(super) fn caller(
        &mut self,
        name: &Spanned<String>,
        mut t: Table<'_>,
        seen: &mut Vec<(Secret, String)>,
    ) -> Option<Caller> {
        let context = t.context.clone();
        let raw_token = self.take::<RawSecret>(&mut t, "token");
        let uid = self.take::<u32>(&mut t, "uid").map(Spanned::into_inner);
        let sets = self.take::<Vec<Spanned<String>>>(&mut t, "permission_sets");
        let admin = self
            .take::<bool>(&mut t, "admin")
            .is_some_and(Spanned::into_inner);
        let assert_users = self
            .take::<bool>(&mut t, "assert_users")
            .is_some_and(Spanned::into_inner);
        let token_present = t.has("token") || raw_token.is_some();
        self.finish(t, KEYS, &|_| None);
        if !token_present && uid.is_none() {
            self.problem(
                Some(name.span()),
                format!("{context} has neither a `token` nor a `uid`, so no request could ever come from it"),
            );
        }
        let permission_sets =
            self.permission_sets(&context, &sets.map(Spanned::into_inner).unwrap_or_default());
        let mut token = None;
        if let Some(raw_token) = &raw_token {
            let secret = self.secret(&format!("{context}: token"), raw_token)?;
            let checkable = self.read_secrets || matches!(raw_token.get_ref(), RawSecret::Literal(_));
            if checkable && secret.expose().len() < MIN_CALLER_TOKEN {
                self.problem(
                    Some(raw_token.span()),
                    format!("{context}: token is shorter than {MIN_CALLER_TOKEN} characters; use a long random value"),
                );
            }
            if checkable && let Some((_, other)) = seen.iter().find(|(s, _)| *s == secret) {
                self.problem(
                    Some(raw_token.span()),
                    format!("{context}: token is the same as caller `{other}`'s"),
                );
            }
            seen.push((secret.clone(), name.get_ref().clone()));
            token = Some(secret);
        }
        Some(Caller {
            name: name.get_ref().clone().into_boxed_str(),
            token,
            uid,
            admin,
            assert_users,
            permission_sets,
        })
    }
}
