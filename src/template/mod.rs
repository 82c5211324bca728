//! ESO template engine v2: Go `text/template` with sprig, applied to the target Secret.
//!
//! Pure functions: the caller fetches the provider data and any ConfigMaps / Secrets
//! named by `templateFrom`, then [`render_target`] decides data, labels, annotations
//! and type; [`transform_key`] renames `dataFrom` keys; [`check_templates`] is the
//! parse-only check for admission. Errors name the field and the template position,
//! never a secret value.

mod budget;
mod bytes;
pub mod engine;
mod funcs;

use std::collections::{BTreeMap, BTreeSet};

use gotmpl::Value;

use crate::api::{
    DecodingStrategy, ExternalSecretSpec, ExternalSecretTemplate, TemplateMergePolicy,
    TemplateScope,
};
use budget::MAX_OUTPUT;
use engine::EngineError;

/// Templates read from ConfigMaps and Secrets named in `templateFrom`, fetched by the
/// caller from the ExternalSecret's namespace, keyed by object name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateSources {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// What the template makes of the target Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub data: BTreeMap<String, Vec<u8>>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub type_: Option<String>,
}

/// A template that could not be rendered. `field` is the path of the template in the
/// ExternalSecret (e.g. `spec.target.template.data[config.yaml]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Syntax error or unknown function; the message has `line:col`.
    #[error("{field}: {message}")]
    Parse { field: String, message: String },
    /// Execution failed: missing key, a function's error, a type error.
    #[error("{field}: {message}")]
    Execute { field: String, message: String },
    /// Output size, step, time, loop or recursion bound hit.
    #[error("{field}: {message}")]
    Limit { field: String, message: String },
    /// A `templateFrom` ConfigMap, Secret or key that the sources do not have.
    #[error("{field}: {message}")]
    Source { field: String, message: String },
    /// A KeysAndValues template did not produce a YAML map of strings, or a bad target.
    #[error("{field}: {message}")]
    Output { field: String, message: String },
}

impl TemplateError {
    /// Path of the template in the ExternalSecret.
    pub fn field(&self) -> &str {
        match self {
            TemplateError::Parse { field, .. }
            | TemplateError::Execute { field, .. }
            | TemplateError::Limit { field, .. }
            | TemplateError::Source { field, .. }
            | TemplateError::Output { field, .. } => field,
        }
    }

    /// Short reason for metrics and condition reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            TemplateError::Parse { .. } => "parse",
            TemplateError::Execute { .. } => "execute",
            TemplateError::Limit { .. } => "limit",
            TemplateError::Source { .. } => "source",
            TemplateError::Output { .. } => "output",
        }
    }
}

/// Where `templateFrom` output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Data,
    Labels,
    Annotations,
}

/// `templateFrom[].valuesDecodingStrategy`: how the values an entry renders are decoded
/// before they land in the Secret (ESO decodes templateFrom output only, never
/// `template.data` or `metadata`), with the same strategies as `decodingStrategy`.
#[derive(Clone, Copy)]
struct Decode<'a> {
    strategy: DecodingStrategy,
    field: &'a str,
}

impl Decode<'_> {
    fn apply(self, key: &str, value: &str) -> Result<Vec<u8>, TemplateError> {
        let raw = bytes::to_bytes(value);
        crate::decoding::decode(self.strategy, &raw).map_err(|e| TemplateError::Output {
            field: format!("{}.valuesDecodingStrategy", self.field),
            message: format!("the rendered value of key {key:?}: {e}"),
        })
    }
}

fn parse_target(field: &str, t: Option<&str>) -> Result<Target, TemplateError> {
    match t.unwrap_or("Data").to_ascii_lowercase().as_str() {
        "data" => Ok(Target::Data),
        "labels" => Ok(Target::Labels),
        "annotations" => Ok(Target::Annotations),
        other => Err(TemplateError::Output {
            field: format!("{field}.target"),
            message: format!("unknown target {other:?}: expected Data, Labels or Annotations"),
        }),
    }
}

