//! The validating webhook's static rules: pure functions over the typed objects, each problem
//! naming the field path and the offending value — never a secret value. One file per kind
//! ([`external_secret`], [`cluster_external_secret`], [`store`]), and apart the limits they share: regular expressions
//! ([`regex`]), templates ([`templates`]), Kubernetes names ([`names`]).
//!
//! ESO's own webhook rules come first in each function, vaultgate's stricter ones after.

mod cluster_external_secret;
mod external_secret;
mod generators;
mod names;
mod push_secret;
mod regex;
mod store;
mod templates;
#[cfg(test)]
mod tests;

pub use cluster_external_secret::{ES_SPEC, cluster_external_secret, external_secret_of};
pub use external_secret::external_secret;
pub use generators::{cluster_generator, password, ssh_key, vault_dynamic_secret};
pub use push_secret::{cluster_push_secret, push_secret};
pub use regex::{MAX_REGEX_LEN, REGEX_BUDGET, RegexBudget, regex_compiles};
pub use store::{check_server, cluster_secret_store, secret_store, store_notes};
pub use templates::{MAX_TEMPLATE_ACTIONS, MAX_TEMPLATES_LEN};

use std::fmt;

/// One reason to refuse an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path, e.g. `spec.data[0].remoteRef.key`.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The message for fields accepted for compatibility but not implemented.
pub const NOT_SUPPORTED: &str = "not supported by vaultgate";

/// Most problems one admission message lists; the others are only counted.
pub const MAX_LISTED: usize = 20;
/// Longest text of one problem in an admission message.
const MAX_PROBLEM_TEXT: usize = 1024;

/// Joins problems into one admission message of a readable size: the first [`MAX_LISTED`],
/// each cut at 1 KiB, then how many more there are.
pub fn join(problems: &[Problem]) -> String {
    let mut parts: Vec<String> = problems
        .iter()
        .take(MAX_LISTED)
        .map(|p| {
            let text = p.to_string();
            match crate::text::prefix(&text, MAX_PROBLEM_TEXT) {
                cut if cut.len() < text.len() => format!("{cut}..."),
                _ => text,
            }
        })
        .collect();
    if problems.len() > MAX_LISTED {
        parts.push(format!("and {} more problems", problems.len() - MAX_LISTED));
    }
    parts.join("; ")
}
