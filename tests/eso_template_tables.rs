//! The template tests of the External Secrets Operator (ESO 2.9, runtime/template/v2,
//! Apache-2.0), run against vaultgate's engine. The cases are data in
//! `tests/data/eso-template/cases.yaml`, under ESO's test and case names; see the README
//! there for the fields.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use rsa::pkcs8::DecodePublicKey as _;
use serde::Deserialize;
use vaultgate::api::{
    DecodingStrategy, ExternalSecretTemplate, ExternalSecretTemplateMetadata, TemplateFrom,
    TemplateRef, TemplateRefItem, TemplateScope,
};
use vaultgate::template::{Rendered, TemplateError, TemplateSources, render_target};

const CASES: &str = include_str!("data/eso-template/cases.yaml");

#[derive(Deserialize)]
struct File {
    cases: Vec<Case>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl OneOrMany {
    fn items(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
            OneOrMany::None => Vec::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Case {
    test: String,
    name: String,
    #[serde(default)]
    not_applicable: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    data_files: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    data_concat: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    encrypt_oaep: Option<Encrypt>,
    #[serde(default)]
    template: Option<BTreeMap<String, String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    template_from: Option<From>,
    #[serde(default)]
    expect: Option<BTreeMap<String, String>>,
    #[serde(default)]
    expect_files: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    expect_concat: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    expect_labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    expect_annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_kind: Option<String>,
    /// ESO's expected error text, kept for reference where vaultgate words it differently.
    #[serde(default)]
    #[allow(dead_code)]
    eso_error: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Encrypt {
    into: String,
    public_key: String,
    hash: String,
    plaintext: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct From {
    #[serde(default)]
    scope: Option<TemplateScope>,
    target: String,
    #[serde(default)]
    items: BTreeMap<String, String>,
    #[serde(default)]
    literal: Option<String>,
    #[serde(default)]
    values_decoding: Option<DecodingStrategy>,
}

fn testdata(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/data/eso-template", name]
        .iter()
        .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files(names: &OneOrMany) -> Vec<u8> {
    names.items().iter().flat_map(|n| testdata(n)).collect()
}

fn encrypt(e: &Encrypt) -> Vec<u8> {
    let body: String = e
        .public_key
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("public key PEM");
    let key = rsa::PublicKey::from_public_key_der(&der).expect("RSA public key");
    let mut rng = p12_keystore::rand::rng();
    let msg = e.plaintext.as_bytes();
    match e.hash.as_str() {
        "SHA256" => key.encrypt(&mut rng, rsa::Oaep::<rsa::sha2::Sha256>::new(), msg),
        other => panic!("hash {other} is not used by the cases"),
    }
    .expect("RSA-OAEP encryption")
}

fn template(c: &Case) -> (ExternalSecretTemplate, TemplateSources) {
    let mut sources = TemplateSources::default();
    let mut t = ExternalSecretTemplate {
        data: c.template.clone(),
        ..Default::default()
    };
    if c.labels.is_some() || c.annotations.is_some() {
        t.metadata = Some(ExternalSecretTemplateMetadata {
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
            finalizers: None,
        });
    }
    if let Some(f) = &c.template_from {
        let mut entry = TemplateFrom {
            target: Some(f.target.clone()),
            literal: f.literal.clone(),
            values_decoding_strategy: f.values_decoding,
            ..Default::default()
        };
        if f.literal.is_none() {
            // ESO's Execute over a map of templates: one ConfigMap item per key.
            sources
                .config_maps
                .insert("templates".into(), f.items.clone());
            entry.config_map = Some(TemplateRef {
                name: "templates".into(),
                items: f
                    .items
                    .keys()
                    .map(|k| TemplateRefItem {
                        key: k.clone(),
                        template_as: f.scope,
                    })
                    .collect(),
            });
        }
        t.template_from = Some(vec![entry]);
    }
    (t, sources)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs one case; `Err` says how it differs from what ESO's test expects.
fn run(c: &Case) -> Result<(), String> {
    let mut fetched: BTreeMap<String, Vec<u8>> = c
        .data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    for (k, names) in &c.data_files {
        fetched.insert(k.clone(), files(names));
    }
    for (k, parts) in &c.data_concat {
        fetched.insert(k.clone(), parts.concat().into_bytes());
    }
    if let Some(e) = &c.encrypt_oaep {
        fetched.insert(e.into.clone(), encrypt(e));
    }
    let (tpl, sources) = template(c);
    let got: Result<Rendered, TemplateError> = render_target(&tpl, &fetched, &sources);

    if let Some(want) = &c.error {
        let e = match got {
            Ok(r) => return Err(format!("want an error, got data {:?}", r.data.keys())),
            Err(e) => e,
        };
        if !e.to_string().contains(want.as_str()) {
            return Err(format!("error {e:?} lacks {want:?}"));
        }
        if let Some(kind) = &c.error_kind
            && e.kind() != kind
        {
            return Err(format!("error kind {} want {kind}", e.kind()));
        }
        return Ok(());
    }
    let r = got.map_err(|e| format!("unexpected error: {e}"))?;

    let mut want_data: Option<BTreeMap<String, Vec<u8>>> = c.expect.as_ref().map(|m| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect()
    });
    for (k, names) in &c.expect_files {
        want_data
            .get_or_insert_with(BTreeMap::new)
            .insert(k.clone(), files(names));
    }
    for (k, parts) in &c.expect_concat {
        want_data
            .get_or_insert_with(BTreeMap::new)
            .insert(k.clone(), parts.concat().into_bytes());
    }
    if let Some(want) = want_data
        && r.data != want
    {
        let show = |m: &BTreeMap<String, Vec<u8>>| -> BTreeMap<String, String> {
            m.iter().map(|(k, v)| (k.clone(), text(v))).collect()
        };
        return Err(format!(
            "data\n   want {:?}\n    got {:?}",
            show(&want),
            show(&r.data)
        ));
    }
    if let Some(want) = &c.expect_labels
        && &r.labels != want
    {
        return Err(format!("labels want {want:?} got {:?}", r.labels));
    }
    if let Some(want) = &c.expect_annotations
        && &r.annotations != want
    {
        return Err(format!("annotations want {want:?} got {:?}", r.annotations));
    }
    Ok(())
}

#[test]
fn eso_template_tables() {
    let file: File = serde_yaml_ng::from_str(CASES).expect("cases.yaml");
    let mut failures = Vec::new();
    let (mut ran, mut listed) = (0, 0);
    for c in &file.cases {
        if let Some(reason) = &c.not_applicable {
            // Listed with its reason; such a case carries nothing to run.
            assert!(
                !reason.trim().is_empty(),
                "{} / {}: no reason",
                c.test,
                c.name
            );
            assert!(
                c.template.is_none() && c.template_from.is_none() && c.expect.is_none(),
                "{} / {}: a not-applicable case must not carry a test",
                c.test,
                c.name
            );
            listed += 1;
            continue;
        }
        ran += 1;
        if let Err(why) = run(c) {
            failures.push(format!("{} / {}: {why}", c.test, c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} ESO cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every ESO test file is represented.
    for t in [
        "TestExecute",
        "TestPkcs12certPass",
        "TestFilterPEM",
        "TestFilterCertChain",
        "TestCertSANs",
        "TestPemToPkcs12",
        "TestRsaDecrypt_RSAOAEP_Success",
    ] {
        assert!(file.cases.iter().any(|c| c.test == t), "{t} missing");
    }
    assert!(ran > 80 && listed > 0, "ran {ran}, listed {listed}");
}
