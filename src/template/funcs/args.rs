//! Reading arguments and building results the way sprig's Go code does, shared by
//! every function file.

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{TemplateError, Value};

use crate::template::budget::LIMIT_MARK;

/// What every function returns.
pub(super) type R = gotmpl::Result<Value>;
/// A function of its arguments alone; the table in `mod.rs` adds the budget and bounds.
pub(super) type Plain = fn(&[Value]) -> R;

/// A string value.
pub(super) fn s(v: impl Into<Arc<str>>) -> Value {
    Value::String(v.into())
}

/// A function's error, failing the template.
pub(super) fn exec(msg: impl Into<String>) -> TemplateError {
    TemplateError::Exec(msg.into())
}

/// A bound was hit; the engine reports it as `EngineError::Limit`.
pub(super) fn limit(msg: String) -> TemplateError {
    TemplateError::Exec(format!("{LIMIT_MARK}{msg}"))
}

/// Go's message for an argument of the wrong type.
pub(super) fn wrong_type(name: &str, expected: &str, got: &Value) -> TemplateError {
    exec(format!(
        "{name}: wrong type for value; expected {expected}; got {}",
        got.type_name()
    ))
}

/// Go's check of the number of arguments, with its message.
pub(super) fn want(a: &[Value], name: &str, min: usize, max: usize) -> gotmpl::Result<()> {
    if a.len() < min || a.len() > max {
        let expected = if min == max {
            min.to_string()
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(exec(format!(
            "wrong number of args for {name}: want {expected} got {}",
            a.len()
        )));
    }
    Ok(())
}

pub(super) fn strv<'a>(v: &'a Value, name: &str) -> gotmpl::Result<&'a str> {
    v.as_str().ok_or_else(|| wrong_type(name, "string", v))
}

pub(super) fn int(v: &Value, name: &str) -> gotmpl::Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Uint(u) => i64::try_from(*u).map_err(|_| exec(format!("{name}: number too large"))),
        other => Err(wrong_type(name, "int", other)),
    }
}

pub(super) fn map<'a>(v: &'a Value, name: &str) -> gotmpl::Result<&'a BTreeMap<Arc<str>, Value>> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(wrong_type(name, "map[string]interface {}", other)),
    }
}

pub(super) fn owned_map(v: &Value, name: &str) -> gotmpl::Result<BTreeMap<Arc<str>, Value>> {
    map(v, name).cloned()
}

pub(super) fn list<'a>(v: &'a Value, name: &str) -> gotmpl::Result<&'a [Value]> {
    match v {
        Value::List(l) => Ok(l),
        other => Err(wrong_type(name, "list", other)),
    }
}

/// sprig's `strval`: strings as they are, everything else as Go's `%v`.
pub(super) fn strval(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// sprig's `strslice`: a list's non-nil items as strings; nil is empty; one value alone.
pub(super) fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l
            .iter()
            .filter(|x| !matches!(x, Value::Nil))
            .map(strval)
            .collect(),
        Value::Nil => Vec::new(),
        other => vec![strval(other)],
    }
}

/// sprig's `empty`: the zero value of its type.
pub(super) fn empty(v: &Value) -> bool {
    match v {
        Value::Nil => true,
        Value::Bool(b) => !b,
        Value::Int(i) => *i == 0,
        Value::Uint(u) => *u == 0,
        Value::Float(f) => *f == 0.0,
        Value::String(s) => s.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        _ => false,
    }
}

/// cast.ToInt64 as sprig uses it: numbers, numeric strings, bools; anything else is 0.
pub(super) fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Uint(u) => *u as i64,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// A function of one string argument that returns a string.
pub(super) fn one(a: &[Value], name: &str, f: impl Fn(&str) -> String) -> R {
    want(a, name, 1, 1)?;
    Ok(s(f(strv(&a[0], name)?)))
}
