//! Every secret a loaded config holds, so that what the token endpoint says can be searched
//! for them before anyone sees it (`token::redact`).

use super::{Config, OAuthClient, PrincipalKeys};
use crate::secret::Secret;

impl Config {
    /// Client secrets (current and staged, of principals and auth providers), Basic
    /// usernames and passwords, then caller tokens. Client ids are not secrets: they appear
    /// in logs and in `check` on purpose. Private keys never reach a token endpoint, so it
    /// cannot echo them; the assertions signed with them are kept out of its text where
    /// they are sent.
    pub fn secrets(&self) -> Vec<&Secret> {
        fn client(c: &OAuthClient) -> [Option<&Secret>; 2] {
            [c.client_secret.as_ref(), c.next_client_secret.as_ref()]
        }
        let providers = self.auth_providers.iter().flat_map(|p| client(p.client()));
        let principals = self.external_credentials.iter().flat_map(|ec| &ec.principals);
        let keys = principals.flat_map(|p| match &p.keys {
            PrincipalKeys::Client(c) => client(c).to_vec(),
            PrincipalKeys::Basic { username, password } => vec![Some(username), Some(password)],
            PrincipalKeys::Custom { parameters } => parameters.iter().map(|(_, v)| Some(v)).collect(),
            PrincipalKeys::Aws {
                secret_access_key,
                session_token,
                ..
            } => vec![Some(secret_access_key), session_token.as_ref()],
            PrincipalKeys::Provider | PrincipalKeys::None => vec![],
        });
        providers
            .chain(keys)
            .flatten()
            .chain(self.callers.iter().filter_map(|c| c.token.as_ref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn every_kind_of_secret() {
        let text = r#"
[callers.App]
token = "caller-token-0123456789"
permission_sets = ["Read"]

[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "https://idp.example/token"

[[external_credentials.Idp.principals]]
name = "Reader"
sequence = 1
permission_sets = ["Read"]
client_id = "reader-client"
client_secret = { env = "READER_SECRET" }

[external_credentials.Legacy]
protocol = "basic"

[[external_credentials.Legacy.principals]]
name = "Batch"
sequence = 1
permission_sets = ["Read"]
username = "batch-user"
password = "batch-password"

[external_credentials.Open]
protocol = "none"

[[external_credentials.Open.principals]]
name = "Anyone"
sequence = 1
permission_sets = ["Read"]
"#;
        let env = |var: &str| (var == "READER_SECRET").then(|| "reader-secret".to_owned());
        let config = Config::from_toml(Path::new("/nowhere/callout.toml"), text, &env).unwrap();
        let mut secrets: Vec<&str> = config.secrets().into_iter().map(Secret::expose).collect();
        secrets.sort_unstable();
        assert_eq!(
            secrets,
            [
                "batch-password",
                "batch-user",
                "caller-token-0123456789",
                "reader-secret"
            ]
        );
    }
}
