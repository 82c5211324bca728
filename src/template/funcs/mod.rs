//! The template functions ESO exposes: sprig's (minus `env` / `expandenv`) with sprig's
//! argument order and results, ESO's own (`toYaml`, `fromYaml`, PEM, key and PKCS#12
//! functions), and Go's builtins that can produce large output. One file per sprig
//! category; this file holds the table that registers them all.
//!
//! Every function spends a budget step and may neither take nor return a value larger
//! than the output cap, so a template cannot grow a value without bound in a loop.

mod aes_cbc;
mod args;
mod bounds;
mod builtins;
mod case_wrap;
mod certgen;
mod conversion;
mod dates;
mod defaults;
mod dicts;
mod encoding;
mod floats;
mod go_duration;
mod go_runes;
mod go_time;
mod go_url;
mod hashes;
mod json_yaml;
mod keygen;
mod keys;
mod list_extras;
mod lists;
mod math;
mod paths;
mod pem;
mod pkcs12;
mod random;
mod reflection;
mod regex;
mod semver;
mod sequences;
mod strings;
mod url;

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use gotmpl::{FuncMap, Value};

use super::budget::{Budget, MAX_OUTPUT};
use args::{Plain, limit};
use bounds::{MAX_DEPTH, fits};

/// Go's own builtins, which gotmpl provides; `index` is replaced (see `builtins`), and `slice`
/// is sprig's (registered functions win over builtins, in ESO as here).
const GO_BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "js", "len", "not", "or", "print", "printf", "println",
    "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
];

/// Names that run an already registered function.
const ALIASES: &[(&str, &str)] = &[
    ("biggest", "max"),
    ("mustAppend", "append"),
    ("mustPush", "push"),
    ("mustPrepend", "prepend"),
    ("mustFirst", "first"),
    ("mustRest", "rest"),
    ("mustLast", "last"),
    ("mustInitial", "initial"),
    ("mustReverse", "reverse"),
    ("mustUniq", "uniq"),
    ("mustHas", "has"),
    ("mustCompact", "compact"),
    // sprig's `slice` panics where `mustSlice` returns the error: a failed template either way.
    ("slice", "mustSlice"),
];

/// The registration table: every category's functions, then the aliases.
fn plain_functions() -> Vec<(&'static str, Plain)> {
    let mut table: Vec<(&'static str, Plain)> = [
        strings::functions(),
        case_wrap::functions(),
        lists::functions(),
        list_extras::functions(),
        dicts::functions(),
        math::functions(),
        floats::functions(),
        sequences::functions(),
        reflection::functions(),
        conversion::functions(),
        dates::functions(),
        defaults::functions(),
        encoding::functions(),
        json_yaml::functions(),
        regex::functions(),
        hashes::functions(),
        aes_cbc::functions(),
        paths::functions(),
        pem::functions(),
        keys::functions(),
        keygen::functions(),
        certgen::functions(),
        pkcs12::functions(),
        random::functions(),
        url::functions(),
        semver::functions(),
        builtins::functions(),
    ]
    .concat();
    for (alias, of) in ALIASES {
        if let Some(&(_, f)) = table.iter().find(|(n, _)| n == of) {
            table.push((alias, f));
        }
    }
    table
}

/// Whether `name` is a registered function, for the parse-time check: the names come
/// from the same table that [`function_map`] registers.
fn registered(name: &str) -> bool {
    static NAMES: LazyLock<BTreeSet<&'static str>> =
        LazyLock::new(|| plain_functions().iter().map(|(n, _)| *n).collect());
    NAMES.contains(name)
}

/// Names every template may call: Go's builtins and the sprig/ESO set.
pub(super) fn known(name: &str) -> bool {
    GO_BUILTINS.contains(&name) || registered(name)
}

/// The function map for one execution, every function bounded by `budget`.
pub(super) fn function_map(budget: &Arc<Budget>) -> FuncMap {
    let mut m = FuncMap::new();
    for (name, f) in plain_functions() {
        let b = Arc::clone(budget);
        m.insert(
            name.to_string(),
            Arc::new(move |args: &[Value]| {
                b.step()?;
                for a in args {
                    if !fits(a, MAX_OUTPUT) {
                        return Err(limit(format!(
                            "{name} was given a value larger than {MAX_OUTPUT} bytes or nested deeper than {MAX_DEPTH}"
                        )));
                    }
                }
                let out = f(args)?;
                if !fits(&out, MAX_OUTPUT) {
                    return Err(limit(format!(
                        "{name} produced a value larger than {MAX_OUTPUT} bytes or nested deeper than {MAX_DEPTH}"
                    )));
                }
                Ok(out)
            }),
        );
    }
    m.insert("index".to_string(), builtins::index(budget));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_is_registered_once() {
        let mut names: Vec<&str> = plain_functions().iter().map(|(n, _)| *n).collect();
        let all = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all, "a function name is registered twice");
        assert!(registered("pkcs12key") && registered("ext") && !registered("env"));
    }
}
