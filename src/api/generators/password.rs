//! `Password` (ESO `generators/v1/password`): a random password per secret key.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn default_length() -> usize {
    24
}

/// How the password is written into the Secret.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PasswordEncoding {
    Base64,
    Base64url,
    Base32,
    Hex,
    #[default]
    Raw,
}

fn default_encoding() -> Option<PasswordEncoding> {
    Some(PasswordEncoding::Raw)
}

/// A random password from letters, digits and symbols.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "generators.external-secrets.io",
    version = "v1alpha1",
    kind = "Password",
    namespaced,
    category = "external-secrets",
    category = "external-secrets-generators",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSpec {
    /// Number of characters (default 24).
    #[serde(default = "default_length")]
    pub length: usize,
    /// Number of digits; default a quarter of the length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits: Option<usize>,
    /// Number of symbols; default a quarter of the length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbols: Option<usize>,
    /// The symbols to choose from; default ``~!@#$%^&*()_+`-={}|[]\:"<>?,./``.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_characters: Option<String>,
    /// No upper-case letters.
    #[serde(default)]
    pub no_upper: bool,
    /// Whether a character may appear more than once.
    #[serde(default)]
    pub allow_repeat: bool,
    #[serde(default = "default_encoding", skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_encoding")]
    pub encoding: Option<PasswordEncoding>,
    /// The Secret keys to fill, each with its own password; default `["password"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_keys: Option<Vec<String>>,
}

impl Default for PasswordSpec {
    fn default() -> Self {
        PasswordSpec {
            length: default_length(),
            digits: None,
            symbols: None,
            symbol_characters: None,
            no_upper: false,
            allow_repeat: false,
            encoding: default_encoding(),
            secret_keys: None,
        }
    }
}
