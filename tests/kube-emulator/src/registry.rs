//! Which resources are served, and the discovery documents describing them.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A column of `kubectl get` output for a custom resource.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// One served resource (all of its versions).
#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub group: String,
    /// Served versions, in preference order.
    pub versions: Vec<String>,
    pub storage_version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// Served from a CustomResourceDefinition.
    pub custom: bool,
    /// Only `create` is served and nothing is stored (TokenReview).
    pub virtual_create_only: bool,
    pub schemas: HashMap<String, Value>,
    pub printer_columns: HashMap<String, Vec<PrinterColumn>>,
    /// Extra subresources: (name, group, version, kind, verbs).
    pub extra_subresources: Vec<(String, String, String, String, Vec<String>)>,
}

impl ResourceDef {
    /// Registry key of this resource, unique across versions.
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// Storage key: events.k8s.io Events share storage with core Events, as in
    /// kube-apiserver, and are converted on the way in and out.
    pub fn id(&self) -> String {
        if self.is_events_v1() {
            "/events".to_string()
        } else {
            self.key()
        }
    }

    pub fn is_events_v1(&self) -> bool {
        self.group == "events.k8s.io" && self.plural == "events"
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.virtual_create_only {
            vec!["create"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }

    /// Lists whose entries are owned and merged by key (field path → keys).
    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }
}

fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short_names: &[&str],
    categories: &[&str],
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        versions: vec![version.into()],
        storage_version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        status_subresource: false,
        custom: false,
        virtual_create_only: false,
        schemas: HashMap::new(),
        printer_columns: HashMap::new(),
        extra_subresources: vec![],
    }
}

/// The built-in resources this emulator serves.
pub fn builtins() -> Vec<ResourceDef> {
    let mut ns = builtin("", "v1", "namespaces", "Namespace", false, &["ns"], &[]);
    ns.status_subresource = true;
    let mut sa = builtin(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        &["sa"],
        &[],
    );
    sa.extra_subresources.push((
        "token".into(),
        "authentication.k8s.io".into(),
        "v1".into(),
        "TokenRequest".into(),
        vec!["create".into()],
    ));
    let mut tr = builtin(
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "TokenReview",
        false,
        &[],
        &[],
    );
    tr.virtual_create_only = true;
    let mut ssr = builtin(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        false,
        &[],
        &[],
    );
    ssr.virtual_create_only = true;
    let mut ssar = builtin(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        false,
        &[],
        &[],
    );
    ssar.virtual_create_only = true;
    let mut crd = builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        &["api-extensions"],
    );
    crd.status_subresource = true;
    vec![
        ns,
        builtin("", "v1", "secrets", "Secret", true, &[], &[]),
        builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], &[]),
        sa,
        builtin("", "v1", "events", "Event", true, &["ev"], &[]),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            &[],
        ),
        builtin("events.k8s.io", "v1", "events", "Event", true, &["ev"], &[]),
        tr,
        ssr,
        ssar,
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            &[],
            &["api-extensions"],
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
            &[],
            &["api-extensions"],
        ),
        crd,
    ]
}

/// Immutable view of the served resources; replaced wholesale when CRDs change.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub by_id: BTreeMap<String, Arc<ResourceDef>>,
    /// (group, version, plural) → resource.
    by_gvr: HashMap<(String, String, String), Arc<ResourceDef>>,
    /// Group order as first registered.
    group_order: Vec<String>,
}

impl Registry {
    pub fn new(defs: Vec<ResourceDef>) -> Self {
        let mut r = Registry::default();
        for d in defs {
            r.insert(d);
        }
        r
    }

    pub fn insert(&mut self, def: ResourceDef) {
        self.remove(&def.key());
        if !self.group_order.contains(&def.group) {
            self.group_order.push(def.group.clone());
        }
        let def = Arc::new(def);
        for v in &def.versions {
            self.by_gvr.insert(
                (def.group.clone(), v.clone(), def.plural.clone()),
                def.clone(),
            );
        }
        self.by_id.insert(def.key(), def);
    }

