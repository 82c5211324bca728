//! sprig's remaining list and dict helpers: `without`, `chunk`, `dig`, `deepCopy` and the
//! `must…` forms (`mustWithout`, `mustChunk`, `mustDeepCopy`, `mustSlice`), where a wrong
//! type fails the template in both forms, as Go's panics do.

use gotmpl::Value;

use super::args::{Plain, exec, int, limit, list, map, strv, to_i64, want};
use super::reflection::kind_of;
use crate::template::budget::MAX_OUTPUT;

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("without", |a| without(a, "without")),
        ("mustWithout", |a| without(a, "mustWithout")),
        ("chunk", |a| chunk(a, "chunk")),
        ("mustChunk", |a| chunk(a, "mustChunk")),
        // Go's builtin `slice` keeps its name (see `GO_BUILTINS`); sprig's `mustSlice` is
        // the form that reports a non-list as an error.
        ("mustSlice", must_slice),
        ("dig", |a| {
            want(a, "dig", 3, usize::MAX)?;
            let (keys, rest) = a.split_at(a.len() - 2);
            let (default, dict) = (&rest[0], &rest[1]);
            let mut cur = map(dict, "dig")?;
            for (i, k) in keys.iter().enumerate() {
                let Some(step) = cur.get(strv(k, "dig")?) else {
                    return Ok(default.clone());
                };
                if i + 1 == keys.len() {
                    return Ok(step.clone());
                }
                cur = map(step, "dig")?;
            }
            Ok(default.clone())
        }),
        // Template values are immutable, so a copy is the value itself.
        ("deepCopy", |a| {
            want(a, "deepCopy", 1, 1)?;
            Ok(a[0].clone())
        }),
        ("mustDeepCopy", |a| {
            want(a, "mustDeepCopy", 1, 1)?;
            Ok(a[0].clone())
        }),
    ]
}

/// sprig's `without LIST ITEM…`: the list without any item equal to one given.
/// sprig's `mustSlice list [start [end]]`: an empty list gives nil; indices go through
/// cast.ToInt, and out of range fail as Go's `reflect.Value.Slice` panics.
fn must_slice(a: &[Value]) -> gotmpl::Result<Value> {
    want(a, "mustSlice", 1, usize::MAX)?;
    let Value::List(items) = &a[0] else {
        return Err(exec(format!(
            "mustSlice: list should be type of slice or array but {}",
            kind_of(&a[0])
        )));
    };
    if items.is_empty() {
        return Ok(Value::Nil);
    }
    let len = items.len() as i64;
    let start = a.get(1).map_or(0, to_i64);
    let end = a.get(2).map_or(len, to_i64);
    if !(0 <= start && start <= end && end <= len) {
        return Err(exec(format!(
            "mustSlice: reflect.Value.Slice: slice index out of bounds ({start}:{end} of {len})"
        )));
    }
    Ok(Value::List(
        items[start as usize..end as usize].to_vec().into(),
    ))
}

fn without(a: &[Value], name: &str) -> gotmpl::Result<Value> {
    want(a, name, 1, usize::MAX)?;
    let l = list(&a[0], name)?;
    let omit = &a[1..];
    Ok(Value::List(
        l.iter().filter(|x| !omit.contains(x)).cloned().collect(),
    ))
}

/// sprig's `chunk SIZE LIST`: the list in pieces of SIZE, the last one shorter.
fn chunk(a: &[Value], name: &str) -> gotmpl::Result<Value> {
    want(a, name, 2, 2)?;
    let size = int(&a[0], name)?;
    let l = list(&a[1], name)?;
    if size <= 0 {
        return Err(exec(format!(
            "{name}: runtime error: integer divide by zero"
        )));
    }
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if l.len() / size.max(1) > MAX_OUTPUT {
        return Err(limit(format!(
            "{name} would make more than {MAX_OUTPUT} pieces"
        )));
    }
    Ok(Value::List(
        l.chunks(size)
            .map(|c| Value::List(c.iter().cloned().collect()))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    fn call(name: &str, args: &[Value]) -> gotmpl::Result<Value> {
        let f = functions().into_iter().find(|(n, _)| *n == name).unwrap().1;
        f(args)
    }

    fn l(items: &[i64]) -> Value {
        Value::List(items.iter().map(|&i| Value::Int(i)).collect())
    }

    fn d(pairs: &[(&str, Value)]) -> Value {
        let m: BTreeMap<Arc<str>, Value> = pairs
            .iter()
            .map(|(k, v)| (Arc::from(*k), v.clone()))
            .collect();
        Value::Map(Arc::new(m))
    }

    fn st(x: &str) -> Value {
        Value::String(x.into())
    }

    #[test]
    fn sprig_list_cases() {
        // The examples of sprig's list and dict docs for without, chunk and dig.
        assert_eq!(
            call("without", &[l(&[1, 2, 3, 4]), Value::Int(1)]).unwrap(),
            l(&[2, 3, 4])
        );
        assert_eq!(
            call("without", &[l(&[1, 2, 3, 4]), Value::Int(1), Value::Int(3)]).unwrap(),
            l(&[2, 4])
        );
        let chunks = call("chunk", &[Value::Int(3), l(&[1, 2, 3, 4, 5, 6, 7, 8])]).unwrap();
        assert_eq!(
            chunks,
            Value::List(vec![l(&[1, 2, 3]), l(&[4, 5, 6]), l(&[7, 8])].into())
        );
        let nested = d(&[("a", d(&[("b", d(&[("c", st("1"))]))]))]);
        assert_eq!(
            call("dig", &[st("a"), st("b"), st("c"), st(""), nested.clone()]).unwrap(),
            st("1")
        );
        assert_eq!(
            call("dig", &[st("a"), st("b"), st("z"), st("2"), nested.clone()]).unwrap(),
            st("2")
        );
        assert!(
            call(
                "dig",
                &[st("a"), st("b"), st("c"), st("x"), st("y"), nested.clone()]
            )
            .is_err()
        );
        assert_eq!(
            call("deepCopy", std::slice::from_ref(&nested)).unwrap(),
            nested
        );
        assert!(call("mustChunk", &[Value::Int(0), l(&[1])]).is_err());
        assert!(call("mustWithout", &[st("not a list"), Value::Int(1)]).is_err());
    }

    #[test]
    fn sprig_must_slice_cases() {
        // The examples in sprig's list.go comment on slice, which is mustSlice panicking.
        let five = l(&[1, 2, 3, 4, 5]);
        let cases: [(&[Value], Value); 5] = [
            (std::slice::from_ref(&five), five.clone()),
            (&[five.clone(), Value::Int(0), Value::Int(3)], l(&[1, 2, 3])),
            (&[five.clone(), Value::Int(3), Value::Int(5)], l(&[4, 5])),
            (&[five.clone(), Value::Int(3)], l(&[4, 5])),
            (&[five.clone(), st("1"), Value::Float(3.0)], l(&[2, 3])),
        ];
        for (args, want) in cases {
            assert_eq!(call("mustSlice", args).unwrap(), want, "{args:?}");
        }
        assert_eq!(call("mustSlice", &[l(&[])]).unwrap(), Value::Nil);
        let e = call("mustSlice", &[st("abc")]).unwrap_err().to_string();
        assert!(
            e.contains("list should be type of slice or array but string"),
            "{e}"
        );
        assert!(call("mustSlice", &[five.clone(), Value::Int(3), Value::Int(6)]).is_err());
        assert!(call("mustSlice", &[five.clone(), Value::Int(4), Value::Int(2)]).is_err());
        assert!(call("mustSlice", &[five, Value::Int(-1)]).is_err());
    }
}
