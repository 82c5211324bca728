//! Table tests with the inputs and expected outputs of the ported libraries' own tests:
//! huandu/xstrings v1.5.0 `convert_test.go` and Masterminds/goutils v1.1.1
//! `wordutils_test.go` / `stringutils_test.go` (both MIT/Apache-2.0 licensed).

use super::*;

fn run(f: fn(&[u8]) -> Vec<u8>, cases: &[(&str, &str)]) -> Vec<String> {
    cases
        .iter()
        .filter_map(|&(input, want)| {
            let got = to_text(&f(&to_bytes(input)));
            (got != want).then(|| format!("{input:?}: want {want:?}, got {got:?}"))
        })
        .collect()
}

#[test]
fn xstrings_to_pascal_case() {
    let failures = run(
        to_pascal_case,
        &[
            ("http_server", "HttpServer"),
            ("_camel_case", "_CamelCase"),
            ("no_https", "NoHttps"),
            ("_complex__case_", "_Complex_Case_"),
            (" complex -case ", " Complex Case "),
            ("all", "All"),
            ("GOLANG_IS_GREAT", "GolangIsGreat"),
            ("GOLANG", "Golang"),
            ("a", "A"),
            ("好", "好"),
            (
                "FROM CamelCase to snake/kebab-case",
                "FromCamelCaseToSnake/kebabCase",
            ),
            ("", ""),
            ("some words", "SomeWords"),
            ("hello-world", "HelloWorld"),
            ("HELLO", "Hello"),
            ("helloWORLD", "HelloWORLD"),
            ("some_1_thing", "Some1Thing"),
            ("1_abc", "1Abc"),
            ("abc_1", "Abc1"),
            ("v1_2v", "V12v"),
            ("a__b", "A_B"),
            ("a  b", "A B"),
            ("1_2", "12"),
            ("_a_B_", "_AB_"),
            ("中文_测试", "中文测试"),
        ],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// xstrings' `TestToSnakeCaseAndToKebabCase`: the kebab table is the snake one with
/// every `_` turned into `-`.
const SNAKE: &[(&str, &str)] = &[
    ("HTTPServer", "http_server"),
    ("_camelCase", "_camel_case"),
    ("NoHTTPS", "no_https"),
    ("Wi_thF", "wi_th_f"),
    ("_AnotherTES_TCaseP", "_another_tes_t_case_p"),
    ("ALL", "all"),
    ("_HELLO_WORLD_", "_hello_world_"),
    ("HELLO_WORLD", "hello_world"),
    ("HELLO____WORLD", "hello____world"),
    ("TW", "tw"),
    ("_C", "_c"),
    ("http2xx", "http_2xx"),
    ("HTTP2XX", "http2_xx"),
    ("HTTP20xOK", "http_20x_ok"),
    ("HTTP20xStatus", "http_20x_status"),
    ("HTTP-20xStatus", "http_20x_status"),
    ("a", "a"),
    ("Duration2m3s", "duration_2m3s"),
    ("Bld4Floor3rd", "bld4_floor_3rd"),
    (" _-_ ", "_____"),
    ("a1b2c3d", "a_1b2c3d"),
    ("A//B%%2c", "a//b%%2c"),
    ("HTTP状态码404/502Error", "http_状态码404/502_error"),
    ("中文(字符)", "中文(字符)"),
    ("混合ABCWords与123数字456", "混合_abc_words_与123_数字456"),
    ("  sentence case  ", "__sentence_case__"),
    (
        " Mixed-hyphen case _and SENTENCE_case and UPPER-case",
        "_mixed_hyphen_case__and_sentence_case_and_upper_case",
    ),
    (
        "FROM CamelCase to snake/kebab-case",
        "from_camel_case_to_snake/kebab_case",
    ),
    ("", ""),
    (
        "Abc\u{FFFD}E\u{FFFD}f\u{FFFD}d\u{FFFD}2\u{FFFD}00z\u{FFFD}ZZ\u{FFFD}ZZ",
        "abc_\u{FFFD}e\u{FFFD}f\u{FFFD}d_\u{FFFD}2\u{FFFD}00z_\u{FFFD}zz\u{FFFD}zz",
    ),
    (
        "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}",
        "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}",
    ),
    ("abc_123_def", "abc_123_def"),
    ("FirstName", "first_name"),
    ("GO_PATH", "go_path"),
    ("GO PATH", "go_path"),
    ("GO-PATH", "go_path"),
    ("HTTP_20x_OK", "http_20x_ok"),
    ("1_2", "1_2"),
    ("aB", "a_b"),
    ("AB", "ab"),
    ("Ab", "ab"),
    ("A1", "a1"),
    ("AB12", "ab12"),
    ("12AB", "12_ab"),
    ("1A", "1_a"),
    ("a.b", "a.b"),
    ("a'b", "a'b"),
    ("a😀b", "a_😀_b"),
    ("😀ABC", "😀_abc"),
    ("中ABC", "中_abc"),
    ("ABC中", "abc_中"),
];

#[test]
fn xstrings_to_snake_case_and_to_kebab_case() {
    let mut failures = run(|b| camel_to_lower(b, b'_'), SNAKE);
    let kebab: Vec<(String, String)> = SNAKE
        .iter()
        .map(|(i, w)| (i.to_string(), w.replace('_', "-")))
        .collect();
    let kebab: Vec<(&str, &str)> = kebab.iter().map(|(i, w)| (&i[..], &w[..])).collect();
    failures.extend(run(|b| camel_to_lower(b, b'-'), &kebab));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn goutils_word_utils() {
    let mut failures = run(swap_case, &[("This Is A.Test", "tHIS iS a.tEST"), ("", "")]);
    failures.extend(run(initials, &[("John Doe.Ray", "JD"), ("", "")]));
    let wraps: [(&str, i64, &str, bool, &str); 4] = [
        (
            "Bob Manuel Bob Manuel",
            10,
            "",
            false,
            "Bob Manuel\nBob Manuel",
        ),
        (
            "BobManuelBob Bob",
            10,
            "<br\\>",
            false,
            "BobManuelBob<br\\>Bob",
        ),
        (
            "BobManuelBob Bob",
            10,
            "<br\\>",
            true,
            "BobManuelB<br\\>ob Bob",
        ),
        ("", 10, "", false, ""),
    ];
    for (input, width, sep, long, want) in wraps {
        let got = to_text(&wrap_custom(input.as_bytes(), width, sep.as_bytes(), long));
        if got != want {
            failures.push(format!(
                "wrap {input:?} {width}: want {want:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn goutils_abbreviate() {
    // ExampleAbbreviate and ExampleAbbreviateFull; a refused width gives "" here, as
    // sprig ignores goutils' error.
    let cases: [(&str, i64, i64, &str); 15] = [
        ("abcdefg", 0, 6, "abc..."),
        ("abcdefg", 0, 7, "abcdefg"),
        ("abcdefg", 0, 8, "abcdefg"),
        ("abcdefg", 0, 4, "a..."),
        ("abcdefg", 0, 3, ""),
        ("abcdefghijklmno", -1, 10, "abcdefg..."),
        ("abcdefghijklmno", 0, 10, "abcdefg..."),
        ("abcdefghijklmno", 1, 10, "abcdefg..."),
        ("abcdefghijklmno", 4, 10, "abcdefg..."),
        ("abcdefghijklmno", 5, 10, "...fghi..."),
        ("abcdefghijklmno", 6, 10, "...ghij..."),
        ("abcdefghijklmno", 8, 10, "...ijklmno"),
        ("abcdefghijklmno", 10, 10, "...ijklmno"),
        ("abcdefghijklmno", 12, 10, "...ijklmno"),
        ("abcdefghij", 5, 6, ""),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&(input, offset, width, want)| {
            let got = to_text(&abbreviate_full(input.as_bytes(), offset, width));
            (got != want).then(|| format!("{input:?} {offset} {width}: want {want:?}, got {got:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        to_text(&abbreviate_full(b"abcdefghij", i64::MIN, i64::MAX)),
        "abcdefghij"
    );
    assert_eq!(
        to_text(&abbreviate_full(b"abcdefghijklmno", i64::MAX, 10)),
        "...ijklmno"
    );
}

#[test]
fn go_byte_semantics_survive() {
    // Go slices bytes: cutting inside "é" leaves a lone byte, which travels as bytes do.
    let cut = abbreviate_full("aé bcdefgh".as_bytes(), 0, 5);
    assert_eq!(cut, b"a\xc3...");
    // goutils' Initials reads bytes as Latin-1 runes: "É" (C3 89) gives "Ã".
    assert_eq!(to_text(&initials("Émile Zola".as_bytes())), "ÃZ");
    // Invalid bytes become U+FFFD in the rune-based conversions.
    assert_eq!(swap_case(b"a\xffB"), "A\u{FFFD}b".as_bytes());
    assert_eq!(to_pascal_case(b"\xff_a"), "\u{FFFD}A".as_bytes());
    // A width below 1 wraps at every space.
    assert_eq!(wrap_custom(b"a b", -5, b"", false), b"a\nb");
    assert_eq!(wrap_custom(b"a b", i64::MAX, b"", false), b"a b");
}
