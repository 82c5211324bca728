//! The Kubernetes auth method: logins are checked with a TokenReview sent to
//! the configured API server.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{LoginOk, TokenParams, list_keys, split_named};
use crate::server::Op;
use crate::util::{Resp, opt_bool, opt_str, string_list};

#[derive(Clone)]
struct Config {
    host: String,
    ca_cert: Option<String>,
    reviewer_jwt: Option<String>,
    issuer: String,
    disable_iss_validation: bool,
    disable_local_ca_jwt: bool,
    client: reqwest::Client,
}

#[derive(Clone, Default)]
struct Role {
    names: Vec<String>,
    namespaces: Vec<String>,
    audience: Option<String>,
    alias_name_source: String,
    token: TokenParams,
}

#[derive(Default)]
pub(crate) struct KubeAuth {
    config: Option<Config>,
    roles: BTreeMap<String, Role>,
}

pub(crate) struct LoginPlan {
    role_name: String,
    role: Role,
    config: Config,
    jwt: String,
}

impl KubeAuth {
    pub fn read(&self, op: Op, rest: &str) -> Option<Resp> {
        match (rest, op) {
            ("config", Op::Read) => {
                return Some(match &self.config {
                    Some(c) => Resp::data(json!({
                        "kubernetes_host": c.host,
                        "kubernetes_ca_cert": c.ca_cert.clone().unwrap_or_default(),
                        "token_reviewer_jwt_set": c.reviewer_jwt.is_some(),
                        "pem_keys": [],
                        "issuer": c.issuer,
                        "disable_iss_validation": c.disable_iss_validation,
                        "disable_local_ca_jwt": c.disable_local_ca_jwt,
                        "use_annotations_as_alias_metadata": false,
                    })),
                    None => Resp::no_content(),
                });
            }
            ("role", Op::List) => return Some(list_keys(self.roles.keys())),
            _ => {}
        }
        let (name, "") = split_named(rest, "role")? else {
            return None;
        };
        Some(match (self.roles.get(&name.to_lowercase()), op) {
            (Some(r), Op::Read) => {
                let mut m = Map::new();
                m.insert("bound_service_account_names".into(), json!(r.names));
                m.insert(
                    "bound_service_account_namespaces".into(),
                    json!(r.namespaces),
                );
                m.insert(
                    "audience".into(),
                    json!(r.audience.clone().unwrap_or_default()),
                );
                m.insert("alias_name_source".into(), json!(r.alias_name_source));
                r.token.write_json(&mut m);
                Resp::data(Value::Object(m))
            }
            (None, Op::Read) => Resp::not_found(),
            _ => Resp::unsupported_op(),
        })
    }

    pub fn write(&mut self, op: Op, rest: &str, body: &Value) -> Option<Resp> {
        if rest == "config" {
            return Some(match op {
                Op::Write => match parse_config(body) {
                    Ok(c) => {
                        self.config = Some(c);
                        Resp::no_content()
                    }
                    Err(e) => Resp::bad_request(e),
                },
                _ => Resp::unsupported_op(),
            });
        }
        let (name, "") = split_named(rest, "role")? else {
            return None;
        };
        let name = name.to_lowercase();
        Some(match op {
            Op::Write => {
                let mut role = self.roles.get(&name).cloned().unwrap_or(Role {
                    alias_name_source: "serviceaccount_uid".into(),
                    ..Default::default()
                });
                let r = (|| -> Result<(), String> {
                    if body.get("bound_service_account_names").is_some() {
                        role.names = string_list(body.get("bound_service_account_names"))?;
                    }
                    if body.get("bound_service_account_namespaces").is_some() {
                        role.namespaces =
                            string_list(body.get("bound_service_account_namespaces"))?;
                    }
                    if let Some(a) = opt_str(body, "audience") {
                        role.audience = (!a.is_empty()).then_some(a);
                    }
                    if let Some(s) = opt_str(body, "alias_name_source") {
                        role.alias_name_source = s;
                    }
                    role.token.update(body)?;
                    if role.names.is_empty() {
                        return Err("\"bound_service_account_names\" can not be empty".into());
                    }
                    if role.namespaces.is_empty() {
                        return Err("\"bound_service_account_namespaces\" can not be empty".into());
                    }
                    if role.names.len() > 1 && role.names.iter().any(|n| n == "*") {
                        return Err("can not mix \"*\" with values".into());
                    }
                    Ok(())
                })();
                match r {
                    Ok(()) => {
                        self.roles.insert(name, role);
                        Resp::no_content()
                    }
                    Err(e) => Resp::bad_request(e),
                }
            }
            Op::Delete => {
                self.roles.remove(&name);
                Resp::no_content()
            }
            _ => Resp::unsupported_op(),
        })
    }

    pub fn plan(&self, body: &Value) -> Result<LoginPlan, Resp> {
        let role_name = opt_str(body, "role").unwrap_or_default().to_lowercase();
        if role_name.is_empty() {
            return Err(Resp::bad_request("missing role"));
        }
        let jwt = opt_str(body, "jwt").unwrap_or_default();
        if jwt.is_empty() {
            return Err(Resp::bad_request("missing jwt"));
        }
        let Some(role) = self.roles.get(&role_name).cloned() else {
            return Err(Resp::bad_request(format!(
                "invalid role name \"{role_name}\""
            )));
        };
        let Some(config) = self.config.clone() else {
            return Err(Resp::bad_request("could not load backend configuration"));
        };
        Ok(LoginPlan {
            role_name,
            role,
            config,
            jwt,
        })
    }
}

