//! sprig's reflection functions: `typeOf`, `typeIs`, `typeIsLike`, `kindOf`, `kindIs`,
//! `deepEqual`. Template values name the Go types they stand for: text is `string`,
//! numbers `int`, `uint64` or `float64`, lists `[]interface {}` and dicts
//! `map[string]interface {}` (what sprig's `list` and `dict` make).

use gotmpl::Value;

use super::args::{Plain, s, strv, want};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("typeOf", |a| {
            want(a, "typeOf", 1, 1)?;
            Ok(s(type_of(&a[0])))
        }),
        ("typeIs", |a| {
            want(a, "typeIs", 2, 2)?;
            Ok(Value::Bool(strv(&a[0], "typeIs")? == type_of(&a[1])))
        }),
        ("typeIsLike", |a| {
            want(a, "typeIsLike", 2, 2)?;
            let (target, t) = (strv(&a[0], "typeIsLike")?, type_of(&a[1]));
            Ok(Value::Bool(
                t == target || t.strip_prefix('*') == Some(target),
            ))
        }),
        ("kindOf", |a| {
            want(a, "kindOf", 1, 1)?;
            Ok(s(kind_of(&a[0])))
        }),
        ("kindIs", |a| {
            want(a, "kindIs", 2, 2)?;
            Ok(Value::Bool(strv(&a[0], "kindIs")? == kind_of(&a[1])))
        }),
        ("deepEqual", |a| {
            want(a, "deepEqual", 2, 2)?;
            // Same type and same contents, as reflect.DeepEqual: 1 and 1.0 differ.
            Ok(Value::Bool(a[0] == a[1]))
        }),
    ]
}

/// Go's `%T` of the value a template would hold.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Nil => "<nil>",
        Value::List(_) => "[]interface {}",
        Value::Map(_) => "map[string]interface {}",
        Value::Uint(_) => "uint64",
        Value::Function(_) => "func(...interface {}) (interface {}, error)",
        other => other.type_name(),
    }
}

/// Go's `reflect.Kind` name.
pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Nil => "invalid",
        Value::List(_) => "slice",
        Value::Map(_) => "map",
        Value::Uint(_) => "uint64",
        other => other.type_name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn call(name: &str, args: &[Value]) -> Value {
        let f = functions().into_iter().find(|(n, _)| *n == name).unwrap().1;
        f(args).unwrap()
    }

    #[test]
    fn sprig_reflection_cases() {
        // What sprig's reflection docs describe (Go's `%T` and `reflect.Kind` names), for
        // each kind of value a template holds.
        let list = Value::List(Arc::from(vec![Value::Int(1)]));
        let dict = Value::Map(Arc::new(Default::default()));
        let cases = [
            (s("a"), "string", "string"),
            (Value::Int(1), "int", "int"),
            (Value::Float(1.5), "float64", "float64"),
            (Value::Bool(true), "bool", "bool"),
            (list.clone(), "[]interface {}", "slice"),
            (dict.clone(), "map[string]interface {}", "map"),
            (Value::Nil, "<nil>", "invalid"),
        ];
        for (v, ty, kind) in cases {
            assert_eq!(call("typeOf", std::slice::from_ref(&v)).as_str(), Some(ty));
            assert_eq!(
                call("kindOf", std::slice::from_ref(&v)).as_str(),
                Some(kind)
            );
            assert_eq!(call("typeIs", &[s(ty), v.clone()]), Value::Bool(true));
            assert_eq!(call("kindIs", &[s(kind), v.clone()]), Value::Bool(true));
            assert_eq!(call("typeIsLike", &[s(ty), v.clone()]), Value::Bool(true));
            assert_eq!(call("kindIs", &[s("struct"), v]), Value::Bool(false));
        }
        assert_eq!(call("deepEqual", &[list.clone(), list]), Value::Bool(true));
        assert_eq!(
            call("deepEqual", &[Value::Int(1), Value::Float(1.0)]),
            Value::Bool(false)
        );
        assert_eq!(call("deepEqual", &[dict, s("")]), Value::Bool(false));
    }
}
