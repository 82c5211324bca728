//! sprig's type conversions: `toString`, `toStrings`, `atoi`, `int`, `int64`.

use gotmpl::Value;

use super::args::{Plain, s, strslice, strv, strval, to_i64, want};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("toString", |a| {
            want(a, "toString", 1, 1)?;
            Ok(s(strval(&a[0])))
        }),
        ("toStrings", |a| {
            want(a, "toStrings", 1, 1)?;
            Ok(Value::List(strslice(&a[0]).into_iter().map(s).collect()))
        }),
        ("atoi", |a| {
            want(a, "atoi", 1, 1)?;
            Ok(Value::Int(strv(&a[0], "atoi")?.parse().unwrap_or(0)))
        }),
        ("int", |a| {
            want(a, "int", 1, 1)?;
            Ok(Value::Int(to_i64(&a[0])))
        }),
        ("int64", |a| {
            want(a, "int64", 1, 1)?;
            Ok(Value::Int(to_i64(&a[0])))
        }),
    ]
}