fn parse_config(body: &Value) -> Result<Config, String> {
    let host = opt_str(body, "kubernetes_host").unwrap_or_default();
    if host.is_empty() {
        return Err("no host provided".into());
    }
    if !host.starts_with("https://") && !host.starts_with("http://") {
        return Err(format!("invalid kubernetes_host {host:?}"));
    }
    let ca_cert = opt_str(body, "kubernetes_ca_cert").filter(|c| !c.is_empty());
    if let Some(ca) = &ca_cert {
        crate::tls::roots_from_pem(ca)
            .map_err(|e| format!("failed to parse kubernetes_ca_cert: {e}"))?;
    }
    let reviewer_jwt = opt_str(body, "token_reviewer_jwt").filter(|c| !c.is_empty());
    let client = crate::tls::http_client(ca_cert.as_deref()).map_err(|e| e.to_string())?;
    Ok(Config {
        host: host.trim_end_matches('/').to_string(),
        ca_cert,
        reviewer_jwt,
        issuer: opt_str(body, "issuer").unwrap_or_default(),
        disable_iss_validation: opt_bool(body, "disable_iss_validation")?.unwrap_or(true),
        disable_local_ca_jwt: opt_bool(body, "disable_local_ca_jwt")?.unwrap_or(false),
        client,
    })
}

/// The service account a JWT claims to be, when the JWT is readable.
fn jwt_identity(jwt: &str) -> Option<(String, String, Option<String>)> {
    let jws = super::jwt::decode(jwt).ok()?;
    let c = &jws.claims;
    if let Some(k) = c.get("kubernetes.io") {
        let ns = k.get("namespace")?.as_str()?.to_string();
        let sa = k.get("serviceaccount")?;
        let name = sa.get("name")?.as_str()?.to_string();
        let uid = sa.get("uid").and_then(Value::as_str).map(str::to_string);
        return Some((ns, name, uid));
    }
    let ns = c
        .get("kubernetes.io/serviceaccount/namespace")
        .and_then(Value::as_str);
    let name = c
        .get("kubernetes.io/serviceaccount/service-account.name")
        .and_then(Value::as_str);
    if let (Some(ns), Some(name)) = (ns, name) {
        let uid = c
            .get("kubernetes.io/serviceaccount/service-account.uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        return Some((ns.to_string(), name.to_string(), uid));
    }
    let sub = c.get("sub")?.as_str()?;
    let parts: Vec<&str> = sub.split(':').collect();
    match parts.as_slice() {
        ["system", "serviceaccount", ns, name] => Some((ns.to_string(), name.to_string(), None)),
        _ => None,
    }
}

fn bound(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x == "*" || x == v)
}

impl LoginPlan {
    pub async fn run(self) -> Result<LoginOk, Resp> {
        let claimed = jwt_identity(&self.jwt);
        // Vault checks the claimed identity against the role before asking
        // the API server.
        if let Some((ns, name, _)) = &claimed {
            if !bound(&self.role.names, name) {
                return Err(Resp::err(403, "service account name not authorized"));
            }
            if !bound(&self.role.namespaces, ns) {
                return Err(Resp::err(403, "namespace not authorized"));
            }
        }
        let bearer = self
            .config
            .reviewer_jwt
            .clone()
            .unwrap_or_else(|| self.jwt.clone());
        let mut spec = json!({ "token": self.jwt });
        if let Some(aud) = &self.role.audience {
            spec["audiences"] = json!([aud]);
        }
        let review = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": spec,
        });
        let url = format!(
            "{}/apis/authentication.k8s.io/v1/tokenreviews",
            self.config.host
        );
        let send = self
            .config
            .client
            .post(&url)
            .bearer_auth(bearer)
            .header("accept", "application/json")
            .json(&review)
            .send();
        let resp = match tokio::time::timeout(Duration::from_secs(10), send).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!("token review failed: {e}");
                return Err(Resp::denied());
            }
            Err(_) => return Err(Resp::denied()),
        };
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            tracing::debug!("token review answered {status}: {body}");
            return Err(Resp::denied());
        }
        let st = body.get("status").cloned().unwrap_or(Value::Null);
        if st.get("authenticated").and_then(Value::as_bool) != Some(true) {
            return Err(Resp::denied());
        }
        if let Some(aud) = &self.role.audience {
            let auds: Vec<&str> = st
                .get("audiences")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !auds.contains(&aud.as_str()) {
                return Err(Resp::denied());
            }
        }
        let username = st
            .pointer("/user/username")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let uid = st
            .pointer("/user/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let parts: Vec<&str> = username.split(':').collect();
        let ["system", "serviceaccount", ns, name] = parts.as_slice() else {
            return Err(Resp::denied());
        };
        if let Some((cns, cname, cuid)) = &claimed
            && (cns != ns
                || cname != name
                || cuid.as_deref().is_some_and(|u| !uid.is_empty() && u != uid))
        {
            return Err(Resp::denied());
        }
        if !bound(&self.role.names, name) {
            return Err(Resp::err(403, "service account name not authorized"));
        }
        if !bound(&self.role.namespaces, ns) {
            return Err(Resp::err(403, "namespace not authorized"));
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("role".to_string(), self.role_name.clone());
        metadata.insert("service_account_name".to_string(), name.to_string());
        metadata.insert("service_account_namespace".to_string(), ns.to_string());
        metadata.insert("service_account_secret_name".to_string(), String::new());
        metadata.insert("service_account_uid".to_string(), uid);
        Ok(LoginOk {
            params: self.role.token.clone(),
            metadata,
            display_name: format!("kubernetes-{ns}-{name}"),
        })
    }
}
