//! Templates in an ExternalSecret: how much of them admission parses, and which keys they may
//! write.

use crate::api::{ExternalSecretSpec, ExternalSecretTemplate};
use crate::vault::paths::quoted;

use super::Problem;
use super::names::{NAME, QUALIFIED, is_name, is_qualified_name};

/// All the templates of one ExternalSecret together may be this long: all they render is one
/// Secret, which holds 1 MiB.
pub const MAX_TEMPLATES_LEN: usize = 1 << 20;
/// Actions (`{{ ... }}`) all the templates of one ExternalSecret may have together. Parsing
/// takes time in proportion to them (some 5 µs each in a debug build, where a MiB of them takes
/// over half a second), not to the text around them; real templates have dozens.
pub const MAX_TEMPLATE_ACTIONS: usize = 10_000;

/// Every template source of an ExternalSecret.
fn template_sources(spec: &ExternalSecretSpec) -> impl Iterator<Item = &str> {
    let tpl = spec.target.as_ref().and_then(|t| t.template.as_ref());
    let data = tpl
        .into_iter()
        .flat_map(|t| t.data.iter().flatten().map(|(_, v)| v));
    let meta = tpl
        .and_then(|t| t.metadata.as_ref())
        .into_iter()
        .flat_map(|m| {
            m.labels
                .iter()
                .flatten()
                .chain(m.annotations.iter().flatten())
                .map(|(_, v)| v)
        });
    let literals = tpl.into_iter().flat_map(|t| {
        t.template_from
            .iter()
            .flatten()
            .filter_map(|f| f.literal.as_ref())
    });
    let transforms = spec.data_from.iter().flatten().flat_map(|df| {
        df.rewrite
            .iter()
            .flatten()
            .filter_map(|r| r.transform.as_ref().map(|t| &t.template))
    });
    data.chain(meta)
        .chain(literals)
        .chain(transforms)
        .map(String::as_str)
}

/// Whether an ExternalSecret's templates are small enough to parse; a problem if not.
pub(super) fn templates_fit(spec: &ExternalSecretSpec) -> Result<(), Problem> {
    let (mut len, mut actions) = (0usize, 0usize);
    for src in template_sources(spec) {
        len += src.len();
        actions += src.matches("{{").count();
    }
    const WHAT: &str = "the templates (spec.target.template and the rewrite transforms)";
    if len > MAX_TEMPLATES_LEN {
        return Err(Problem::new(
            "spec",
            format!(
                "{WHAT} are {len} bytes long together; at most {MAX_TEMPLATES_LEN} are accepted"
            ),
        ));
    }
    if actions > MAX_TEMPLATE_ACTIONS {
        return Err(Problem::new(
            "spec",
            format!(
                "{WHAT} have {actions} actions together; at most {MAX_TEMPLATE_ACTIONS} are accepted"
            ),
        ));
    }
    Ok(())
}

/// The keys a template writes, and literal label values, as the API server will check them on
/// the target Secret: a Secret that can never be written is refused now, not at every sync.
pub(super) fn template_keys(p: &mut Vec<Problem>, t: &ExternalSecretTemplate) {
    const AT: &str = "spec.target.template";
    for k in t.data.iter().flatten().map(|(k, _)| k) {
        if !crate::vault::values::is_valid_secret_key(k) {
            p.push(Problem::new(
                format!("{AT}.data"),
                format!(
                    "key {} is not a valid Secret key (letters, digits, '-', '.' and '_'; at most 253 characters)",
                    quoted(k)
                ),
            ));
        }
    }
    let Some(m) = &t.metadata else { return };
    for (k, v) in m.labels.iter().flatten() {
        if !is_qualified_name(k) {
            p.push(Problem::new(
                format!("{AT}.metadata.labels"),
                format!("key {} is not a valid label key ({QUALIFIED})", quoted(k)),
            ));
        } else if !v.is_empty() && !v.contains("{{") && !is_name(v) {
            p.push(Problem::new(
                format!("{AT}.metadata.labels"),
                format!(
                    "the value of {} is not a valid label value ({NAME}): {}",
                    quoted(k),
                    quoted(v)
                ),
            ));
        }
    }
    // The API server's own rule for finalizer names; the first bad one is enough to name.
    if let Some(f) = m
        .finalizers
        .iter()
        .flatten()
        .find(|f| !is_qualified_name(f))
    {
        p.push(Problem::new(
            format!("{AT}.metadata.finalizers"),
            format!("{} is not a valid finalizer name ({QUALIFIED})", quoted(f)),
        ));
    }
    for k in m.annotations.iter().flatten().map(|(k, _)| k) {
        if !is_qualified_name(k) {
            p.push(Problem::new(
                format!("{AT}.metadata.annotations"),
                format!(
                    "key {} is not a valid annotation key ({QUALIFIED})",
                    quoted(k)
                ),
            ));
        }
    }
}