/// Removes every fetched value from a message, in case a function echoed one.
struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut secrets: Vec<String> = values
            .into_iter()
            .filter(|v| v.len() >= 4)
            .map(str::to_string)
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Scrubber { secrets }
    }

    fn clean(&self, msg: String) -> String {
        let mut msg = msg;
        for s in &self.secrets {
            if msg.contains(s.as_str()) {
                msg = msg.replace(s.as_str(), "<redacted>");
            }
        }
        msg
    }
}

/// One render pass: the data given to templates, the output budget left, the scrubber.
struct Renderer {
    data: Value,
    left: usize,
    scrub: Scrubber,
}

impl Renderer {
    fn run(&mut self, field: &str, name: &str, src: &str) -> Result<String, TemplateError> {
        let compiled = engine::compile(name, src).map_err(|e| self.error(field, e))?;
        self.exec(field, &compiled)
    }

    fn exec(&mut self, field: &str, compiled: &engine::Compiled) -> Result<String, TemplateError> {
        let out = compiled
            .execute(&self.data, self.left.min(MAX_OUTPUT))
            .map_err(|e| self.error(field, e))?;
        self.left = self.left.saturating_sub(out.len());
        Ok(out)
    }

    fn error(&self, field: &str, e: EngineError) -> TemplateError {
        let field = field.to_string();
        match e {
            EngineError::Parse(m) => TemplateError::Parse {
                field,
                message: self.scrub.clean(m),
            },
            EngineError::Exec(m) => TemplateError::Execute {
                field,
                message: self.scrub.clean(m),
            },
            EngineError::Limit(m) => TemplateError::Limit {
                field,
                message: self.scrub.clean(m),
            },
        }
    }

    /// KeysAndValues: the output is YAML `key: value` lines, each one key.
    fn run_map(
        &mut self,
        field: &str,
        name: &str,
        src: &str,
    ) -> Result<BTreeMap<String, String>, TemplateError> {
        let out = self.run(field, name, src)?;
        let bad = |message: String| TemplateError::Output {
            field: field.to_string(),
            message,
        };
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
                .unwrap_or_default();
            bad(format!(
                "the rendered template is not a YAML map of keys to values{at}"
            ))
        })?;
        let mut keys = BTreeMap::new();
        match parsed {
            serde_yaml_ng::Value::Null => {}
            serde_yaml_ng::Value::Mapping(m) => {
                for (k, v) in m {
                    let key = scalar(&k)
                        .ok_or_else(|| bad("a key of the rendered YAML is not a string".into()))?;
                    let value = scalar(&v).ok_or_else(|| {
                        bad(format!(
                            "the value of key {key:?} in the rendered YAML is not a string"
                        ))
                    })?;
                    keys.insert(key, value);
                }
            }
            _ => {
                return Err(bad(
                    "the rendered template is not a YAML map of keys to values".into(),
                ));
            }
        }
        Ok(keys)
    }
}

fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        serde_yaml_ng::Value::Null => Some(String::new()),
        serde_yaml_ng::Value::Tagged(t) => scalar(&t.value),
        _ => None,
    }
}

/// Bytes as the string Go would see (see [`bytes`] for bytes that are not UTF-8).
fn text(b: &[u8]) -> String {
    bytes::to_text(b)
}

/// Rendered text as a label or annotation value: escaped bytes become U+FFFD.
fn label_text(s: String) -> String {
    match String::from_utf8(bytes::to_bytes(&s)) {
        Ok(v) => v,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn data_value(fetched: &BTreeMap<String, Vec<u8>>) -> Value {
    let m: BTreeMap<String, Value> = fetched
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(text(v).into())))
        .collect();
    Value::from(m)
}

const TPL: &str = "spec.target.template";

fn put(
    r: &mut Rendered,
    target: Target,
    decode: Decode<'_>,
    key: String,
    value: String,
) -> Result<(), TemplateError> {
    let value = decode.apply(&key, &value)?;
    match target {
        Target::Data => {
            r.data.insert(key, value);
        }
        Target::Labels => {
            r.labels.insert(key, label_text(bytes::to_text(&value)));
        }
        Target::Annotations => {
            r.annotations
                .insert(key, label_text(bytes::to_text(&value)));
        }
    }
    Ok(())
}