    pub fn remove(&mut self, id: &str) {
        if let Some(old) = self.by_id.remove(id) {
            for v in &old.versions {
                self.by_gvr
                    .remove(&(old.group.clone(), v.clone(), old.plural.clone()));
            }
            if !self.by_id.values().any(|d| d.group == old.group) {
                self.group_order.retain(|g| g != &old.group);
            }
        }
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.by_gvr
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceDef>> {
        self.by_id
            .values()
            .find(|d| d.group == group && d.kind == kind)
            .cloned()
    }

    /// Versions of a group, preferred first (the order of the first resource's versions).
    fn group_versions(&self, group: &str) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for d in self.by_id.values().filter(|d| d.group == group) {
            for v in &d.versions {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
        }
        sort_versions(&mut out);
        out
    }

    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.by_id
            .values()
            .any(|d| d.group == group && d.serves(version))
    }

    pub fn api_versions(&self) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}],
        })
    }

    fn group_json(&self, group: &str) -> Value {
        let versions: Vec<Value> = self
            .group_versions(group)
            .iter()
            .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
            .collect();
        json!({
            "name": group,
            "versions": versions,
            "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
        })
    }

    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .group_order
            .iter()
            .filter(|g| !g.is_empty())
            .map(|g| self.group_json(g))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    pub fn api_group(&self, group: &str) -> Option<Value> {
        if group.is_empty() || !self.by_id.values().any(|d| d.group == group) {
            return None;
        }
        let mut g = self.group_json(group);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        Some(g)
    }

    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        if !self.has_group_version(group, version) {
            return None;
        }
        let mut resources = vec![];
        for d in self
            .by_id
            .values()
            .filter(|d| d.group == group && d.serves(version))
        {
            let mut r = json!({
                "name": d.plural,
                "singularName": d.singular,
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": d.verbs(),
            });
            if !d.short_names.is_empty() {
                r["shortNames"] = json!(d.short_names);
            }
            if !d.categories.is_empty() {
                r["categories"] = json!(d.categories);
            }
            if !d.custom && d.group != "authentication.k8s.io" {
                r["storageVersionHash"] = json!(storage_hash(&d.key()));
            }
            resources.push(r);
            if d.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", d.plural),
                    "singularName": "",
                    "namespaced": d.namespaced,
                    "kind": d.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
            for (name, g, v, kind, verbs) in &d.extra_subresources {
                resources.push(json!({
                    "name": format!("{}/{name}", d.plural),
                    "singularName": "",
                    "namespaced": d.namespaced,
                    "group": g,
                    "version": v,
                    "kind": kind,
                    "verbs": verbs,
                }));
            }
        }
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": if group.is_empty() { version.to_string() } else { format!("{group}/{version}") },
            "resources": resources,
        }))
    }
}

fn storage_hash(s: &str) -> String {
    use base64::Engine;
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&d.as_ref()[..8])
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first.
pub fn sort_versions(v: &mut [String]) {
    fn key(s: &str) -> (u8, i64, i64, String) {
        static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"^v(\d+)(?:(alpha|beta)(\d+))?$").expect("static regex")
        });
        match RE.captures(s) {
            Some(c) => {
                let major: i64 = c[1].parse().unwrap_or(0);
                let (rank, minor) = match c.get(2).map(|m| m.as_str()) {
                    None => (0, 0),
                    Some("beta") => (1, c[3].parse().unwrap_or(0)),
                    _ => (2, c[3].parse().unwrap_or(0)),
                };
                (rank, -major, -minor, String::new())
            }
            None => (3, 0, 0, s.to_string()),
        }
    }
    v.sort_by_key(|s| key(s));
}

