//! sprig's case and wrap helpers and `mustSlice` through the whole engine (parse check,
//! execution, output), with the examples of sprig v3's string and list documentation;
//! the libraries' own tables are unit tests next to the code (`funcs/case_wrap.rs`).

use std::collections::BTreeMap;

use vaultgate::api::ExternalSecretTemplate;
use vaultgate::template::{TemplateError, TemplateSources, render_target};

fn render(tpl: &str) -> Result<String, TemplateError> {
    let t = ExternalSecretTemplate {
        data: Some([("out".to_string(), tpl.to_string())].into()),
        ..Default::default()
    };
    let fetched: BTreeMap<String, Vec<u8>> = [("name".to_string(), b"http_server".to_vec())].into();
    render_target(&t, &fetched, &TemplateSources::default())
        .map(|r| String::from_utf8(r.data["out"].clone()).unwrap())
}

#[test]
fn case_and_wrap_helpers_render_as_sprig_does() {
    let cases = [
        (r#"{{ abbrev 5 "hello world" }}"#, "he..."),
        (r#"{{ abbrev 3 "hello world" }}"#, "hello world"),
        (r#"{{ abbrevboth 5 10 "1234 5678 9123" }}"#, "...5678..."),
        (r#"{{ initials "First Try" }}"#, "FT"),
        (r#"{{ wrapWith 5 "\t" "Hello World" }}"#, "Hello\tWorld"),
        (r#"{{ wrap 5 "Hello World" }}"#, "Hello\nWorld"),
        (r#"{{ swapcase "This Is A.Test" }}"#, "tHIS iS a.tEST"),
        (r#"{{ camelcase "http_server" }}"#, "HttpServer"),
        (r#"{{ .name | camelcase }}"#, "HttpServer"),
        (r#"{{ snakecase "FirstName" }}"#, "first_name"),
        (r#"{{ kebabcase "FirstName" }}"#, "first-name"),
        (r#"{{ mustSlice (list 1 2 3 4 5) 1 3 }}"#, "[2 3]"),
        (r#"{{ mustSlice (list 1 2 3 4 5) 3 }}"#, "[4 5]"),
        // In ESO `slice` is sprig's, not Go's builtin.
        (r#"{{ slice (list 1 2 3 4 5) 1 3 }}"#, "[2 3]"),
    ];
    let mut failures = Vec::new();
    for (tpl, want) in cases {
        match render(tpl) {
            Ok(got) if got == want => {}
            other => failures.push(format!("{tpl}\n  want {want:?}\n  got  {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn wrong_arguments_fail_and_dns_stays_refused() {
    for tpl in [
        r#"{{ mustSlice "abc" }}"#,
        // Go's builtin would slice a string; sprig's refuses it.
        r#"{{ slice "abc" 1 }}"#,
        r#"{{ mustSlice (list 1 2) 0 3 }}"#,
        r#"{{ abbrev "5" "hello world" }}"#,
        r#"{{ camelcase 5 }}"#,
    ] {
        let e = render(tpl).unwrap_err();
        assert_eq!(e.kind(), "execute", "{tpl}: {e}");
    }
    let e = render(r#"{{ getHostByName "example.com" }}"#).unwrap_err();
    assert_eq!(e.kind(), "parse", "{e}");
    assert!(
        e.to_string()
            .contains("function \"getHostByName\" not defined"),
        "{e}"
    );
}
