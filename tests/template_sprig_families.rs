//! sprig's date, random, semver, URL, float-math, reflection, AES and key/certificate
//! functions through the whole engine (parse check, execution, output), with the templates
//! and expected outputs of sprig's own tests (Masterminds/sprig v3, MIT licence).

use std::collections::BTreeMap;

use vaultgate::api::ExternalSecretTemplate;
use vaultgate::template::{TemplateError, TemplateSources, render_target};

fn render_with(tpl: &str, data: &[(&str, &str)]) -> Result<String, TemplateError> {
    let t = ExternalSecretTemplate {
        data: Some([("out".to_string(), tpl.to_string())].into()),
        ..Default::default()
    };
    let fetched: BTreeMap<String, Vec<u8>> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    render_target(&t, &fetched, &TemplateSources::default())
        .map(|r| String::from_utf8(r.data["out"].clone()).unwrap())
}

fn render(tpl: &str) -> Result<String, TemplateError> {
    render_with(tpl, &[("since", "2019-06-13 20:39:39 +0000 UTC")])
}

#[test]
fn sprig_templates_render_as_sprig_does() {
    let cases = [
        // date_test.go
        (
            r#"{{ toDate "2006-01-02" "2017-12-31" | date "02/01/2006" }}"#,
            "31/12/2017",
        ),
        (
            r#"{{ date_in_zone "02 Jan 06 15:04 -0700" 1560458379 "UTC" }}"#,
            "13 Jun 19 20:39 +0000",
        ),
        (r#"{{ .since | unixEpoch }}"#, "1560458379"),
        (r#"{{ durationRound "2400h5s" }}"#, "3mo"),
        (
            r#"{{ .since | dateModify "-1.5h" | date "15:04" }}"#,
            "19:09",
        ),
        // semver_test.go
        (r#"{{ semverCompare "^1.2.0" "1.2.3" }}"#, "true"),
        (r#"{{ semverCompare "^1.2.0" "2.2.3" }}"#, "false"),
        (
            r#"{{ $s := semver "1.2.3-beta.1+c0ff33" }}{{ $s.Prerelease }}"#,
            "beta.1",
        ),
        (
            r#"{{ $s := semver "1.2.3-beta.1+c0ff33" }}{{ $s.Major}}"#,
            "1",
        ),
        // url_test.go
        (
            r#"{{ urlJoin (dict "fragment" "fragment" "host" "host:80" "path" "/path" "query" "query" "scheme" "proto") }}"#,
            "proto://host:80/path?query#fragment",
        ),
        (
            r#"{{ urlParse "proto://auth@host:80/path?query#fragment" }}"#,
            "map[fragment:fragment host:host:80 hostname:host opaque: path:/path query:query scheme:proto userinfo:auth]",
        ),
        // numeric_test.go
        (r#"{{ 3 | addf 1.5 2.2 }}"#, "6.7"),
        (r#"{{ 2 | divf 5 4 }}"#, "0.625"),
        (r#"{{ 1.2 | mulf "2.4" 10 "4" }}"#, "115.2"),
        (r#"{{ 3.4 | add1f }}"#, "4.4"),
        (r#"{{ maxf 1 2 3 345.7 5 6 7 }}"#, "345.7"),
        (
            r#"{{ range $i, $e := until 5 }}{{ $i }}{{ $e }}{{ end }}"#,
            "0011223344",
        ),
        (
            r#"{{ range $i, $e := untilStep 0 -10 -2 }}{{ $i }}{{ $e }} {{ end }}"#,
            "00 1-2 2-4 3-6 4-8 ",
        ),
        (r#"{{ seq -5 }}"#, "1 0 -1 -2 -3 -4 -5"),
        // crypto_test.go
        (
            r#"{{ "plaintext" | encryptAES "secretkey" | decryptAES "secretkey" }}"#,
            "plaintext",
        ),
        (
            r#"{{ derivePassword 1 "long" "password" "user" "example.com" }}"#,
            "ZedaFaxcZaso9*",
        ),
        (r#"{{ genPrivateKey "bad" }}"#, "Unknown type bad"),
        // reflection docs
        (
            r#"{{ typeOf (list 1) }} {{ kindOf (dict) }} {{ kindIs "string" "x" }}"#,
            "[]interface {} map true",
        ),
        // strings docs: the random generators' lengths
        (
            r#"{{ randAlphaNum 12 | len }} {{ randNumeric 3 | len }} {{ randBytes 6 | len }}"#,
            "12 3 8",
        ),
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
fn certificates_chain_through_templates() {
    // crypto_test.go, TestGenSignedCert: a CA, then a certificate it signs.
    let out = render(
        r#"{{- $ca := genCA "foo" 365 }}{{- $cert := genSignedCert "foo.com" (list "10.0.0.1" "10.0.0.2") (list "bar.com" "bat.com") 365 $ca }}{{ $cert.Cert }}{{ $cert.Key }}"#,
    )
    .unwrap();
    assert!(out.starts_with("-----BEGIN CERTIFICATE-----\n"), "{out}");
    assert!(out.contains("-----END CERTIFICATE-----\n-----BEGIN RSA PRIVATE KEY-----\n"));
    let now_year: i32 = render(r#"{{ now | date "2006" }}"#)
        .unwrap()
        .parse()
        .unwrap();
    assert!(now_year >= 2024);
}

#[test]
fn what_eso_removes_stays_refused_and_errors_name_the_function() {
    for (tpl, func) in [
        ("{{ env \"HOME\" }}", "env"),
        ("{{ expandenv \"$HOME\" }}", "expandenv"),
    ] {
        let e = render(tpl).unwrap_err();
        assert_eq!(e.kind(), "parse", "{tpl}: {e}");
        assert!(
            e.to_string()
                .contains(&format!("function \"{func}\" not defined")),
            "{e}"
        );
    }
    for (tpl, want) in [
        (
            r#"{{ semverCompare "1.2.0" "badVersion" }}"#,
            "Invalid Semantic Version",
        ),
        (
            r#"{{ mustToDate "2006-01-02" "2017-13-01" }}"#,
            "month out of range",
        ),
        (r#"{{ urlParse "http://h:port/" }}"#, "invalid port"),
        (r#"{{ "AAEC" | decryptAES "k" }}"#, "shorter than the IV"),
    ] {
        let e = render(tpl).unwrap_err();
        assert_eq!(e.kind(), "execute", "{tpl}: {e}");
        assert!(e.to_string().contains(want), "{tpl}: {e}");
    }
}