/// Build the served definition of a CRD object; errors are field errors (path, reason, detail).
pub fn def_from_crd(crd: &Value) -> Result<ResourceDef, (String, String, String)> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    if group.is_empty() {
        return Err((
            "spec.group".into(),
            "FieldValueRequired".into(),
            "Required value".into(),
        ));
    }
    if plural.is_empty() {
        return Err((
            "spec.names.plural".into(),
            "FieldValueRequired".into(),
            "Required value".into(),
        ));
    }
    if kind.is_empty() {
        return Err((
            "spec.names.kind".into(),
            "FieldValueRequired".into(),
            "Required value".into(),
        ));
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if name != format!("{plural}.{group}") {
        return Err((
            "metadata.name".into(),
            "FieldValueInvalid".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let scope = spec["scope"].as_str().unwrap_or_default();
    let namespaced = match scope {
        "Namespaced" => true,
        "Cluster" => false,
        other => {
            return Err((
                "spec.scope".into(),
                "FieldValueNotSupported".into(),
                format!(
                    "Unsupported value: \"{other}\": supported values: \"Cluster\", \"Namespaced\""
                ),
            ));
        }
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        return Err((
            "spec.versions".into(),
            "FieldValueInvalid".into(),
            "Invalid value: null: must have exactly one version marked as storage version".into(),
        ));
    }
    let storage: Vec<&Value> = versions
        .iter()
        .filter(|v| v["storage"] == json!(true))
        .collect();
    if storage.len() != 1 {
        return Err((
            "spec.versions".into(),
            "FieldValueInvalid".into(),
            format!(
                "Invalid value: {}: must have exactly one version marked as storage version",
                serde_json::to_string(&versions).unwrap_or_default()
            ),
        ));
    }
    let mut served = vec![];
    let mut schemas = HashMap::new();
    let mut printer_columns = HashMap::new();
    let mut status_subresource = false;
    for v in &versions {
        let vname = v["name"].as_str().unwrap_or_default().to_string();
        if v["served"] == json!(true) {
            served.push(vname.clone());
        }
        if let Some(s) = v.pointer("/schema/openAPIV3Schema") {
            schemas.insert(vname.clone(), s.clone());
        }
        if v.pointer("/subresources/status").is_some() {
            status_subresource = true;
        }
        let cols = v["additionalPrinterColumns"]
            .as_array()
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: c["name"].as_str().unwrap_or_default().into(),
                        type_: c["type"].as_str().unwrap_or("string").into(),
                        format: c["format"].as_str().unwrap_or_default().into(),
                        description: c["description"].as_str().unwrap_or_default().into(),
                        priority: c["priority"].as_i64().unwrap_or(0),
                        json_path: c["jsonPath"].as_str().unwrap_or_default().into(),
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        printer_columns.insert(vname, cols);
    }
    sort_versions(&mut served);
    let str_list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(ResourceDef {
        group,
        versions: served,
        storage_version: storage[0]["name"].as_str().unwrap_or_default().to_string(),
        singular: names["singular"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| kind.to_lowercase()),
        list_kind: names["listKind"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| format!("{kind}List")),
        plural,
        kind,
        namespaced,
        short_names: str_list(&names["shortNames"]),
        categories: str_list(&names["categories"]),
        status_subresource,
        custom: true,
        virtual_create_only: false,
        schemas,
        printer_columns,
        extra_subresources: vec![],
    })
}

impl Registry {
    /// `/openapi/v3`: one entry per served group-version.
    pub fn openapi_v3_root(&self) -> Value {
        let mut paths = serde_json::Map::new();
        let mut gvs: Vec<(String, String)> = vec![];
        for d in self.by_id.values() {
            for v in &d.versions {
                if !gvs.contains(&(d.group.clone(), v.clone())) {
                    gvs.push((d.group.clone(), v.clone()));
                }
            }
        }
        for (g, v) in gvs {
            let p = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            let doc = self.openapi_v3_gv(&g, &v).unwrap_or_default();
            let hash = storage_hash(&doc.to_string());
            paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash.replace(['+', '/', '='], ""))}));
        }
        json!({"paths": paths})
    }

    /// The OpenAPI v3 document of one group-version: the operations with their
    /// group-version-kind and the query parameters kubectl checks for support.
    pub fn openapi_v3_gv(&self, group: &str, version: &str) -> Option<Value> {
        if !self.has_group_version(group, version) {
            return None;
        }
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let mut paths = serde_json::Map::new();
        let mut schemas = serde_json::Map::new();
        let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        for d in self
            .by_id
            .values()
            .filter(|d| d.group == group && d.serves(version))
        {
            let gvk = json!({"group": group, "version": version, "kind": d.kind});
            let ok = json!({"200": {"description": "OK"}});
            let item = if d.namespaced {
                format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
            } else {
                format!("{prefix}/{}/{{name}}", d.plural)
            };
            let coll = if d.namespaced {
                format!("{prefix}/namespaces/{{namespace}}/{}", d.plural)
            } else {
                format!("{prefix}/{}", d.plural)
            };
            let op = |verb: &str| {
                json!({
                    "operationId": format!("{verb}{}", d.kind),
                    "x-kubernetes-action": verb,
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation")],
                    "responses": ok,
                })
            };
            if d.virtual_create_only {
                paths.insert(coll, json!({"post": op("post")}));
                continue;
            }
            let mut patch = op("patch");
            patch["parameters"]
                .as_array_mut()
                .expect("array")
                .push(param("force"));
            paths.insert(
                item,
                json!({"get": op("get"), "put": op("put"), "patch": patch, "delete": op("delete")}),
            );
            paths.insert(
                coll,
                json!({"get": op("list"), "post": op("post"), "delete": op("deletecollection")}),
            );
            if d.custom {
                let mut s = d.schemas.get(version).cloned().unwrap_or_else(
                    || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                );
                s["x-kubernetes-group-version-kind"] = json!([gvk]);
                let name = format!("{}.{version}.{}", reverse_domain(group), d.kind);
                schemas.insert(name, s);
            }
        }
        Some(json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.34.0"},
            "paths": paths,
            "components": {"schemas": schemas},
        }))
    }
}

