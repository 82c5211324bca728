//! sprig's dictionary functions: `dict`, `get`, `set`, `unset`, `hasKey`, `keys`,
//! `values`, `pluck`, `pick`, `omit` and the `merge` family.

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::Value;

use super::args::{Plain, R, empty, map, owned_map, s, strv, strval, want};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("dict", |a| {
            let mut m = BTreeMap::new();
            for pair in a.chunks(2) {
                let v = pair.get(1).cloned().unwrap_or_else(|| s(String::new()));
                m.insert(strval(&pair[0]), v);
            }
            Ok(Value::from(m))
        }),
        ("get", |a| {
            want(a, "get", 2, 2)?;
            let m = map(&a[0], "get")?;
            Ok(m.get(strv(&a[1], "get")?)
                .cloned()
                .unwrap_or_else(|| s(String::new())))
        }),
        ("set", |a| {
            want(a, "set", 3, 3)?;
            let mut m = owned_map(&a[0], "set")?;
            m.insert(strv(&a[1], "set")?.into(), a[2].clone());
            Ok(Value::Map(Arc::new(m)))
        }),
        ("unset", |a| {
            want(a, "unset", 2, 2)?;
            let mut m = owned_map(&a[0], "unset")?;
            m.remove(strv(&a[1], "unset")?);
            Ok(Value::Map(Arc::new(m)))
        }),
        ("hasKey", |a| {
            want(a, "hasKey", 2, 2)?;
            Ok(Value::Bool(
                map(&a[0], "hasKey")?.contains_key(strv(&a[1], "hasKey")?),
            ))
        }),
        ("keys", |a| {
            let mut out = Vec::new();
            for d in a {
                out.extend(map(d, "keys")?.keys().map(|k| Value::String(k.clone())));
            }
            Ok(Value::List(out.into()))
        }),
        ("values", |a| {
            want(a, "values", 1, 1)?;
            Ok(Value::List(
                map(&a[0], "values")?.values().cloned().collect(),
            ))
        }),
        ("pluck", |a| {
            want(a, "pluck", 1, usize::MAX)?;
            let key = strv(&a[0], "pluck")?;
            let mut out = Vec::new();
            for d in &a[1..] {
                if let Some(v) = map(d, "pluck")?.get(key) {
                    out.push(v.clone());
                }
            }
            Ok(Value::List(out.into()))
        }),
        ("pick", |a| {
            want(a, "pick", 1, usize::MAX)?;
            let m = map(&a[0], "pick")?;
            let mut out = BTreeMap::new();
            for k in &a[1..] {
                let k = strv(k, "pick")?;
                if let Some((k, v)) = m.get_key_value(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
            Ok(Value::Map(Arc::new(out)))
        }),
        ("omit", |a| {
            want(a, "omit", 1, usize::MAX)?;
            let mut m = owned_map(&a[0], "omit")?;
            for k in &a[1..] {
                m.remove(strv(k, "omit")?);
            }
            Ok(Value::Map(Arc::new(m)))
        }),
        ("merge", |a| merge("merge", a, false)),
        ("mustMerge", |a| merge("mustMerge", a, false)),
        ("mergeOverwrite", |a| merge("mergeOverwrite", a, true)),
        ("mustMergeOverwrite", |a| {
            merge("mustMergeOverwrite", a, true)
        }),
    ]
}

/// mergo's Merge (keep what `dst` has, fill the rest, recurse into maps) or
/// MergeWithOverwrite (`src` wins unless its value is empty).
fn merge(name: &str, a: &[Value], overwrite: bool) -> R {
    want(a, name, 1, usize::MAX)?;
    let mut dst = owned_map(&a[0], name)?;
    for src in &a[1..] {
        merge_into(&mut dst, map(src, name)?, overwrite);
    }
    Ok(Value::Map(Arc::new(dst)))
}

fn merge_into(
    dst: &mut BTreeMap<Arc<str>, Value>,
    src: &BTreeMap<Arc<str>, Value>,
    overwrite: bool,
) {
    for (k, sv) in src {
        match dst.get_mut(k) {
            Some(Value::Map(dm)) if matches!(sv, Value::Map(_)) => {
                if let Value::Map(sm) = sv {
                    let mut inner = dm.as_ref().clone();
                    merge_into(&mut inner, sm, overwrite);
                    *dm = Arc::new(inner);
                }
            }
            Some(dv) => {
                if empty(dv) || (overwrite && !empty(sv)) {
                    *dv = sv.clone();
                }
            }
            None => {
                dst.insert(k.clone(), sv.clone());
            }
        }
    }
}
