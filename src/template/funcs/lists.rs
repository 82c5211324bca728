//! sprig's list functions: `list`, `first`, `rest`, `append`, `concat`, `uniq`, … (the
//! `must…` forms are aliases, see the table in `mod.rs`).

use gotmpl::Value;

use super::args::{Plain, R, empty, list, want};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("list", |a| Ok(Value::List(a.iter().cloned().collect()))),
        ("tuple", |a| Ok(Value::List(a.iter().cloned().collect()))),
        ("first", |a| {
            want(a, "first", 1, 1)?;
            Ok(list(&a[0], "first")?.first().cloned().unwrap_or(Value::Nil))
        }),
        ("last", |a| {
            want(a, "last", 1, 1)?;
            Ok(list(&a[0], "last")?.last().cloned().unwrap_or(Value::Nil))
        }),
        ("rest", |a| {
            want(a, "rest", 1, 1)?;
            let l = list(&a[0], "rest")?;
            Ok(Value::List(l.iter().skip(1).cloned().collect()))
        }),
        ("initial", |a| {
            want(a, "initial", 1, 1)?;
            let l = list(&a[0], "initial")?;
            Ok(Value::List(
                l.iter().take(l.len().saturating_sub(1)).cloned().collect(),
            ))
        }),
        ("append", push),
        ("push", push),
        ("prepend", |a| {
            want(a, "prepend", 2, 2)?;
            let mut l = vec![a[1].clone()];
            l.extend(list(&a[0], "prepend")?.iter().cloned());
            Ok(Value::List(l.into()))
        }),
        ("concat", |a| {
            let mut l = Vec::new();
            for v in a {
                l.extend(list(v, "concat")?.iter().cloned());
            }
            Ok(Value::List(l.into()))
        }),
        ("has", |a| {
            want(a, "has", 2, 2)?;
            Ok(Value::Bool(
                list(&a[1], "has")?.iter().any(|v| same(v, &a[0])),
            ))
        }),
        ("uniq", |a| {
            want(a, "uniq", 1, 1)?;
            let mut out: Vec<Value> = Vec::new();
            for v in list(&a[0], "uniq")?.iter() {
                if !out.iter().any(|o| same(o, v)) {
                    out.push(v.clone());
                }
            }
            Ok(Value::List(out.into()))
        }),
        ("compact", |a| {
            want(a, "compact", 1, 1)?;
            Ok(Value::List(
                list(&a[0], "compact")?
                    .iter()
                    .filter(|v| !empty(v))
                    .cloned()
                    .collect(),
            ))
        }),
        ("reverse", |a| {
            want(a, "reverse", 1, 1)?;
            Ok(Value::List(
                list(&a[0], "reverse")?.iter().rev().cloned().collect(),
            ))
        }),
    ]
}

fn same(a: &Value, b: &Value) -> bool {
    a == b
}

fn push(a: &[Value]) -> R {
    want(a, "append", 2, 2)?;
    let mut l: Vec<Value> = list(&a[0], "append")?.to_vec();
    l.push(a[1].clone());
    Ok(Value::List(l.into()))
}
