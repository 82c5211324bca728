//! sprig's integer math: `add`, `add1`, `sub`, `mul`, `div`, `mod`, `max`, `min`, with
//! Go's wrapping arithmetic.

use gotmpl::Value;

use super::args::{Plain, exec, to_i64, want};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("add", |a| {
            Ok(Value::Int(
                a.iter().fold(0i64, |acc, v| acc.wrapping_add(to_i64(v))),
            ))
        }),
        ("add1", |a| {
            want(a, "add1", 1, 1)?;
            Ok(Value::Int(to_i64(&a[0]).wrapping_add(1)))
        }),
        ("sub", |a| {
            want(a, "sub", 2, 2)?;
            Ok(Value::Int(to_i64(&a[0]).wrapping_sub(to_i64(&a[1]))))
        }),
        ("mul", |a| {
            want(a, "mul", 1, usize::MAX)?;
            Ok(Value::Int(
                a.iter().fold(1i64, |acc, v| acc.wrapping_mul(to_i64(v))),
            ))
        }),
        ("div", |a| {
            want(a, "div", 2, 2)?;
            to_i64(&a[0])
                .checked_div(to_i64(&a[1]))
                .map(Value::Int)
                .ok_or_else(|| exec("div: integer divide by zero"))
        }),
        ("mod", |a| {
            want(a, "mod", 2, 2)?;
            to_i64(&a[0])
                .checked_rem(to_i64(&a[1]))
                .map(Value::Int)
                .ok_or_else(|| exec("mod: integer divide by zero"))
        }),
        ("max", |a| {
            want(a, "max", 1, usize::MAX)?;
            Ok(Value::Int(a.iter().map(to_i64).max().unwrap_or(0)))
        }),
        ("min", |a| {
            want(a, "min", 1, usize::MAX)?;
            Ok(Value::Int(a.iter().map(to_i64).min().unwrap_or(0)))
        }),
    ]
}
