//! One test per problem message of `protocol = "custom"`, `"aws_sigv4"`, header formulas
//! and scope formulas.

use super::super::{PrincipalKeys, Protocol, describe};
use super::{load, problems};

const CUSTOM: &str = r#"
[external_credentials.Keys]
protocol = "custom"
headers = { "X-Api-Key" = "{!$Credential.Keys.api_key}" }

[[external_credentials.Keys.principals]]
name = "Live"
sequence = 1
permission_sets = ["Live"]
parameters = { api_key = "k-123" }

[named_credentials.Api]
url = "https://api.example"
external_credential = "Keys"
generate_authorization_header = false
"#;

fn one(text: &str, expected: &str) {
    let found = problems(text);
    assert_eq!(found.len(), 1, "expected only {expected:?}, got {found:#?}");
    assert!(
        found[0].contains(expected),
        "expected {expected:?}, got {found:#?}"
    );
}

#[test]
fn a_custom_credential_loads_with_its_parameters_and_a_redacted_header() {
    let config = load(CUSTOM).unwrap();
    let ec = &config.external_credentials[0];
    assert!(matches!(ec.protocol, Protocol::Custom));
    let PrincipalKeys::Custom { parameters } = &ec.principals[0].keys else {
        panic!("custom keys")
    };
    assert_eq!(parameters[0].0, "api_key");
    assert!(config.secrets().iter().any(|s| s.expose() == "k-123"));
    let named = &config.named_credentials["Api"];
    assert_eq!(named.header_templates.len(), 1);
    assert!(named.header_templates[0].secret);
    let text = describe(&config);
    assert!(
        text.contains("header x-api-key: [formula with a secret, redacted]"),
        "{text}"
    );
    assert!(
        text.contains("parameters api_key") && !text.contains("k-123"),
        "{text}"
    );
}

#[test]
fn formula_problems_have_their_column_inside_the_value() {
    let found = problems(&CUSTOM.replace("{!$Credential.Keys.api_key}", "Key {!HMAK(\\\"x\\\")}"));
    assert_eq!(found.len(), 1, "{found:#?}");
    // `headers = { "X-Api-Key" = "Key {!HMAK`: the value opens at column 28, HMAK is at 34.
    assert!(found[0].starts_with("4:34: "), "{found:#?}");
    assert!(found[0].contains("unknown function `HMAK`"), "{found:#?}");
    assert!(found[0].contains("did you mean `HMAC`?"), "{found:#?}");
}

#[test]
fn merge_fields_must_have_a_value_for_the_credential() {
    one(
        &CUSTOM.replace("$Credential.Keys.api_key", "$Credential.Other.api_key"),
        "names external credential `Other`, but this one uses `Keys`",
    );
    one(
        &CUSTOM.replace("$Credential.Keys.api_key", "$Credential.Keys.missing"),
        "principal(s) Live have no parameter `missing`",
    );
    one(
        &CUSTOM.replace("$Credential.Keys.api_key", "$Credential.OAuthToken"),
        "`$Credential.OAuthToken` needs protocol = \"oauth2\", not \"custom\"",
    );
    one(
        &CUSTOM.replace("$Credential.Keys.api_key", "$Credential.Password"),
        "needs protocol = \"basic\"",
    );
}

#[test]
fn a_header_is_configured_once() {
    one(
        &CUSTOM.replace(
            "headers = { \"X-Api-Key\" = \"{!$Credential.Keys.api_key}\" }",
            "headers = { \"X-Api-Key\" = \"a\", \"x-api-key\" = \"b\" }",
        ),
        "header `x-api-key` is configured twice",
    );
    one(
        &CUSTOM.replace(
            "generate_authorization_header = false",
            "generate_authorization_header = false\nheaders = { \"X-API-KEY\" = \"mine\" }",
        ),
        "header `x-api-key` is also set by external credential `Keys`",
    );
    one(
        &CUSTOM.replace("\"X-Api-Key\" = \"{!", "\"X-Callout-User\" = \"{!"),
        "header `x-callout-user` is set by callout",
    );
}

