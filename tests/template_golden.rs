//! Golden tests of the template engine: template + data → exact output, each expected
//! string taken from Go's text/template and sprig's documented behaviour.

use std::collections::BTreeMap;

use vaultgate::api::{
    ExternalSecretTemplate, ExternalSecretTemplateMetadata, TemplateFrom, TemplateMergePolicy,
    TemplateRef, TemplateRefItem, TemplateScope,
};
use vaultgate::template::{TemplateError, TemplateSources, render_target, transform_key};

const DATA: &[(&str, &str)] = &[
    ("user", "app"),
    ("password", "s3cret"),
    ("a", "1"),
    ("empty", ""),
    ("env", "dev"),
    ("my-key", "dash"),
    ("json", r#"{"b":[1,2],"a":"x","port":5432}"#),
    ("lines", "a\nb"),
];

fn fetched(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn render_with(tpl: &str, data: &[(&str, &str)]) -> Result<String, TemplateError> {
    let t = ExternalSecretTemplate {
        data: Some([("out".to_string(), tpl.to_string())].into()),
        ..Default::default()
    };
    render_target(&t, &fetched(data), &TemplateSources::default())
        .map(|r| String::from_utf8(r.data["out"].clone()).unwrap())
}

fn render(tpl: &str) -> Result<String, TemplateError> {
    render_with(tpl, DATA)
}

fn check_table(cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (tpl, want) in cases {
        match render(tpl) {
            Ok(got) if got == *want => {}
            Ok(got) => failures.push(format!("{tpl:?}\n   want {want:?}\n    got {got:?}")),
            Err(e) => failures.push(format!("{tpl:?}\n   want {want:?}\n  error {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn go_text_template_language() {
    check_table(&[
        ("{{ .user }}", "app"),
        ("plain text", "plain text"),
        ("  ", "  "),
        // Whitespace trimming, the example of the text/template docs.
        ("{{23 -}} < {{- 45}}", "23<45"),
        ("a \n {{- .a -}} \n b", "a1b"),
        ("{{/* a comment */}}x", "x"),
        ("x {{- /* trimmed comment */ -}} y", "xy"),
        // Conditionals.
        (
            r#"{{ if eq .env "prod" }}P{{ else if eq .env "dev" }}D{{ else }}O{{ end }}"#,
            "D",
        ),
        ("{{ if .empty }}yes{{ else }}no{{ end }}", "no"),
        // Range over maps is in sorted key order.
        (
            "{{ range $k, $v := fromJson .json }}{{ $k }};{{ end }}",
            "a;b;port;",
        ),
        (
            r#"{{ range $i, $e := list "x" "y" }}{{ $i }}:{{ $e }} {{ end }}"#,
            "0:x 1:y ",
        ),
        ("{{ range list }}x{{ else }}none{{ end }}", "none"),
        ("{{ range 3 }}{{ . }}{{ end }}", "012"),
        (
            "{{ range list 1 2 3 4 }}{{ if eq . 3 }}{{ break }}{{ end }}{{ . }}{{ end }}",
            "12",
        ),
        (
            "{{ range list 1 2 3 }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}",
            "13",
        ),
        // with, nested with range, variables and $.
        ("{{ with .user }}u={{ . }}{{ end }}", "u=app"),
        ("{{ with .empty }}x{{ else }}fallback{{ end }}", "fallback"),
        (
            "{{ range $k, $v := fromJson .json }}{{ with $v }}{{ if eq $k \"b\" }}{{ range . }}[{{ . }}]{{ end }}{{ end }}{{ end }}{{ end }}",
            "[1][2]",
        ),
        ("{{ $x := \"a\" }}{{ $x = \"b\" }}{{ $x }}", "b"),
        ("{{ range list 1 2 }}{{ $.a }}{{ end }}", "11"),
        (
            "{{ $u := .user }}{{ range list 1 }}{{ $u }}{{ end }}",
            "app",
        ),
        // Comparison and logic.
        (
            "{{ lt 1 2 }} {{ ge 2 2 }} {{ ne \"a\" \"b\" }} {{ eq 1 2 3 1 }}",
            "true true true true",
        ),
        ("{{ and 1 0 }} {{ or 0 \"x\" }} {{ not true }}", "0 x false"),
        ("{{ le 3 2 }} {{ gt 3 2 }}", "false true"),
        // printf with Go verbs.
        (
            r#"{{ printf "%s-%d-%5.2f-%q-%x-%v-%03d|%-4s|" "a" 42 3.14159 "q" 255 true 7 "ab" }}"#,
            "a-42- 3.14-\"q\"-ff-true-007|ab  |",
        ),
        ("{{ printf \"%s:%s\" .user .password }}", "app:s3cret"),
        // print puts spaces between operands when neither is a string.
        ("{{ print \"a\" 1 2 \"b\" }}", "a1 2b"),
        ("{{ println \"a\" 1 }}", "a 1\n"),
        // index, len, slice.
        ("{{ index . \"my-key\" }}", "dash"),
        // The data is a map[string]string: a key it lacks indexes to "".
        ("[{{ index . \"no-such-key\" }}]", "[]"),
        ("[{{ index (dict \"a\" 1) \"b\" }}]", "[<no value>]"),
        ("{{ index (fromJson .json) \"b\" 1 }}", "2"),
        ("{{ index (list \"x\" \"y\") 1 }}", "y"),
        ("{{ len \"abc\" }} {{ len (list 1 2) }}", "3 2"),
        // `slice` is sprig's, which replaces Go's builtin as registered functions do in Go: it
        // takes lists (Go's also took strings).
        ("{{ slice (list 1 2 3 4) 1 3 }}", "[2 3]"),
        // Escapers.
        ("{{ html \"<a href='x'>\" }}", "&lt;a href=&#39;x&#39;&gt;"),
        ("{{ urlquery \"a b&c\" }}", "a+b%26c"),
        ("{{ js \"it's\" }}", "it\\'s"),
        // Named templates.
        (
            "{{ define \"x\" }}[{{ . }}]{{ end }}{{ template \"x\" .user }}",
            "[app]",
        ),
        ("{{ block \"b\" .a }}<{{ . }}>{{ end }}", "<1>"),
    ]);
}

#[test]
fn sprig_string_functions() {
    check_table(&[
        ("{{ upper \"hello\" }}", "HELLO"),
        ("{{ lower \"HELLO\" }}", "hello"),
        ("{{ title \"hello world\" }}", "Hello World"),
        ("{{ untitle \"Hello World\" }}", "hello World"),
        ("{{ trim \"   hello    \" }}", "hello"),
        ("{{ trimAll \"$\" \"$5.00$\" }}", "5.00"),
        ("{{ trimPrefix \"-\" \"-hello\" }}", "hello"),
        ("{{ trimSuffix \"-\" \"hello-\" }}", "hello"),
        (
            "{{ \"I Am Henry VIII\" | replace \" \" \"-\" }}",
            "I-Am-Henry-VIII",
        ),
        ("{{ \"hello\" | quote }}", "\"hello\""),
        ("{{ quote \"a\\\"b\" \"c\" }}", "\"a\\\"b\" \"c\""),
        ("{{ quote .lines }}", "\"a\\nb\""),
        ("{{ \"hello\" | squote }}", "'hello'"),
        ("{{ indent 2 \"a\\nb\" }}", "  a\n  b"),
        ("{{ .lines | indent 4 }}", "    a\n    b"),
        ("x:{{ .lines | nindent 2 }}", "x:\n  a\n  b"),
        ("{{ contains \"cat\" \"catch\" }}", "true"),
        ("{{ hasPrefix \"cat\" \"catch\" }}", "true"),
        ("{{ hasSuffix \"cat\" \"catch\" }}", "false"),
        (
            "{{ $a := split \"$\" \"foo$bar$baz\" }}{{ $a._0 }} {{ $a._2 }}",
            "foo baz",
        ),
        (
            "{{ split \"$\" \"foo$bar$baz\" }}",
            "map[_0:foo _1:bar _2:baz]",
        ),
        ("{{ splitList \",\" \"a,b\" | join \"+\" }}", "a+b"),
        ("{{ list 1 2 3 | join \",\" }}", "1,2,3"),
        ("{{ list \"hello\" \"world\" | join \"_\" }}", "hello_world"),
        ("{{ repeat 3 \"hello\" }}", "hellohellohello"),
        ("{{ substr 0 5 \"hello world\" }}", "hello"),
        ("{{ substr 1 3 \"abcdef\" }}", "bc"),
        ("{{ substr 3 -1 \"abcdef\" }}", "def"),
        ("{{ trunc 5 \"hello world\" }}", "hello"),
        ("{{ trunc 3 \"abcdef\" }}", "abc"),
        ("{{ trunc -5 \"hello world\" }}", "world"),
        ("{{ trunc 10 \"abc\" }}", "abc"),
        (
            "{{ cat \"hello\" \"beautiful\" \"world\" }}",
            "hello beautiful world",
        ),
        ("{{ nospace \"hello w o r l d\" }}", "helloworld"),
        (
            "{{ list \"c\" \"a\" \"b\" | sortAlpha | join \"\" }}",
            "abc",
        ),
    ]);
}

#[test]
fn sprig_encoding_functions() {
    check_table(&[
        ("{{ b64enc \"x\" }}", "eA=="),
        ("{{ \"eA==\" | b64dec }}", "x"),
        ("{{ \"aGVs\\nbG8=\\r\\n\" | b64dec }}", "hello"),
        ("{{ .password | b64enc | b64dec }}", "s3cret"),
        // toJson sorts map keys and escapes HTML characters, as json.Marshal does.
        (
            "{{ dict \"b\" 1 \"a\" \"x\" | toJson }}",
            r#"{"a":"x","b":1}"#,
        ),
        ("{{ toJson \"a<b&c\" }}", r#""a\u003cb\u0026c""#),
        ("{{ toRawJson \"a<b\" }}", r#""a<b""#),
        ("{{ list 1 \"two\" true | toJson }}", r#"[1,"two",true]"#),
        (
            "{{ toPrettyJson (dict \"a\" (list 1)) }}",
            "{\n  \"a\": [\n    1\n  ]\n}",
        ),
        // JSON numbers are float64 in Go; whole ones print without a fraction.
        ("{{ (fromJson .json).port }}", "5432"),
        ("{{ (fromJson .json).a }}", "x"),
        (
            "{{ fromJson .json | toJson }}",
            r#"{"a":"x","b":[1,2],"port":5432}"#,
        ),
        (
            "{{ dict \"a\" \"x\" \"b\" (list 1 2) | toYaml }}",
            "a: x\nb:\n- 1\n- 2",
        ),
        ("{{ (fromYaml \"a: b\\nc: 1\").a }}", "b"),
        ("{{ dict \"k\" \"true\" | toYaml }}", "k: \"true\""),
        ("{{ dict \"k\" \"a\\nb\" | toYaml }}", "k: |-\n  a\n  b"),
        (
            "{{ list (dict \"a\" 1 \"b\" \"x y\") | toYaml }}",
            "- a: 1\n  b: x y",
        ),
        ("{{ dict | toYaml }}", "{}"),
        (
            "{{ dict \"n\" (dict \"m\" (list)) \"e\" \"\" | toYaml }}",
            "e: \"\"\nn:\n  m: []",
        ),
        ("{{ (fromYaml \"a: [\").Error | empty | not }}", "true"),
        ("{{ toString 5 }}{{ toString true }}", "5true"),
    ]);
}

#[test]
fn sprig_defaults_and_logic() {
    check_table(&[
        ("{{ .empty | default \"foo\" }}", "foo"),
        ("{{ default \"foo\" \"bar\" }}", "bar"),
        ("{{ default \"foo\" 0 }}", "foo"),
        (
            "{{ empty .empty }} {{ empty .user }} {{ empty 0 }} {{ empty list }}",
            "true false true true",
        ),
        ("{{ coalesce 0 \"\" .empty \"x\" \"y\" }}", "x"),
        ("{{ ternary \"yes\" \"no\" true }}", "yes"),
        ("{{ false | ternary \"yes\" \"no\" }}", "no"),
        ("{{ all 1 \"a\" }} {{ any 0 \"\" }}", "true false"),
    ]);
}

#[test]
fn sprig_collections() {
    check_table(&[
        ("{{ list 1 2 3 }}", "[1 2 3]"),
        (
            "{{ $d := dict \"name1\" \"value1\" \"name2\" \"value2\" }}{{ $d.name2 }}",
            "value2",
        ),
        (
            "{{ $d := dict \"k\" \"v\" }}{{ get $d \"k\" }}|{{ get $d \"none\" }}|",
            "v||",
        ),
        // set changes the dict it is given, as Go maps are shared.
        (
            "{{ $d := dict \"a\" \"1\" }}{{ $_ := set $d \"b\" \"2\" }}{{ $d.b }} {{ len $d }}",
            "2 2",
        ),
        ("{{ (set (dict) \"k\" \"v\").k }}", "v"),
        (
            "{{ $d := dict \"a\" 1 \"b\" 2 }}{{ $_ := unset $d \"a\" }}{{ keys $d | join \",\" }}",
            "b",
        ),
        (
            "{{ hasKey (dict \"a\" 1) \"a\" }} {{ hasKey (dict \"a\" 1) \"b\" }}",
            "true false",
        ),
        (
            "{{ keys (dict \"b\" 1 \"a\" 2) | sortAlpha | join \",\" }}",
            "a,b",
        ),
        (
            "{{ keys (dict \"b\" 1) (dict \"a\" 2) | sortAlpha | join \",\" }}",
            "a,b",
        ),
        (
            "{{ pluck \"name1\" (dict \"name1\" \"value1\") (dict \"name2\" \"x\") (dict \"name1\" \"other\") }}",
            "[value1 other]",
        ),
        // merge keeps what the destination has and fills the rest.
        (
            "{{ $dst := dict \"a\" \"1\" }}{{ $src := dict \"a\" \"2\" \"b\" \"3\" }}{{ $_ := merge $dst $src }}{{ $dst.a }}{{ $dst.b }}",
            "13",
        ),
        (
            "{{ $m := merge (dict \"n\" (dict \"x\" 1)) (dict \"n\" (dict \"y\" 2)) }}{{ toJson $m }}",
            r#"{"n":{"x":1,"y":2}}"#,
        ),
        (
            "{{ mergeOverwrite (dict \"a\" 1) (dict \"a\" 2) | toJson }}",
            r#"{"a":2}"#,
        ),
        ("{{ first (list 1 2) }}{{ last (list 1 2) }}", "12"),
        ("{{ append (list 1) 2 | toJson }}", "[1,2]"),
        ("{{ has 2 (list 1 2) }}", "true"),
        ("{{ uniq (list 1 1 2) | toJson }}", "[1,2]"),
        (
            "{{ pick (dict \"a\" 1 \"b\" 2) \"a\" | toJson }}",
            r#"{"a":1}"#,
        ),
        (
            "{{ omit (dict \"a\" 1 \"b\" 2) \"a\" | toJson }}",
            r#"{"b":2}"#,
        ),
        ("{{ values (dict \"a\" 1 \"b\" 2) | toJson }}", "[1,2]"),
        (
            "{{ add 1 2 3 }} {{ sub 5 2 }} {{ mul 2 3 }} {{ div 7 2 }} {{ mod 7 2 }}",
            "6 3 6 3 1",
        ),
        (
            "{{ add1 .a }} {{ atoi \"42\" }} {{ max 1 5 3 }} {{ min 4 2 }}",
            "2 42 5 2",
        ),
        (
            "{{ regexReplaceAll \"a(x*)b\" \"-ab-axxb-\" \"${1}W\" }}",
            "-W-xxW-",
        ),
        ("{{ regexMatch \"^[a-z]+$\" .user }}", "true"),
        ("{{ regexFind \"[0-9]+\" \"ab12cd34\" }}", "12"),
        (
            "{{ regexFindAll \"[0-9]\" \"a1b2c3\" -1 | join \",\" }}",
            "1,2,3",
        ),
        ("{{ regexSplit \",\" \"a,b,c\" -1 | join \"\" }}", "abc"),
    ]);
}

#[test]
fn sprig_hashing_and_ids() {
    check_table(&[
        (
            "{{ sha256sum \"Hello world!\" }}",
            "c0535e4be2b79ffd93291305436bf889314e4a3faec05ecffcbb7df31ad9e51a",
        ),
        (
            "{{ sha1sum \"Hello world!\" }}",
            "d3486ae9136e7856bc42212385ea797094475802",
        ),
        (
            "{{ sha512sum \"Hello world!\" | trunc 40 }}",
            "f6cde2a0f819314cdde55fc227d8d7dae3d28cc5",
        ),
        (
            "{{ htpasswd \"myUser\" \"myPassword\" \"sha\" }}",
            "myUser:{SHA}VBPuJHI7uixaa6LQGWx4s+5GKNE=",
        ),
    ]);
    let id = render("{{ uuidv4 }}").unwrap();
    let re =
        regex::Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
            .unwrap();
    assert!(re.is_match(&id), "{id}");
    assert_ne!(id, render("{{ uuidv4 }}").unwrap());

    let line = render("{{ htpasswd .user .password }}").unwrap();
    let hash = line.strip_prefix("app:").expect(&line);
    assert!(hash.starts_with("$2a$10$"), "{hash}");
    assert!(bcrypt::verify("s3cret", hash).unwrap());
    assert!(!bcrypt::verify("other", hash).unwrap());
}

#[test]
fn missing_keys_and_unknown_functions_are_errors() {
    let e = render("{{ .nope }}").unwrap_err();
    assert_eq!(e.kind(), "execute");
    assert!(
        e.to_string().contains("map has no entry for key \"nope\""),
        "{e}"
    );

    for (tpl, func) in [
        ("{{ .user | frobnicate }}", "frobnicate"),
        ("{{ env \"HOME\" }}", "env"),
        ("{{ expandenv \"$HOME\" }}", "expandenv"),
        ("{{ if .a }}{{ nope }}{{ end }}", "nope"),
    ] {
        let e = render(tpl).unwrap_err();
        assert_eq!(e.kind(), "parse", "{tpl}: {e}");
        assert!(
            e.to_string()
                .contains(&format!("function \"{func}\" not defined")),
            "{tpl}: {e}"
        );
    }
    let e = render("ok\n{{ .a | nope }}").unwrap_err();
    assert!(e.to_string().contains("out:2:9:"), "{e}");

    for tpl in ["{{ if .a }}x", "x{{ end }}y", "{{ else }}", "{{ .a "] {
        let e = render(tpl).unwrap_err();
        assert_eq!(e.kind(), "parse", "{tpl}: {e}");
    }
    // Wrong argument types are errors, not silent output.
    let e = render("{{ indent \"2\" .user }}").unwrap_err();
    assert!(e.to_string().contains("indent"), "{e}");
}

#[test]
fn exploding_templates_are_bounded() {
    let cases = [
        // Doubling a string: stops at 1 MiB, long before memory is at risk.
        "{{ $x := \"ab\" }}{{ range 64 }}{{ $x = printf \"%s%s\" $x $x }}{{ end }}{{ len $x }}",
        "{{ $x := \"ab\" }}{{ range 64 }}{{ $x = print $x $x }}{{ end }}",
        // js doubles every backslash.
        "{{ $x := \"\\\\\" }}{{ range 64 }}{{ $x = js $x }}{{ end }}",
        "{{ $l := list 1 }}{{ range 64 }}{{ $l = list $l $l }}{{ end }}{{ toJson $l }}",
        "{{ printf \"%999999999s\" \"x\" }}",
        // Deep nesting would overflow the stack when printed or dropped.
        "{{ $l := list }}{{ range 100000 }}{{ $l = list $l }}{{ end }}",
        "{{ repeat 100000000 \"xy\" }}",
        "{{ indent 100000000 \"x\" }}",
        // Plain output past 1 MiB.
        "{{ range 50000 }}{{ repeat 100 \"x\" }}{{ end }}",
        // Loops and recursion without output.
        "{{ range 1000000000 }}{{ end }}",
        "{{ define \"r\" }}{{ template \"r\" . }}{{ end }}{{ template \"r\" . }}",
    ];
    for tpl in cases {
        let start = std::time::Instant::now();
        let e = render(tpl).expect_err(tpl);
        assert_eq!(e.kind(), "limit", "{tpl}: {e}");
        assert!(
            start.elapsed().as_secs() < 10,
            "{tpl} took {:?}",
            start.elapsed()
        );
    }

    // 2^40 template calls that print nothing: the step budget stops them.
    let mut tpl = String::from("{{ define \"t0\" }}{{ end }}");
    for i in 1..=40 {
        let call = format!("{{{{ template \"t{}\" }}}}", i - 1);
        tpl.push_str(&format!(
            "{{{{ define \"t{i}\" }}}}{call}{call}{{{{ end }}}}"
        ));
    }
    tpl.push_str("{{ template \"t40\" }}");
    let start = std::time::Instant::now();
    let e = render(&tpl).unwrap_err();
    assert_eq!(e.kind(), "limit", "{e}");
    assert!(start.elapsed().as_secs() < 10);
}

#[test]
fn dockerconfigjson_from_a_registry_token() {
    let tpl = r#"{"auths":{"{{ .registry }}":{"username":"{{ .user }}","password":"{{ .token }}","auth":"{{ printf "%s:%s" .user .token | b64enc }}"}}}"#;
    let t = ExternalSecretTemplate {
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some([(".dockerconfigjson".to_string(), tpl.to_string())].into()),
        ..Default::default()
    };
    let f = fetched(&[
        ("registry", "registry.example.com"),
        ("user", "robot"),
        ("token", "tok123"),
    ]);
    let r = render_target(&t, &f, &TemplateSources::default()).unwrap();
    assert_eq!(r.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    assert_eq!(r.data.len(), 1);
    assert_eq!(
        std::str::from_utf8(&r.data[".dockerconfigjson"]).unwrap(),
        r#"{"auths":{"registry.example.com":{"username":"robot","password":"tok123","auth":"cm9ib3Q6dG9rMTIz"}}}"#
    );
    let parsed: serde_json::Value = serde_json::from_slice(&r.data[".dockerconfigjson"]).unwrap();
    assert_eq!(parsed["auths"]["registry.example.com"]["username"], "robot");
}

#[test]
fn connection_string_and_config_file() {
    let t = ExternalSecretTemplate {
        data: Some(
            [
                (
                    "DATABASE_URL".to_string(),
                    "postgresql://{{ .user }}:{{ .password | urlquery }}@{{ .host }}:5432/app?sslmode=require"
                        .to_string(),
                ),
                (
                    "config.yaml".to_string(),
                    "database:\n  user: {{ .user | quote }}\n  password: {{ .password | quote }}\n{{- if .debug }}\ndebug: true\n{{- end }}\n"
                        .to_string(),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let f = fetched(&[
        ("user", "app"),
        ("password", "p@ss word"),
        ("host", "db.internal"),
        ("debug", ""),
    ]);
    let r = render_target(&t, &f, &TemplateSources::default()).unwrap();
    assert_eq!(
        std::str::from_utf8(&r.data["DATABASE_URL"]).unwrap(),
        "postgresql://app:p%40ss+word@db.internal:5432/app?sslmode=require"
    );
    assert_eq!(
        std::str::from_utf8(&r.data["config.yaml"]).unwrap(),
        "database:\n  user: \"app\"\n  password: \"p@ss word\"\n"
    );
}

fn item(key: &str, scope: TemplateScope) -> TemplateRefItem {
    TemplateRefItem {
        key: key.into(),
        template_as: Some(scope),
    }
}

#[test]
fn keys_and_values_produce_several_keys() {
    let mut sources = TemplateSources::default();
    sources.config_maps.insert(
        "db-templates".into(),
        BTreeMap::from([(
            "keys".to_string(),
            "{{- range $k, $v := . }}\n{{ $k | upper }}: {{ $v | quote }}\n{{- end }}\n"
                .to_string(),
        )]),
    );
    let t = ExternalSecretTemplate {
        template_from: Some(vec![TemplateFrom {
            config_map: Some(TemplateRef {
                name: "db-templates".into(),
                items: vec![item("keys", TemplateScope::KeysAndValues)],
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let f = fetched(&[("user", "app"), ("password", "a: b"), ("port", "5432")]);
    let r = render_target(&t, &f, &sources).unwrap();
    let got: BTreeMap<&str, &str> = r
        .data
        .iter()
        .map(|(k, v)| (k.as_str(), std::str::from_utf8(v).unwrap()))
        .collect();
    assert_eq!(
        got,
        BTreeMap::from([("PASSWORD", "a: b"), ("PORT", "5432"), ("USER", "app")])
    );
}

#[test]
fn labels_and_annotations_targets() {
    let t = ExternalSecretTemplate {
        metadata: Some(ExternalSecretTemplateMetadata {
            labels: Some([("owner".to_string(), "{{ .user }}".to_string())].into()),
            annotations: Some(
                [(
                    "checksum".to_string(),
                    "{{ .password | sha256sum | trunc 8 }}".to_string(),
                )]
                .into(),
            ),
            finalizers: None,
        }),
        template_from: Some(vec![
            TemplateFrom {
                literal: Some("team: {{ .user }}-team\ntier: gold".into()),
                target: Some("Labels".into()),
                ..Default::default()
            },
            TemplateFrom {
                literal: Some("rotated-by: {{ .user }}".into()),
                target: Some("annotations".into()),
                ..Default::default()
            },
        ]),
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    };
    let f = fetched(&[("user", "app"), ("password", "Hello world!")]);
    let r = render_target(&t, &f, &TemplateSources::default()).unwrap();
    assert_eq!(
        r.labels,
        BTreeMap::from([
            ("owner".to_string(), "app".to_string()),
            ("team".to_string(), "app-team".to_string()),
            ("tier".to_string(), "gold".to_string()),
        ])
    );
    assert_eq!(
        r.annotations,
        BTreeMap::from([
            ("checksum".to_string(), "c0535e4b".to_string()),
            ("rotated-by".to_string(), "app".to_string()),
        ])
    );
    assert_eq!(r.data, BTreeMap::from([("k".to_string(), b"v".to_vec())]));
}

#[test]
fn merge_versus_replace() {
    let f = fetched(&[("user", "app"), ("password", "s3cret")]);
    let mut t = ExternalSecretTemplate {
        data: Some(
            [(
                "password".to_string(),
                "{{ .password | b64enc }}".to_string(),
            )]
            .into(),
        ),
        ..Default::default()
    };
    let replace = render_target(&t, &f, &TemplateSources::default()).unwrap();
    assert_eq!(
        replace.data,
        BTreeMap::from([("password".to_string(), b"czNjcmV0".to_vec())])
    );
    t.merge_policy = Some(TemplateMergePolicy::Merge);
    let merge = render_target(&t, &f, &TemplateSources::default()).unwrap();
    assert_eq!(
        merge.data,
        BTreeMap::from([
            ("password".to_string(), b"czNjcmV0".to_vec()),
            ("user".to_string(), b"app".to_vec()),
        ])
    );
}

#[test]
fn rewrite_transform() {
    assert_eq!(
        transform_key("{{ .value | lower | replace \"_\" \"-\" }}", "DB_PASSWORD").unwrap(),
        "db-password"
    );
    assert_eq!(
        transform_key("prefix-{{ .value }}", "key").unwrap(),
        "prefix-key"
    );
}

fn chain_pems() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.use_authority_key_identifier_extension = true;
        p
    };
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca("root");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, &root_key);

    let int_key = KeyPair::generate().unwrap();
    let int_params = ca("intermediate");
    let int = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let int_issuer = Issuer::new(int_params, &int_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec!["leaf.example.com".to_string()]).unwrap();
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf = leaf_params.signed_by(&leaf_key, &int_issuer).unwrap();
    (leaf.pem(), int.pem(), root.pem())
}

#[test]
fn filter_pem_and_cert_chain() {
    let (leaf, int, root) = chain_pems();
    let key = "-----BEGIN PRIVATE KEY-----\nAAECAwQ=\n-----END PRIVATE KEY-----\n";
    let bundle = format!("{key}{root}{leaf}{int}");
    let data = [("bundle", bundle.as_str())];
    assert_eq!(
        render_with("{{ .bundle | filterPEM \"PRIVATE KEY\" }}", &data).unwrap(),
        key
    );
    assert_eq!(
        render_with("{{ .bundle | filterPEM \"CERTIFICATE\" }}", &data).unwrap(),
        format!("{root}{leaf}{int}")
    );
    let chain = format!("{root}{leaf}{int}");
    let data = [("chain", chain.as_str())];
    assert_eq!(
        render_with("{{ .chain | filterCertChain \"leaf\" }}", &data).unwrap(),
        leaf
    );
    assert_eq!(
        render_with("{{ .chain | filterCertChain \"intermediate\" }}", &data).unwrap(),
        int
    );
    assert_eq!(
        render_with("{{ .chain | filterCertChain \"root\" }}", &data).unwrap(),
        root
    );
    let e = render_with(
        "{{ .junk | filterPEM \"CERTIFICATE\" }}",
        &[("junk", "no pem here")],
    )
    .unwrap_err();
    assert!(e.to_string().contains("found junk"), "{e}");
    assert!(!e.to_string().contains("no pem here"), "{e}");
}

#[test]
fn execution_errors_point_at_the_template() {
    let e = render("{{ .a }}\n  {{ .nope }}").unwrap_err();
    assert_eq!(
        e.to_string(),
        "spec.target.template.data[out]: template: out: map has no entry for key \"nope\" (used at 2:6)"
    );
    let e = render("{{ .a }}{{ indent \"x\" .user }}").unwrap_err();
    assert!(e.to_string().contains("indent"), "{e}");
    assert!(e.to_string().contains("(used at 1:12)"), "{e}");
    let e = render("{{ range 1000000000 }}{{ end }}").unwrap_err();
    assert!(e.to_string().contains("limit exceeded"), "{e}");
}

#[test]
fn binary_values_pass_through_unchanged() {
    // Go strings are bytes: a keystore fetched from Vault must reach the Secret intact.
    let bin: Vec<u8> = vec![0xfe, 0xed, 0xfe, 0xed, 0x00, 0x80, b'a', 0xc3, 0xa9, 0xff];
    let b64 = "/u3+7QCAYcOp/w==";
    let f = BTreeMap::from([
        ("keystore".to_string(), bin.clone()),
        ("encoded".to_string(), b64.as_bytes().to_vec()),
    ]);
    let t = ExternalSecretTemplate {
        data: Some(
            [
                ("raw".to_string(), "{{ .keystore }}".to_string()),
                ("b64".to_string(), "{{ .keystore | b64enc }}".to_string()),
                ("decoded".to_string(), "{{ .encoded | b64dec }}".to_string()),
                ("head".to_string(), "{{ .keystore | trunc 4 }}".to_string()),
                (
                    "sum".to_string(),
                    "{{ .encoded | b64dec | sha256sum }}".to_string(),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let r = render_target(&t, &f, &TemplateSources::default()).unwrap();
    assert_eq!(r.data["raw"], bin);
    assert_eq!(r.data["b64"], b64.as_bytes());
    assert_eq!(r.data["decoded"], bin);
    assert_eq!(r.data["head"], bin[..4]);
    assert_eq!(
        std::str::from_utf8(&r.data["sum"]).unwrap(),
        "2ada8ac7d7835749fec825d93323aa1a443fc92f6d2fc75524a1fff32c5f95e3"
    );
}
