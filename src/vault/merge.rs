//! `dataFrom[].rewrite[].merge`, as ESO's `RewriteMerge` (`runtime/esutils/utils.go`): the
//! values of the keys so far are JSON objects, merged into one in key order (the `priority`
//! keys last, in their order, so that they win); then either their entries become the keys
//! (`Extract`), or the merged object is added under `into` (`JSON`). Pure; errors name keys,
//! never values.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::api::{MergeConflictPolicy, MergePriorityPolicy, MergeStrategy, RewriteMerge};

use super::values::{sorted_json, typed_bytes};

pub fn merge(
    op: &RewriteMerge,
    input: BTreeMap<String, Vec<u8>>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let priority = op.priority.as_deref().unwrap_or_default();
    // ESO: the other keys sorted, then the priority keys in the order given.
    let order = input
        .keys()
        .filter(|k| !priority.contains(k))
        .chain(priority.iter());
    let mut merged: Map<String, Value> = Map::new();
    let mut conflicts: Vec<String> = Vec::new();
    for key in order {
        let Some(raw) = input.get(key) else {
            if op.priority_policy == Some(MergePriorityPolicy::IgnoreNotFound) {
                continue;
            }
            return Err(format!(
                "merge failed with key {key:?} not found in input map (priority; set \
                 priorityPolicy: IgnoreNotFound to skip it)"
            ));
        };
        // Go's json.Unmarshal of `null` into a map leaves it empty; anything else must be an
        // object.
        let object = match serde_json::from_slice::<Value>(raw) {
            Ok(Value::Object(m)) => m,
            Ok(Value::Null) => Map::new(),
            Ok(_) => {
                return Err(format!(
                    "merge failed: the value of key {key:?} is not a JSON object"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "merge failed: the value of key {key:?} is not JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ));
            }
        };
        for (k, v) in object {
            if merged.contains_key(&k) {
                conflicts.push(k.clone());
            }
            merged.insert(k, v);
        }
    }
    if op.conflict_policy != Some(MergeConflictPolicy::Ignore) && !conflicts.is_empty() {
        return Err(format!(
            "merge failed with conflicts: {} (set conflictPolicy: Ignore to let later keys, \
             and the priority keys, win)",
            conflicts.join(", ")
        ));
    }
    match op.strategy.unwrap_or_default() {
        MergeStrategy::Extract => Ok(merged
            .iter()
            .map(|(k, v)| (k.clone(), merge_bytes(v)))
            .collect()),
        MergeStrategy::Json => {
            let into = op.into.as_deref().unwrap_or_default();
            if into.is_empty() {
                return Err("merge failed with missing 'into' field (strategy JSON)".into());
            }
            let mut out = input;
            out.insert(
                into.to_string(),
                sorted_json(&Value::Object(merged)).into_bytes(),
            );
            Ok(out)
        }
    }
}

/// One merged entry as Secret bytes, as ESO's `GetByteValue`: numbers went through Go's
/// float64 (`strconv.FormatFloat(f, 'f', -1, 64)`), everything else as any other value.
fn merge_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Number(n) => match n.as_f64() {
            // Rust prints an f64 as the shortest decimal that reads back, without exponent,
            // as Go's 'f' with precision -1 does.
            Some(f) => format!("{f}").into_bytes(),
            None => n.to_string().into_bytes(),
        },
        other => typed_bytes(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(entries: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn text(m: &BTreeMap<String, Vec<u8>>) -> Vec<(String, String)> {
        m.iter()
            .map(|(k, v)| (k.clone(), String::from_utf8(v.clone()).unwrap()))
            .collect()
    }

    fn op(f: impl FnOnce(&mut RewriteMerge)) -> RewriteMerge {
        let mut m = RewriteMerge::default();
        f(&mut m);
        m
    }

    /// ESO's merge rewrite cases, with ESO's outcomes.
    #[test]
    fn merge_as_eso() {
        type Want = Result<Vec<(&'static str, &'static str)>, &'static str>;
        type Case<'a> = (&'a str, RewriteMerge, &'a [(&'a str, &'a str)], Want);
        let two = [
            ("db", r#"{"user":"app","password":"p1"}"#),
            ("api", r#"{"token":"t","port":8080}"#),
        ];
        let clash = [
            ("a", r#"{"user":"from-a","x":"1"}"#),
            ("b", r#"{"user":"from-b"}"#),
        ];
        let cases: Vec<Case> = vec![
            (
                "extract by default: every entry a key",
                op(|_| {}),
                &two,
                Ok(vec![
                    ("password", "p1"),
                    ("port", "8080"),
                    ("token", "t"),
                    ("user", "app"),
                ]),
            ),
            (
                "a conflict is an error by default",
                op(|_| {}),
                &clash,
                Err("merge failed with conflicts: user"),
            ),
            (
                "conflicts ignored: the later key wins",
                op(|m| m.conflict_policy = Some(MergeConflictPolicy::Ignore)),
                &clash,
                Ok(vec![("user", "from-b"), ("x", "1")]),
            ),
            (
                "priority keys come last, so they win",
                op(|m| {
                    m.conflict_policy = Some(MergeConflictPolicy::Ignore);
                    m.priority = Some(vec!["a".into()]);
                }),
                &clash,
                Ok(vec![("user", "from-a"), ("x", "1")]),
            ),
            (
                "a missing priority key is an error under Strict",
                op(|m| m.priority = Some(vec!["nope".into()])),
                &two,
                Err("key \"nope\" not found in input map"),
            ),
            (
                "and skipped under IgnoreNotFound",
                op(|m| {
                    m.priority = Some(vec!["nope".into()]);
                    m.priority_policy = Some(MergePriorityPolicy::IgnoreNotFound);
                }),
                &two[..1],
                Ok(vec![("password", "p1"), ("user", "app")]),
            ),
            (
                "JSON: the merged object under into, the input kept",
                op(|m| {
                    m.strategy = Some(MergeStrategy::Json);
                    m.into = Some("all".into());
                }),
                &two,
                Ok(vec![
                    (
                        "all",
                        r#"{"password":"p1","port":8080,"token":"t","user":"app"}"#,
                    ),
                    ("api", r#"{"token":"t","port":8080}"#),
                    ("db", r#"{"user":"app","password":"p1"}"#),
                ]),
            ),
            (
                "JSON needs into",
                op(|m| m.strategy = Some(MergeStrategy::Json)),
                &two,
                Err("missing 'into' field"),
            ),
            (
                "a value that is not an object",
                op(|_| {}),
                &[("s", r#""text""#)],
                Err("the value of key \"s\" is not a JSON object"),
            ),
            (
                "a value that is not JSON, never shown",
                op(|_| {}),
                &[("s", "hunter2")],
                Err("the value of key \"s\" is not JSON"),
            ),
            (
                "null merges nothing, as Go's Unmarshal into a map",
                op(|_| {}),
                &[("n", "null"), ("o", r#"{"k":"v"}"#)],
                Ok(vec![("k", "v")]),
            ),
            (
                "values as ESO's GetByteValue gives them",
                op(|_| {}),
                &[(
                    "v",
                    r#"{"f":1.5,"big":1e21,"b":true,"z":null,"o":{"y":1,"x":"<"},"l":[1,"a"]}"#,
                )],
                Ok(vec![
                    ("b", "true"),
                    ("big", "1000000000000000000000"),
                    ("f", "1.5"),
                    ("l", r#"[1,"a"]"#),
                    ("o", r#"{"x":"\u003c","y":1}"#),
                    ("z", ""),
                ]),
            ),
        ];
        for (name, op, entries, want) in cases {
            let got = merge(&op, input(entries));
            match (got, want) {
                (Ok(got), Ok(want)) => {
                    let want: Vec<(String, String)> = want
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    assert_eq!(text(&got), want, "{name}");
                }
                (Err(e), Err(want)) => {
                    assert!(e.contains(want), "{name}: {e}");
                    assert!(
                        !e.contains("hunter2") && !e.contains("from-"),
                        "{name}: {e}"
                    );
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }
}
