//! Which principal serves a caller. Pure: no IO.
//!
//! The caller asserts permission sets in `x-callout-permission-sets`; among the principals
//! granted at least one of them, the lowest sequence number wins (as in Salesforce).

use std::collections::HashMap;

use http::HeaderMap;

use crate::config::Principal;

pub const PERMISSION_SETS_HEADER: &str = "x-callout-permission-sets";

/// For each permission set, the index of the lowest-sequence principal granted it.
/// Built once per config so that choosing costs one lookup per asserted set.
#[derive(Debug, Default)]
pub struct PrincipalIndex {
    by_set: HashMap<Box<str>, usize>,
}

impl PrincipalIndex {
    /// `principals` must be sorted by sequence, lowest first.
    pub fn new(principals: &[Principal]) -> PrincipalIndex {
        let mut by_set = HashMap::new();
        for (i, p) in principals.iter().enumerate() {
            for set in &p.permission_sets {
                by_set.entry(set.clone()).or_insert(i);
            }
        }
        PrincipalIndex { by_set }
    }

    /// The index of the principal to use, if any asserted set grants one.
    pub fn choose<'a>(&self, asserted: impl IntoIterator<Item = &'a str>) -> Option<usize> {
        asserted
            .into_iter()
            .filter_map(|set| self.by_set.get(set).copied())
            .min()
    }
}

/// The header's value is not text.
#[derive(Debug, thiserror::Error)]
#[error("x-callout-permission-sets is not valid text")]
pub struct BadHeader;

/// The asserted permission sets: every `x-callout-permission-sets` line, comma-separated
/// and trimmed; `defaults` when the header is absent.
pub fn asserted_sets<'a>(
    headers: &'a HeaderMap,
    defaults: &'a [Box<str>],
) -> Result<Vec<&'a str>, BadHeader> {
    Ok(header_sets(headers)?.unwrap_or_else(|| defaults.iter().map(|s| &**s).collect()))
}

/// The sets in `x-callout-permission-sets`, or `None` when the header is absent.
pub fn header_sets(headers: &HeaderMap) -> Result<Option<Vec<&str>>, BadHeader> {
    let mut lines = headers.get_all(PERMISSION_SETS_HEADER).iter().peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let mut sets = Vec::new();
    for line in lines {
        let text = line.to_str().map_err(|_| BadHeader)?;
        sets.extend(text.split(',').map(str::trim).filter(|s| !s.is_empty()));
    }
    Ok(Some(sets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PrincipalKeys;

    fn principal(name: &str, sequence: i64, sets: &[&str]) -> Principal {
        Principal {
            name: name.into(),
            sequence,
            permission_sets: sets.iter().map(|s| (*s).into()).collect(),
            scope: None,
            keys: PrincipalKeys::None,
        }
    }

    fn check(header_lines: &[&str], defaults: &[&str], expected: Option<&str>) {
        let mut principals = vec![
            principal("Reader", 20, &["Sales", "Support"]),
            principal("Admin", 1, &["Integration_Admin"]),
            principal("Ops", 5, &["Support", "Ops"]),
            principal("Fallback", 100, &["Everyone"]),
        ];
        principals.sort_by_key(|p| p.sequence);
        let index = PrincipalIndex::new(&principals);
        let mut headers = HeaderMap::new();
        for line in header_lines {
            headers.append(PERMISSION_SETS_HEADER, line.parse().unwrap());
        }
        let defaults: Vec<Box<str>> = defaults.iter().map(|s| (*s).into()).collect();
        let sets = asserted_sets(&headers, &defaults).unwrap();
        let chosen = index.choose(sets).map(|i| &*principals[i].name);
        assert_eq!(chosen, expected, "lines {header_lines:?}, defaults {defaults:?}");
    }

    #[test]
    fn lowest_sequence_among_granted_principals_wins() {
        check(&["Sales"], &[], Some("Reader"));
        check(&["Support"], &[], Some("Ops"));
        check(&["Sales, Support"], &[], Some("Ops"));
        check(&["Everyone,Integration_Admin"], &[], Some("Admin"));
        check(&[" Sales ", "Ops"], &[], Some("Ops"));
        check(&["Sales", "Everyone", "Integration_Admin"], &[], Some("Admin"));
        check(&["Unknown", "Sales"], &[], Some("Reader"));
    }

    #[test]
    fn names_are_case_sensitive_and_empty_entries_ignored() {
        check(&["sales"], &[], None);
        check(&[",, ,"], &[], None);
        check(&["Nope"], &[], None);
    }

    #[test]
    fn defaults_stand_in_only_without_the_header() {
        check(&[], &["Everyone"], Some("Fallback"));
        check(&[], &[], None);
        check(&["Sales"], &["Integration_Admin"], Some("Reader"));
        check(&[""], &["Everyone"], None);
    }
}