/// Renders `spec.target.template` over the fetched provider data, as ESO does:
/// Merge starts from the fetched data; `templateFrom` entries apply in order, then
/// `data` (highest precedence), then `metadata.labels` / `annotations`. Without any
/// `data` or `templateFrom`, the Secret's data is the fetched data unchanged.
/// All rendered output together is bounded by 1 MiB, like a Secret.
pub fn render_target(
    tpl: &ExternalSecretTemplate,
    fetched: &BTreeMap<String, Vec<u8>>,
    sources: &TemplateSources,
) -> Result<Rendered, TemplateError> {
    let fetched_text: Vec<String> = fetched.values().map(|v| text(v)).collect();
    let mut rr = Renderer {
        data: data_value(fetched),
        left: MAX_OUTPUT,
        scrub: Scrubber::new(fetched_text.iter().map(String::as_str)),
    };
    let mut out = Rendered {
        type_: tpl.type_.clone(),
        ..Default::default()
    };
    if tpl.merge_policy == Some(TemplateMergePolicy::Merge) {
        out.data = fetched.clone();
    }

    let from = tpl.template_from.as_deref().unwrap_or_default();
    for (i, entry) in from.iter().enumerate() {
        let base = format!("{TPL}.templateFrom[{i}]");
        let target = parse_target(&base, entry.target.as_deref())?;
        let decode = Decode {
            strategy: entry.values_decoding_strategy.unwrap_or_default(),
            field: &base,
        };
        if let Some(cm) = &entry.config_map {
            let field = format!("{base}.configMap");
            let obj = sources
                .config_maps
                .get(&cm.name)
                .ok_or_else(|| TemplateError::Source {
                    field: field.clone(),
                    message: format!("ConfigMap {:?} not found", cm.name),
                })?;
            for item in &cm.items {
                let src = obj.get(&item.key).ok_or_else(|| TemplateError::Source {
                    field: field.clone(),
                    message: format!("ConfigMap {:?} has no key {:?}", cm.name, item.key),
                })?;
                apply_item(
                    &mut rr,
                    &mut out,
                    &field,
                    &item.key,
                    src,
                    item.template_as,
                    (target, decode),
                )?;
            }
        }
        if let Some(sec) = &entry.secret {
            let field = format!("{base}.secret");
            let obj = sources
                .secrets
                .get(&sec.name)
                .ok_or_else(|| TemplateError::Source {
                    field: field.clone(),
                    message: format!("Secret {:?} not found", sec.name),
                })?;
            for item in &sec.items {
                let src = obj.get(&item.key).ok_or_else(|| TemplateError::Source {
                    field: field.clone(),
                    message: format!("Secret {:?} has no key {:?}", sec.name, item.key),
                })?;
                let src = text(src);
                apply_item(
                    &mut rr,
                    &mut out,
                    &field,
                    &item.key,
                    &src,
                    item.template_as,
                    (target, decode),
                )?;
            }
        }
        if let Some(lit) = &entry.literal {
            // ESO runs a literal as one KeysAndValues template.
            let field = format!("{base}.literal");
            for (k, v) in rr.run_map(&field, "literal", lit)? {
                put(&mut out, target, decode, k, v)?;
            }
        }
    }

    let data = tpl.data.as_ref();
    for (k, src) in data.into_iter().flatten() {
        let v = rr.run(&format!("{TPL}.data[{k}]"), k, src)?;
        out.data.insert(k.clone(), bytes::to_bytes(&v));
    }
    if let Some(meta) = &tpl.metadata {
        for (k, src) in meta.labels.iter().flatten() {
            let v = rr.run(&format!("{TPL}.metadata.labels[{k}]"), k, src)?;
            out.labels.insert(k.clone(), label_text(v));
        }
        for (k, src) in meta.annotations.iter().flatten() {
            let v = rr.run(&format!("{TPL}.metadata.annotations[{k}]"), k, src)?;
            out.annotations.insert(k.clone(), label_text(v));
        }
    }
    if data.is_none_or(|d| d.is_empty()) && from.is_empty() {
        out.data = fetched.clone();
    }
    Ok(out)
}