#[test]
fn a_scope_formula_may_use_only_user_fields() {
    let base = r#"
[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "https://idp.example/token"
scope = 'SCOPE'

[[external_credentials.Idp.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Svc"]
client_id = "svc"
client_secret = "s"

[named_credentials.Api]
url = "https://api.example"
external_credential = "Idp"
"#;
    assert!(load(&base.replace("SCOPE", "{!\"role:\" & $User.Department}")).is_ok());
    one(
        &base.replace("SCOPE", "{!$Credential.OAuthToken}"),
        "scope can use only $User fields, not `$Credential.OAuthToken`",
    );
    one(
        &base.replace("SCOPE", "{!\"unterminated}"),
        "scope: unterminated string",
    );
}

/// One `aws_sigv4` external credential, principal `Svc`, named credential `Bucket`.
const AWS: &str = r#"
[external_credentials.Aws]
protocol = "aws_sigv4"
aws_region = "eu-west-1"
aws_service = "s3"

[[external_credentials.Aws.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Svc"]
access_key_id = "AKIDEXAMPLE"
secret_access_key = "secret"

[named_credentials.Bucket]
url = "https://bucket.s3.eu-west-1.amazonaws.com"
external_credential = "Aws"
"#;

#[test]
fn aws_sigv4_needs_its_region_service_and_keys() {
    let aws = AWS;
    let config = load(aws).unwrap();
    let text = describe(&config);
    assert!(
        text.contains("(aws_sigv4, region eu-west-1, service s3)"),
        "{text}"
    );
    assert!(
        text.contains("access key AKIDEXAMPLE") && !text.contains("secret"),
        "{text}"
    );
    one(
        &aws.replace("aws_service = \"s3\"\n", ""),
        "missing the key `aws_service`",
    );
    one(
        &aws.replace("secret_access_key = \"secret\"\n", ""),
        "missing the key `secret_access_key`",
    );
    one(
        &aws.replace(
            "access_key_id = \"AKIDEXAMPLE\"",
            "access_key_id = \"AKIDEXAMPLE\"\nclient_id = \"x\"",
        ),
        "`client_id` is a principal key of protocol = \"oauth2\", not of protocol = \"aws_sigv4\"",
    );
    one(
        &aws.replace(
            "aws_service = \"s3\"",
            "aws_service = \"s3\"\ntoken_url = \"https://x\"",
        ),
        "`token_url` applies only to protocol = \"oauth2\", not to protocol = \"aws_sigv4\"",
    );
    one(
        &CUSTOM.replace(
            "protocol = \"custom\"",
            "protocol = \"custom\"\naws_region = \"x\"",
        ),
        "`aws_region` applies only to protocol = \"aws_sigv4\", not to protocol = \"custom\"",
    );
}

#[test]
fn an_authorization_formula_needs_generate_authorization_header_false() {
    one(
        &CUSTOM
            .replace("\"X-Api-Key\"", "Authorization")
            .replace("generate_authorization_header = false\n", ""),
        "sets an `authorization` header, so this named credential needs generate_authorization_header = false",
    );
}

#[test]
fn an_aws_principal_may_assume_a_role_through_a_checked_sts_url() {
    let aws = AWS.replace(
        "secret_access_key = \"secret\"\n",
        "secret_access_key = \"secret\"\nrole_arn = \"arn:aws:iam::123456789012:role/reports\"\n",
    );
    let aws = aws.as_str();
    let config = load(aws).unwrap();
    assert!(describe(&config).contains("assumes role arn:aws:iam::123456789012:role/reports"));
    one(
        &aws.replace("role_arn =", "sts_url = \"http://sts.example.com/\"\nrole_arn ="),
        "sts_url",
    );
}
