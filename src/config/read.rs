//! Reading the TOML document key by key, collecting every problem with its place.
//!
//! Each table is taken apart into its keys, and each key is deserialized on its own: a bad
//! value, a missing key or an unknown key is one problem, and the rest of the table is
//! still checked. The per-table files (`server.rs`, `external.rs`, ...) ask for keys by
//! name; whatever nobody asked for is an unknown key.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::Problem;
use super::names::suggestion;

/// One TOML table being read.
pub(super) struct Table<'i> {
    /// How problems name it, e.g. "external credential `Okta`".
    pub context: String,
    pub span: Range<usize>,
    entries: Vec<(Spanned<String>, Option<Spanned<DeValue<'i>>>)>,
}

impl<'i> Table<'i> {
    pub fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|(k, v)| k.get_ref() == key && v.is_some())
    }

    /// Takes `key`'s raw value out of the table.
    pub fn raw(&mut self, key: &str) -> Option<Spanned<DeValue<'i>>> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k.get_ref() == key)
            .and_then(|(_, v)| v.take())
    }

    /// Keys nobody has taken yet.
    pub fn leftover(&self) -> impl Iterator<Item = &Spanned<String>> {
        self.entries.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| k)
    }
}

/// The state of one validation run: the document, where relative paths start, how secrets
/// are found, and every problem so far.
pub(super) struct Reader<'a> {
    pub text: &'a str,
    pub base_dir: PathBuf,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `false` for `check --no-secrets`: env and file secrets are not read.
    pub read_secrets: bool,
    /// Literal secrets are written in the file itself (rather than `env` or `file`).
    pub literal_secrets: bool,
    /// Files the config names (secrets, CA bundles), for watching.
    pub files: Vec<PathBuf>,
    /// The secret files among them, for permission checks.
    pub secret_files: Vec<PathBuf>,
    pub problems: Vec<Problem>,
    /// Each external credential's `headers`, resolved when a named credential uses it.
    pub ec_headers: std::collections::HashMap<String, super::headers::RawHeaders>,
}

impl Reader<'_> {
    pub fn problem(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, column) = span.map_or((0, 0), |s| line_column(self.text, s.start));
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }

    pub fn toml_error(&mut self, context: &str, err: toml::de::Error, fallback: Range<usize>) {
        let message = err.message().trim_end().to_owned();
        let message = if context.is_empty() {
            message
        } else {
            format!("{context}: {message}")
        };
        // A few errors (e.g. the parser's nesting limit, or a custom one from a value's
        // deserializer) have no span of their own.
        self.problem(Some(err.span().unwrap_or(fallback)), message);
    }

    /// `value` as a table named `context`, or a problem.
    pub fn table<'i>(&mut self, context: String, value: Spanned<DeValue<'i>>) -> Option<Table<'i>> {
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.problem(Some(span), format!("{context} must be a table"));
            return None;
        };
        let entries = table
            .into_iter()
            .map(|(k, v)| (Spanned::new(k.span(), k.get_ref().to_string()), Some(v)))
            .collect();
        Some(Table {
            context,
            span,
            entries,
        })
    }

    /// The value of `key`, when present and valid; a bad value is a problem.
    pub fn take<T: for<'de> Deserialize<'de>>(
        &mut self,
        table: &mut Table<'_>,
        key: &str,
    ) -> Option<Spanned<T>> {
        let value = table.raw(key)?;
        self.value(&format!("{}: {key}", table.context), value)
    }

    /// Like `take`, but a missing key is a problem too.
    pub fn require<T: for<'de> Deserialize<'de>>(
        &mut self,
        table: &mut Table<'_>,
        key: &str,
    ) -> Option<Spanned<T>> {
        if !table.has(key) {
            self.problem(
                Some(table.span.clone()),
                format!("{} is missing the key `{key}`", table.context),
            );
            return None;
        }
        self.take(table, key)
    }

    /// Deserializes one value on its own.
    pub fn value<T: for<'de> Deserialize<'de>>(
        &mut self,
        context: &str,
        value: Spanned<DeValue<'_>>,
    ) -> Option<Spanned<T>> {
        let span = value.span();
        match Spanned::<T>::deserialize(ValueDeserializer::from(value)) {
            Ok(t) => Some(t),
            Err(e) => {
                self.toml_error(context, e, span);
                None
            }
        }
    }

    /// Reports every key of `table` nobody took. `known` are the keys the table may have:
    /// one of them left over was not read because its entry could not be judged (an
    /// unknown protocol), and the others make suggestions. `elsewhere` explains a key that
    /// belongs to another kind of entry.
    pub fn finish(&mut self, table: Table<'_>, known: &[&str], elsewhere: &dyn Fn(&str) -> Option<String>) {
        let unknown: Vec<Spanned<String>> = table
            .leftover()
            .filter(|k| !known.contains(&k.get_ref().as_str()))
            .cloned()
            .collect();
        let prefix = if table.context.is_empty() {
            String::new()
        } else {
            format!("{}: ", table.context)
        };
        for key in unknown {
            let name = key.get_ref();
            let message = match elsewhere(name) {
                Some(why) => format!("{prefix}`{name}` {why}"),
                None => format!("{prefix}unknown key `{name}`{}", hint(name, known)),
            };
            self.problem(Some(key.span()), message);
        }
    }
}

/// "; did you mean `x`?" for a close key, else the list of keys when it is short.
fn hint(name: &str, known: &[&str]) -> String {
    let close = suggestion(name, known.iter().copied());
    if !close.is_empty() || known.len() > 6 {
        return close;
    }
    let quoted: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => format!("; expected {last}"),
        Some((last, rest)) => format!("; expected {} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
