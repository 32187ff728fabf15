//! From TOML text to a validated `Config`: the document's top-level tables, each entry
//! read on its own by its table's file, every problem collected.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::names::check_name;
use super::read::{Reader, Table};
use super::{Config, LoadOptions, Problem};

const TABLES: &[&str] = &[
    "server",
    "callers",
    "auth_providers",
    "external_credentials",
    "named_credentials",
];

pub(super) fn validate(path: &Path, text: &str, options: &LoadOptions<'_>) -> Result<Config, Vec<Problem>> {
    let mut r = Reader {
        text,
        base_dir: path.parent().map(Path::to_owned).unwrap_or_default(),
        env: options.env,
        read_secrets: options.read_secrets,
        literal_secrets: false,
        files: Vec::new(),
        secret_files: Vec::new(),
        problems: Vec::new(),
        ec_headers: HashMap::new(),
    };
    let config = r.document(path);
    if r.problems.is_empty() {
        Ok(config.expect("a config is built whenever there are no problems"))
    } else {
        r.problems.sort_by_key(|p| (p.line, p.column));
        Err(r.problems)
    }
}

impl Reader<'_> {
    fn document(&mut self, path: &Path) -> Option<Config> {
        let (root, errors) = DeTable::parse_recoverable(self.text);
        if !errors.is_empty() {
            for e in errors {
                self.toml_error("", e, 0..0);
            }
            return None;
        }
        let root_span = root.span();
        let mut root = self.table(
            String::new(),
            Spanned::new(root_span, DeValue::Table(root.into_inner())),
        )?;
        let server = root.raw("server");
        let callers = root.raw("callers");
        let providers = root.raw("auth_providers");
        let externals = root.raw("external_credentials");
        let nameds = root.raw("named_credentials");
        self.finish(root, TABLES, &|_| None);

        let mut list = Vec::new();
        let mut tokens = Vec::new();
        for (name, t) in self.entries("callers", "caller", callers) {
            if let Some(caller) = self.caller(&name, t, &mut tokens) {
                list.push(caller);
            }
        }
        let callers = list;

        let server = server.and_then(|value| self.table("[server]".into(), value));
        let server = self.server(server, !callers.is_empty());

        // Every defined name is known, valid or not, so that a named credential pointing at
        // a broken external credential is not told it does not exist.
        let mut providers_by_name = HashMap::new();
        let mut auth_providers = Vec::new();
        for (name, t) in self.entries("auth_providers", "auth provider", providers) {
            let provider = self.auth_provider(&name, t).map(Arc::new);
            if let Some(p) = &provider {
                auth_providers.push(p.clone());
            }
            providers_by_name.insert(name.into_inner(), provider);
        }
        let mut externals_by_name: HashMap<String, Option<Arc<_>>> = HashMap::new();
        let mut external_credentials = Vec::new();
        for (name, t) in self.entries("external_credentials", "external credential", externals) {
            let ec = self
                .external_credential(&name, t, &providers_by_name)
                .map(Arc::new);
            if let Some(ec) = &ec {
                external_credentials.push(ec.clone());
            }
            externals_by_name.insert(name.into_inner(), ec);
        }

        let mut named_credentials = HashMap::new();
        for (name, t) in self.entries("named_credentials", "named credential", nameds) {
            if let Some(nc) = self.named_credential(&name, t, &externals_by_name) {
                named_credentials.insert(nc.name.clone(), Arc::new(nc));
            }
        }

        Some(Config {
            path: path.to_owned(),
            server: server?,
            auth_providers,
            external_credentials,
            named_credentials,
            callers,
            has_literal_secrets: self.literal_secrets,
            files: std::mem::take(&mut self.files),
            secret_files: std::mem::take(&mut self.secret_files),
        })
    }

    /// The `NAME = { ... }` entries of a top-level table, with checked names, each as a
    /// table of its own.
    fn entries<'i>(
        &mut self,
        key: &str,
        what: &str,
        value: Option<Spanned<DeValue<'i>>>,
    ) -> Vec<(Spanned<String>, Table<'i>)> {
        let Some(value) = value else { return Vec::new() };
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.problem(Some(span), format!("`{key}` must be a table of named entries"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, value) in table {
            let name = Spanned::new(k.span(), k.get_ref().to_string());
            if let Err(why) = check_name(name.get_ref()) {
                self.problem(
                    Some(name.span()),
                    format!("{what} name `{}` {why}", name.get_ref()),
                );
            }
            let context = format!("{what} `{}`", name.get_ref());
            if let Some(t) = self.table(context, value) {
                out.push((name, t));
            }
        }
        out
    }
}
