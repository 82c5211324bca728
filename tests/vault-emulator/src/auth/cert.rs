//! The TLS certificate auth method: the client certificate presented on the
//! TLS connection must be, or chain to, a trusted certificate of a role.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde_json::{Map, Value, json};

use super::{LoginOk, TokenParams, list_keys, split_named};
use crate::server::Op;
use crate::util::{Resp, opt_str, string_list};

#[derive(Clone, Default)]
struct CertRole {
    pem: String,
    ders: Vec<CertificateDer<'static>>,
    display_name: String,
    allowed_common_names: Vec<String>,
    token: TokenParams,
}

#[derive(Default)]
pub(crate) struct CertAuth {
    roles: BTreeMap<String, CertRole>,
    config: Map<String, Value>,
}

fn hex_colon(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl CertRole {
    fn trusts(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some(leaf) = chain.first() else {
            return false;
        };
        if self.ders.iter().any(|d| d.as_ref() == leaf.as_ref()) {
            return true;
        }
        let mut roots = rustls::RootCertStore::empty();
        for d in &self.ders {
            let _ = roots.add(d.clone());
        }
        if roots.is_empty() {
            return false;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let Ok(verifier) =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
        else {
            return false;
        };
        verifier
            .verify_client_cert(leaf, &chain[1..], UnixTime::now())
            .is_ok()
    }
}

impl CertAuth {
    pub fn read(&self, op: Op, rest: &str) -> Option<Resp> {
        match (rest, op) {
            ("certs", Op::List) => return Some(list_keys(self.roles.keys())),
            ("config", Op::Read) => return Some(Resp::data(Value::Object(self.config.clone()))),
            _ => {}
        }
        let (name, "") = split_named(rest, "certs")? else {
            return None;
        };
        Some(match (self.roles.get(&name.to_lowercase()), op) {
            (Some(r), Op::Read) => {
                let mut m = Map::new();
                m.insert("certificate".into(), json!(r.pem));
                m.insert("display_name".into(), json!(r.display_name));
                m.insert("allowed_common_names".into(), json!(r.allowed_common_names));
                m.insert("allowed_dns_sans".into(), json!([]));
                m.insert("allowed_email_sans".into(), json!([]));
                m.insert("allowed_uri_sans".into(), json!([]));
                m.insert("allowed_organizational_units".into(), json!([]));
                m.insert("required_extensions".into(), json!([]));
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
                Op::Write => {
                    if let Value::Object(m) = body {
                        self.config.extend(m.clone());
                    }
                    Resp::no_content()
                }
                _ => Resp::unsupported_op(),
            });
        }
        let (name, "") = split_named(rest, "certs")? else {
            return None;
        };
        let name = name.to_lowercase();
        Some(match op {
            Op::Write => {
                let mut role = self.roles.get(&name).cloned().unwrap_or_default();
                let r = (|| -> Result<(), String> {
                    if let Some(pem) = opt_str(body, "certificate") {
                        let ders: Vec<CertificateDer<'static>> =
                            CertificateDer::pem_slice_iter(pem.as_bytes())
                                .collect::<Result<_, _>>()
                                .map_err(|e| format!("failed to parse certificate: {e}"))?;
                        if ders.is_empty() {
                            return Err("failed to parse certificate".into());
                        }
                        role.pem = pem;
                        role.ders = ders;
                    }
                    if role.ders.is_empty() {
                        return Err("failed to parse certificate".into());
                    }
                    if let Some(d) = opt_str(body, "display_name") {
                        role.display_name = d;
                    }
                    if body.get("allowed_common_names").is_some() {
                        role.allowed_common_names = string_list(body.get("allowed_common_names"))?;
                    }
                    role.token.update(body)
                })();
                match r {
                    Ok(()) => {
                        if role.display_name.is_empty() {
                            role.display_name = name.clone();
                        }
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

    pub fn login(
        &self,
        body: &Value,
        chain: Option<&Vec<CertificateDer<'static>>>,
    ) -> Result<LoginOk, Resp> {
        let Some(chain) = chain.filter(|c| !c.is_empty()) else {
            return Err(Resp::bad_request("client certificate must be supplied"));
        };
        let leaf = &chain[0];
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|_| Resp::bad_request("failed to parse client certificate"))?;
        let cn = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let wanted = opt_str(body, "name")
            .filter(|n| !n.is_empty())
            .map(|n| n.to_lowercase());
        let candidates: Vec<(&String, &CertRole)> = self
            .roles
            .iter()
            .filter(|(n, _)| wanted.as_ref().is_none_or(|w| w == *n))
            .collect();
        for (name, role) in candidates {
            if !role.allowed_common_names.is_empty()
                && !role.allowed_common_names.iter().any(|p| glob_match(p, &cn))
            {
                continue;
            }
            if role.trusts(chain) {
                let mut metadata = BTreeMap::new();
                metadata.insert("cert_name".to_string(), name.clone());
                metadata.insert("common_name".to_string(), cn.clone());
                metadata.insert("serial_number".to_string(), parsed.raw_serial_as_string());
                let ski = parsed
                    .extensions()
                    .iter()
                    .find_map(|e| match e.parsed_extension() {
                        x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                            Some(hex_colon(k.0))
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                let aki = parsed
                    .extensions()
                    .iter()
                    .find_map(|e| match e.parsed_extension() {
                        x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(k) => {
                            k.key_identifier.as_ref().map(|k| hex_colon(k.0))
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                metadata.insert("subject_key_id".to_string(), ski);
                metadata.insert("authority_key_id".to_string(), aki);
                return Ok(LoginOk {
                    params: role.token.clone(),
                    metadata,
                    display_name: format!("cert-{}", role.display_name),
                });
            }
        }
        Err(Resp::bad_request(
            "invalid certificate or no client certificate supplied",
        ))
    }
}

/// `*` wildcard matching as used by `allowed_common_names`.
fn glob_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((pre, post)) => {
            value.len() >= pre.len() + post.len() && value.starts_with(pre) && value.ends_with(post)
        }
    }
}
