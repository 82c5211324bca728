//! sprig's default and flow-control functions: `default`, `empty`, `coalesce`, `all`,
//! `any`, `ternary`, `fail`.

use gotmpl::Value;

use super::args::{Plain, empty, exec, strv, want, wrong_type};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("default", |a| {
            want(a, "default", 1, 2)?;
            Ok(match a.get(1) {
                Some(v) if !empty(v) => v.clone(),
                _ => a[0].clone(),
            })
        }),
        ("empty", |a| {
            want(a, "empty", 1, 1)?;
            Ok(Value::Bool(empty(&a[0])))
        }),
        ("coalesce", |a| {
            Ok(a.iter().find(|v| !empty(v)).cloned().unwrap_or(Value::Nil))
        }),
        ("all", |a| Ok(Value::Bool(a.iter().all(|v| !empty(v))))),
        ("any", |a| Ok(Value::Bool(a.iter().any(|v| !empty(v))))),
        ("ternary", |a| {
            want(a, "ternary", 3, 3)?;
            match &a[2] {
                Value::Bool(true) => Ok(a[0].clone()),
                Value::Bool(false) => Ok(a[1].clone()),
                other => Err(wrong_type("ternary", "bool", other)),
            }
        }),
        ("fail", |a| {
            want(a, "fail", 1, 1)?;
            Err(exec(format!("fail: {}", strv(&a[0], "fail")?)))
        }),
    ]
}
