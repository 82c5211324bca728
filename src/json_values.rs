//! JSON text measured without parsing it: how many values it can hold at most, so that what
//! parsing it would cost is known before any of it is built.

/// An upper bound of the values in `json`: besides the top-level value, each follows a `[`, `,`
/// or `{` (an object's first member) outside strings. Malformed text only makes it larger.
pub fn values(json: &[u8]) -> usize {
    count(json, false)
}

/// [`values`] and the keys of objects too (each follows a `:`).
pub fn values_and_keys(json: &[u8]) -> usize {
    count(json, true)
}

fn count(json: &[u8], keys: bool) -> usize {
    let mut count = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' | b',' => count += 1,
            b':' if keys => count += 1,
            _ => {}
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_keys_are_counted_outside_strings() {
        // (text, values, values and keys)
        for (json, want, with_keys) in [
            ("1", 1, 1),
            ("[]", 2, 2),
            ("[1,2,3]", 4, 4),
            (r#"{"a":1,"b":[{},{}]}"#, 7, 9),
            (r#"{"a":"x,y[z{:"}"#, 2, 3),
            (r#"{"a":"q\"uo,te","b":2}"#, 3, 5),
            (r#"["\\",1]"#, 3, 3),
            (r#"["\\\"",1]"#, 3, 3),
        ] {
            assert_eq!(values(json.as_bytes()), want, "{json}");
            assert_eq!(values_and_keys(json.as_bytes()), with_keys, "{json}");
        }
    }
}
