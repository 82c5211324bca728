//! Kubernetes names: label values, label and annotation keys.

pub(super) const NAME: &str =
    "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
pub(super) const QUALIFIED: &str = "a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, optionally after a DNS subdomain prefix and '/'";

/// A Kubernetes name part (label value, the name of a label key): `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`,
/// at most 63 characters.
pub(super) fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label or annotation key: a name, optionally after a DNS subdomain and `/`.
pub(super) fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        None => is_name(s),
        Some((prefix, name)) => {
            is_name(name)
                && !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|label| {
                    let dns = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
                    let b = label.as_bytes();
                    !b.is_empty()
                        && b.len() <= 63
                        && b.first().is_some_and(dns)
                        && b.last().is_some_and(dns)
                        && b.iter().all(|c| dns(c) || *c == b'-')
                })
        }
    }
}