fn apply_item(
    rr: &mut Renderer,
    out: &mut Rendered,
    field: &str,
    key: &str,
    src: &str,
    scope: Option<TemplateScope>,
    (target, decode): (Target, Decode<'_>),
) -> Result<(), TemplateError> {
    let field = format!("{field}.items[{key}]");
    match scope.unwrap_or_default() {
        TemplateScope::Values => {
            let v = rr.run(&field, key, src)?;
            put(out, target, decode, key.to_string(), v)?;
        }
        TemplateScope::KeysAndValues => {
            for (k, v) in rr.run_map(&field, key, src)? {
                put(out, target, decode, k, v)?;
            }
        }
    }
    Ok(())
}

/// Names of the ConfigMaps and Secrets `templateFrom` reads, for the caller to fetch
/// into [`TemplateSources`] (from the ExternalSecret's namespace).
pub fn source_names(tpl: &ExternalSecretTemplate) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for from in tpl.template_from.iter().flatten() {
        if let Some(cm) = &from.config_map {
            config_maps.insert(cm.name.clone());
        }
        if let Some(s) = &from.secret {
            secrets.insert(s.name.clone());
        }
    }
    (config_maps, secrets)
}

/// `dataFrom[].rewrite[].transform.template`: the template sees the key as `.value`
/// and its output is the new key. As in ESO, a missing key prints `<no value>` here
/// rather than failing.
pub fn transform_key(template: &str, key: &str) -> Result<String, TemplateError> {
    let mut rr = Renderer {
        data: Value::from(BTreeMap::from([(
            "value".to_string(),
            Value::String(key.into()),
        )])),
        left: MAX_OUTPUT,
        scrub: Scrubber::new([]),
    };
    let field = "rewrite.transform.template";
    let compiled =
        engine::compile_lenient("transform", template).map_err(|e| rr.error(field, e))?;
    rr.exec(field, &compiled)
}

/// Parse-only check of every inline template of an ExternalSecret, for admission:
/// syntax errors and unknown functions, each as (field path, message with `line:col`).
/// Templates in ConfigMaps and Secrets are checked when they are rendered.
pub fn check_templates(spec: &ExternalSecretSpec) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut bad_targets = Vec::new();
    let mut check = |field: String, name: &str, src: &str| {
        if let Err(e) = engine::check(name, src) {
            found.push((field, e.to_string()));
        }
    };
    if let Some(t) = spec.target.as_ref().and_then(|t| t.template.as_ref()) {
        for (k, src) in t.data.iter().flatten() {
            check(format!("{TPL}.data[{k}]"), k, src);
        }
        if let Some(meta) = &t.metadata {
            for (k, src) in meta.labels.iter().flatten() {
                check(format!("{TPL}.metadata.labels[{k}]"), k, src);
            }
            for (k, src) in meta.annotations.iter().flatten() {
                check(format!("{TPL}.metadata.annotations[{k}]"), k, src);
            }
        }
        for (i, from) in t.template_from.iter().flatten().enumerate() {
            if let Some(lit) = &from.literal {
                check(format!("{TPL}.templateFrom[{i}].literal"), "literal", lit);
            }
            let base = format!("{TPL}.templateFrom[{i}]");
            if let Err(TemplateError::Output { field, message }) =
                parse_target(&base, from.target.as_deref())
            {
                bad_targets.push((field, message));
            }
        }
    }
    for (i, df) in spec.data_from.iter().flatten().enumerate() {
        for (j, rw) in df.rewrite.iter().flatten().enumerate() {
            if let Some(t) = &rw.transform {
                check(
                    format!("spec.dataFrom[{i}].rewrite[{j}].transform.template"),
                    "transform",
                    &t.template,
                );
            }
        }
    }
    found.extend(bad_targets);
    found.sort();
    found
}

#[cfg(test)]
mod tests;