fn reverse_domain(group: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    parts.join(".")
}

impl Registry {
    /// Aggregated discovery (`apidiscovery.k8s.io/v2` APIGroupDiscoveryList) of
    /// the core group (`core = true`, served at `/api`) or of all named groups.
    pub fn aggregated(&self, core: bool) -> Value {
        let groups: Vec<String> = if core {
            vec![String::new()]
        } else {
            self.group_order
                .iter()
                .filter(|g| !g.is_empty())
                .cloned()
                .collect()
        };
        let items: Vec<Value> = groups
            .iter()
            .map(|g| {
                let versions: Vec<Value> = self
                    .group_versions(g)
                    .iter()
                    .map(|v| {
                        let resources: Vec<Value> = self
                            .by_id
                            .values()
                            .filter(|d| d.group == *g && d.serves(v))
                            .map(|d| {
                                let kind = json!({"group": g, "version": v, "kind": d.kind});
                                let mut subs = vec![];
                                if d.status_subresource {
                                    subs.push(json!({"subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"]}));
                                }
                                for (name, sg, sv, sk, verbs) in &d.extra_subresources {
                                    subs.push(json!({
                                        "subresource": name,
                                        "responseKind": {"group": sg, "version": sv, "kind": sk},
                                        "verbs": verbs,
                                    }));
                                }
                                let mut r = json!({
                                    "resource": d.plural,
                                    "responseKind": kind,
                                    "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
                                    "singularResource": d.singular,
                                    "verbs": d.verbs(),
                                });
                                if !d.short_names.is_empty() {
                                    r["shortNames"] = json!(d.short_names);
                                }
                                if !d.categories.is_empty() {
                                    r["categories"] = json!(d.categories);
                                }
                                if !subs.is_empty() {
                                    r["subresources"] = Value::Array(subs);
                                }
                                r
                            })
                            .collect();
                        json!({"version": v, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                let md = if g.is_empty() { json!({}) } else { json!({"name": g}) };
                json!({"metadata": md, "versions": versions})
            })
            .collect();
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        })
    }
}
