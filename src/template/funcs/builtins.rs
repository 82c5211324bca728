//! Go's builtins that can produce large output (`print`, `printf`, `println`, `html`,
//! `js`, `urlquery`), bounded and then run by gotmpl's own builtins, and `index` with
//! ESO's reading of a missing key.

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{Template, Value, ValueFunc};

use super::args::{Plain, R, s, to_i64};
use super::bounds::{guard_estimate, size};
use crate::template::budget::Budget;

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("print", |a| {
            let est = a.iter().map(size).fold(a.len(), usize::saturating_add);
            guard_estimate("print", est)?;
            builtin("print", a)
        }),
        ("println", |a| {
            let est = a.iter().map(size).fold(a.len() + 1, usize::saturating_add);
            guard_estimate("println", est)?;
            builtin("println", a)
        }),
        ("printf", |a| {
            guard_estimate("printf", printf_estimate(a))?;
            builtin("printf", a)
        }),
        ("html", |a| builtin("html", a)),
        ("js", |a| builtin("js", a)),
        ("urlquery", |a| builtin("urlquery", a)),
    ]
}

/// `index`, counted against `budget`. ESO's data is a map[string]string: `index` of a
/// key it lacks is "" in Go, where gotmpl (like Go for map[string]any, e.g. a dict)
/// gives <no value>.
pub(super) fn index(budget: &Arc<Budget>) -> ValueFunc {
    let b = Arc::clone(budget);
    Arc::new(move |args: &[Value]| {
        b.step()?;
        let Some((first, indices)) = args.split_first() else {
            return Err(gotmpl::TemplateError::Exec(
                "wrong number of args for index: want at least 1 got 0".into(),
            ));
        };
        let mut v = first.clone();
        for (i, idx) in indices.iter().enumerate() {
            if i == 0
                && b.is_root(&v)
                && let (Value::Map(m), Value::String(k)) = (&v, idx)
                && !m.contains_key(k.as_ref())
            {
                v = Value::String("".into());
                continue;
            }
            v = v.index(idx)?;
        }
        Ok(v)
    })
}

/// Upper bound of printf's output: the format, the arguments, and every width or
/// precision written in the format or taken from an argument with `*`.
fn printf_estimate(a: &[Value]) -> usize {
    let Some(Value::String(f)) = a.first() else {
        return a.iter().map(size).fold(0, usize::saturating_add);
    };
    let mut est = f.len();
    for x in &a[1..] {
        est = est.saturating_add(size(x));
    }
    let mut digits = String::new();
    for c in f.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if !digits.is_empty() {
            est = est.saturating_add(digits.parse::<usize>().unwrap_or(usize::MAX));
            digits.clear();
        }
    }
    if f.contains('*') {
        for x in &a[1..] {
            if let Value::Int(_) | Value::Uint(_) = x {
                est = est.saturating_add(to_i64(x).unsigned_abs() as usize);
            }
        }
    }
    est
}

/// Runs one of gotmpl's own builtins on already evaluated arguments.
fn builtin(name: &str, a: &[Value]) -> R {
    let mut src = format!("{{{{{name}");
    let mut data = BTreeMap::new();
    for (i, v) in a.iter().enumerate() {
        src.push_str(&format!(" .a{i}"));
        data.insert(format!("a{i}"), v.clone());
    }
    src.push_str("}}");
    let out = Template::new(name)
        .parse(&src)?
        .execute_to_string(&Value::from(data))?;
    Ok(s(out))
}
