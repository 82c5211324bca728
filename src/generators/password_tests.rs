use super::*;

fn spec(v: serde_json::Value) -> PasswordSpec {
    serde_json::from_value(v).unwrap()
}

#[test]
fn defaults_are_esos() {
    let p = plan(&spec(serde_json::json!({})), "spec").unwrap();
    assert_eq!((p.length, p.digits, p.symbols), (24, 6, 6));
    assert_eq!(p.keys, vec!["password"]);
    assert_eq!(p.encoding, PasswordEncoding::Raw);
    let p = plan(&spec(serde_json::json!({"length": 10})), "spec").unwrap();
    assert_eq!((p.digits, p.symbols), (2, 2));
}

#[test]
fn impossible_specs_are_refused_naming_the_field() {
    for (v, want) in [
        (
            serde_json::json!({"length": 8, "digits": 5, "symbols": 4}),
            "exceed length (8)",
        ),
        (
            serde_json::json!({"length": 60, "digits": 0, "symbols": 0}),
            "only 52 exist",
        ),
        (
            serde_json::json!({"length": 30, "digits": 0, "symbols": 0, "noUpper": true}),
            "only 26 exist",
        ),
        (
            serde_json::json!({"length": 20, "digits": 11, "symbols": 0}),
            "only 10 exist",
        ),
        (
            serde_json::json!({"length": 10, "symbols": 3, "symbolCharacters": "!!"}),
            "symbolCharacters has only 1",
        ),
        (
            serde_json::json!({"symbols": 1, "symbolCharacters": ""}),
            "symbolCharacters: empty",
        ),
        (
            serde_json::json!({"secretKeys": ["a", "a"]}),
            "secretKeys[1]: \"a\" appears twice",
        ),
        (
            serde_json::json!({"secretKeys": [""]}),
            "secretKeys[0]: empty key",
        ),
        (
            serde_json::json!({"secretKeys": []}),
            "secretKeys: give at least one",
        ),
        (
            serde_json::json!({"secretKeys": ["a/b"]}),
            "not a valid Secret key",
        ),
    ] {
        let errs = plan(&spec(v.clone()), "spec").unwrap_err();
        assert!(errs.iter().any(|e| e.contains(want)), "{v}: {errs:?}");
        assert!(errs.iter().all(|e| e.starts_with("spec")), "{errs:?}");
    }
    // The same with allowRepeat is fine where only repeats were the problem.
    for v in [
        serde_json::json!({"length": 60, "digits": 0, "symbols": 0, "allowRepeat": true}),
        serde_json::json!({"length": 20, "digits": 11, "symbols": 0, "allowRepeat": true}),
    ] {
        plan(&spec(v), "spec").unwrap();
    }
}

fn classes(s: &str, symbols: &str) -> (usize, usize, usize, usize) {
    let lower = s.chars().filter(|c| c.is_ascii_lowercase()).count();
    let upper = s.chars().filter(|c| c.is_ascii_uppercase()).count();
    let digits = s.chars().filter(|c| c.is_ascii_digit()).count();
    let sym = s.chars().filter(|c| symbols.contains(*c)).count();
    (lower, upper, digits, sym)
}

#[test]
fn passwords_have_the_asked_composition() {
    let mut rng = rand::rng();
    for (v, symbols) in [
        (serde_json::json!({}), DEFAULT_SYMBOLS),
        (
            serde_json::json!({"length": 40, "digits": 10, "symbols": 5, "symbolCharacters": "-_"
            , "allowRepeat": true}),
            "-_",
        ),
        (
            serde_json::json!({"length": 16, "digits": 3, "symbols": 2, "noUpper": true}),
            DEFAULT_SYMBOLS,
        ),
        (
            serde_json::json!({"length": 62, "digits": 10, "symbols": 0}),
            DEFAULT_SYMBOLS,
        ),
    ] {
        let p = plan(&spec(v.clone()), "spec").unwrap();
        for _ in 0..50 {
            let out = generate(&p, &mut rng);
            let s = std::str::from_utf8(&out["password"]).unwrap();
            assert_eq!(s.chars().count(), p.length, "{v}: {s}");
            let (lower, upper, digits, sym) = classes(s, symbols);
            assert_eq!(digits, p.digits, "{v}: {s}");
            assert_eq!(sym, p.symbols, "{v}: {s}");
            assert_eq!(lower + upper, p.length - p.digits - p.symbols, "{v}: {s}");
            if p.no_upper {
                assert_eq!(upper, 0, "{s}");
            }
            if !p.allow_repeat {
                let mut seen: Vec<char> = s.chars().collect();
                seen.sort();
                seen.dedup();
                assert_eq!(seen.len(), p.length, "{v}: a repeat in {s}");
            }
        }
    }
}

#[test]
fn each_key_gets_its_own_password_and_they_differ_between_calls() {
    let p = plan(&spec(serde_json::json!({"secretKeys": ["a", "b"]})), "spec").unwrap();
    let mut rng = rand::rng();
    let one = generate(&p, &mut rng);
    let two = generate(&p, &mut rng);
    assert_eq!(one.keys().collect::<Vec<_>>(), vec!["a", "b"]);
    assert_ne!(one["a"], one["b"]);
    assert_ne!(one["a"], two["a"]);
}

#[test]
fn encodings_are_esos() {
    for (enc, want) in [
        (PasswordEncoding::Raw, "ab?"),
        (PasswordEncoding::Base64, "YWI/"),
        (PasswordEncoding::Base64url, "YWI_"),
        (PasswordEncoding::Base32, "MFRD6==="),
        (PasswordEncoding::Hex, "61623f"),
    ] {
        assert_eq!(encode("ab?", enc), want.as_bytes(), "{enc:?}");
    }
}
