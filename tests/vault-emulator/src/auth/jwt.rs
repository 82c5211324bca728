//! The JWT auth method: signature verification against configured PEM keys
//! or a JWKS URL, then Vault's claim checks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature;
use rustls::pki_types::pem::{PemObject as _, SectionKind};
use serde_json::{Map, Value, json};

use super::{LoginOk, TokenParams, list_keys, split_named};
use crate::server::Op;
use crate::util::{Resp, opt_str, parse_duration, string_list};

/// A public key usable for JWS verification.
#[derive(Clone, Debug)]
pub(crate) enum PubKey {
    /// PKCS#1 RSAPublicKey DER.
    Rsa(Vec<u8>),
    /// Uncompressed SEC1 point and the curve's JWS name.
    Ec(Vec<u8>, &'static str),
    Ed25519(Vec<u8>),
}

#[derive(Clone, Debug)]
pub(crate) struct Jwk {
    pub kid: Option<String>,
    pub key: PubKey,
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";

fn key_from_spki(der: &[u8]) -> Result<PubKey, String> {
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
        .map_err(|e| format!("error parsing public key: {e}"))?;
    key_from_parsed_spki(&spki)
}

fn key_from_parsed_spki(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<PubKey, String> {
    let alg = spki.algorithm.algorithm.to_id_string();
    let bits = spki.subject_public_key.data.to_vec();
    match alg.as_str() {
        OID_RSA => Ok(PubKey::Rsa(bits)),
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => Ok(PubKey::Ec(bits, "ES256")),
                OID_P384 => Ok(PubKey::Ec(bits, "ES384")),
                other => Err(format!("unsupported elliptic curve {other}")),
            }
        }
        OID_ED25519 => Ok(PubKey::Ed25519(bits)),
        other => Err(format!("unsupported public key algorithm {other}")),
    }
}

/// Parses a PEM public key or certificate, as `jwt_validation_pubkeys`
/// accepts both.
pub(crate) fn parse_pem_key(pem: &str) -> Result<PubKey, String> {
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes()) {
        match item.map_err(|e| format!("error parsing public key: {e}"))? {
            (SectionKind::PublicKey, spki) => {
                return key_from_spki(&spki);
            }
            (SectionKind::Certificate, cert) => {
                let (_, c) = x509_parser::parse_x509_certificate(&cert)
                    .map_err(|e| format!("error parsing certificate: {e}"))?;
                return key_from_parsed_spki(c.public_key());
            }
            _ => continue,
        }
    }
    if pem.contains("RSA PUBLIC KEY") {
        // PKCS#1 "RSA PUBLIC KEY" blocks carry the key DER directly.
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("error parsing public key: {e}"))?;
        return Ok(PubKey::Rsa(der));
    }
    Err("error parsing public key: no PEM public key found".into())
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("invalid base64: {e}"))
}

/// Encodes a DER length.
fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn der_uint(v: &[u8], out: &mut Vec<u8>) {
    let v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
    let pad = v.first().is_some_and(|b| b & 0x80 != 0);
    out.push(0x02);
    der_len(v.len() + usize::from(pad), out);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(&v);
}

/// Builds PKCS#1 RSAPublicKey DER from a JWK's modulus and exponent.
fn rsa_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut inner = Vec::new();
    der_uint(n, &mut inner);
    der_uint(e, &mut inner);
    let mut out = vec![0x30];
    der_len(inner.len(), &mut out);
    out.extend(inner);
    out
}

pub(crate) fn parse_jwks(v: &Value) -> Result<Vec<Jwk>, String> {
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no keys")?;
    let mut out = Vec::new();
    for k in keys {
        let kid = k.get("kid").and_then(Value::as_str).map(str::to_string);
        let field = |name: &str| -> Result<Vec<u8>, String> {
            b64(k
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("JWK missing {name}"))?)
        };
        let key = match k.get("kty").and_then(Value::as_str) {
            Some("RSA") => PubKey::Rsa(rsa_der(&field("n")?, &field("e")?)),
            Some("EC") => {
                let alg = match k.get("crv").and_then(Value::as_str) {
                    Some("P-256") => "ES256",
                    Some("P-384") => "ES384",
                    _ => continue,
                };
                let mut point = vec![0x04];
                point.extend(field("x")?);
                point.extend(field("y")?);
                PubKey::Ec(point, alg)
            }
            Some("OKP") if k.get("crv").and_then(Value::as_str) == Some("Ed25519") => {
                PubKey::Ed25519(field("x")?)
            }
            _ => continue,
        };
        out.push(Jwk { kid, key });
    }
    Ok(out)
}

fn verify_with(key: &PubKey, alg: &str, msg: &[u8], sig: &[u8]) -> bool {
    let (algo, bytes): (&'static dyn signature::VerificationAlgorithm, &[u8]) = match (key, alg) {
        (PubKey::Rsa(k), "RS256") => (&signature::RSA_PKCS1_2048_8192_SHA256, k),
        (PubKey::Rsa(k), "RS384") => (&signature::RSA_PKCS1_2048_8192_SHA384, k),
        (PubKey::Rsa(k), "RS512") => (&signature::RSA_PKCS1_2048_8192_SHA512, k),
        (PubKey::Rsa(k), "PS256") => (&signature::RSA_PSS_2048_8192_SHA256, k),
        (PubKey::Rsa(k), "PS384") => (&signature::RSA_PSS_2048_8192_SHA384, k),
        (PubKey::Rsa(k), "PS512") => (&signature::RSA_PSS_2048_8192_SHA512, k),
        (PubKey::Ec(k, "ES256"), "ES256") => (&signature::ECDSA_P256_SHA256_FIXED, k),
        (PubKey::Ec(k, "ES384"), "ES384") => (&signature::ECDSA_P384_SHA384_FIXED, k),
        (PubKey::Ed25519(k), "EdDSA") => (&signature::ED25519, k),
        _ => return false,
    };
    signature::UnparsedPublicKey::new(algo, bytes)
        .verify(msg, sig)
        .is_ok()
}

/// A decoded, not yet verified, compact JWS.
pub(crate) struct Jws {
    pub header: Value,
    pub claims: Value,
    signing_input: String,
    sig: Vec<u8>,
}

pub(crate) fn decode(token: &str) -> Result<Jws, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts.as_slice() else {
        return Err("square/go-jose: compact JWS format must have three parts".into());
    };
    let header: Value = serde_json::from_slice(&b64(h)?).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&b64(c)?).map_err(|e| e.to_string())?;
    Ok(Jws {
        header,
        claims,
        signing_input: format!("{h}.{c}"),
        sig: b64(s)?,
    })
}

impl Jws {
    fn verify(&self, keys: &[Jwk]) -> bool {
        let alg = self.header.get("alg").and_then(Value::as_str).unwrap_or("");
        let kid = self.header.get("kid").and_then(Value::as_str);
        keys.iter()
            .filter(|k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
            .any(|k| verify_with(&k.key, alg, self.signing_input.as_bytes(), &self.sig))
    }
}

#[derive(Clone, Default)]
struct Config {
    raw: Map<String, Value>,
    pubkeys: Vec<Jwk>,
    jwks_url: Option<String>,
    discovery_url: Option<String>,
    discovery_ca_pem: Option<String>,
    jwks_ca_pem: Option<String>,
    bound_issuer: Option<String>,
    supported_algs: Vec<String>,
    default_role: Option<String>,
}

#[derive(Clone, Default)]
struct Role {
    role_type: String,
    bound_audiences: Vec<String>,
    bound_subject: String,
    bound_claims: Map<String, Value>,
    claim_mappings: BTreeMap<String, String>,
    user_claim: String,
    groups_claim: String,
    clock_skew_leeway: i64,
    expiration_leeway: i64,
    not_before_leeway: i64,
    token: TokenParams,
}

#[derive(Default)]
pub(crate) struct JwtAuth {
    config: Option<Config>,
    roles: BTreeMap<String, Role>,
    /// Remote keys (and, with discovery, the provider's issuer).
    jwks_cache: Option<(Instant, RemoteKeys)>,
}

#[derive(Clone)]
pub(crate) struct RemoteKeys {
    keys: Vec<Jwk>,
    issuer: Option<String>,
}

pub(crate) struct LoginPlan {
    role_name: String,
    role: Role,
    config: Config,
    cached: Option<RemoteKeys>,
    jwt: String,
}

fn leeway(body: &Value, key: &str, default: i64) -> Result<i64, String> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("invalid {key}")),
        Some(v) => parse_duration(v).map(|d| d as i64),
    }
}

impl JwtAuth {
    pub fn store_jwks(&mut self, keys: RemoteKeys) {
        self.jwks_cache = Some((Instant::now(), keys));
    }

    pub fn read(&self, op: Op, rest: &str) -> Option<Resp> {
        match (rest, op) {
            ("config", Op::Read) => {
                return Some(match &self.config {
                    Some(c) => Resp::data(Value::Object(c.raw.clone())),
                    None => Resp::no_content(),
                });
            }
            ("role", Op::List) => return Some(list_keys(self.roles.keys())),
            _ => {}
        }
        let (name, "") = split_named(rest, "role")? else {
            return None;
        };
        Some(match (self.roles.get(name), op) {
            (Some(r), Op::Read) => {
                let mut m = Map::new();
                m.insert("role_type".into(), json!(r.role_type));
                m.insert("bound_audiences".into(), json!(r.bound_audiences));
                m.insert("bound_subject".into(), json!(r.bound_subject));
                m.insert(
                    "bound_claims".into(),
                    if r.bound_claims.is_empty() {
                        Value::Null
                    } else {
                        Value::Object(r.bound_claims.clone())
                    },
                );
                m.insert(
                    "claim_mappings".into(),
                    if r.claim_mappings.is_empty() {
                        Value::Null
                    } else {
                        json!(r.claim_mappings)
                    },
                );
                m.insert("user_claim".into(), json!(r.user_claim));
                m.insert("groups_claim".into(), json!(r.groups_claim));
                m.insert("clock_skew_leeway".into(), json!(r.clock_skew_leeway));
                m.insert("expiration_leeway".into(), json!(r.expiration_leeway));
                m.insert("not_before_leeway".into(), json!(r.not_before_leeway));
                m.insert("allowed_redirect_uris".into(), json!([]));
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
                Op::Write => match Self::parse_config(body) {
                    Ok(c) => {
                        self.config = Some(c);
                        self.jwks_cache = None;
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
        let name = name.to_string();
        Some(match op {
            Op::Write => {
                let mut role = self.roles.get(&name).cloned().unwrap_or(Role {
                    role_type: "oidc".into(),
                    clock_skew_leeway: 60,
                    expiration_leeway: 150,
                    not_before_leeway: 150,
                    ..Default::default()
                });
                match Self::update_role(&mut role, body) {
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

    fn parse_config(body: &Value) -> Result<Config, String> {
        let pem_list = string_list_raw(body.get("jwt_validation_pubkeys"))?;
        let jwks_url = opt_str(body, "jwks_url").filter(|s| !s.is_empty());
        let discovery = opt_str(body, "oidc_discovery_url").filter(|s| !s.is_empty());
        let set = usize::from(!pem_list.is_empty())
            + usize::from(jwks_url.is_some())
            + usize::from(discovery.is_some());
        if set != 1 {
            return Err(
                "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set".into(),
            );
        }
        let discovery_ca_pem = opt_str(body, "oidc_discovery_ca_pem").filter(|s| !s.is_empty());
        if let Some(ca) = &discovery_ca_pem {
            crate::tls::roots_from_pem(ca)
                .map_err(|e| format!("could not parse 'oidc_discovery_ca_pem': {e}"))?;
        }
        let mut pubkeys = Vec::new();
        for pem in &pem_list {
            pubkeys.push(Jwk {
                kid: None,
                key: parse_pem_key(pem)?,
            });
        }
        let jwks_ca_pem = opt_str(body, "jwks_ca_pem").filter(|s| !s.is_empty());
        if let Some(ca) = &jwks_ca_pem {
            crate::tls::roots_from_pem(ca)
                .map_err(|e| format!("could not parse 'jwks_ca_pem': {e}"))?;
        }
        let supported_algs = string_list(body.get("jwt_supported_algs"))?;
        let mut raw = body.as_object().cloned().unwrap_or_default();
        for k in ["jwt_validation_pubkeys", "jwt_supported_algs"] {
            raw.entry(k.to_string()).or_insert(json!([]));
        }
        for k in [
            "jwks_url",
            "jwks_ca_pem",
            "bound_issuer",
            "oidc_discovery_url",
            "oidc_discovery_ca_pem",
            "default_role",
        ] {
            raw.entry(k.to_string()).or_insert(json!(""));
        }
        Ok(Config {
            raw,
            pubkeys,
            jwks_url,
            jwks_ca_pem,
            discovery_url: discovery.map(|d| d.trim_end_matches('/').to_string()),
            discovery_ca_pem,
            bound_issuer: opt_str(body, "bound_issuer").filter(|s| !s.is_empty()),
            supported_algs,
            default_role: opt_str(body, "default_role").filter(|s| !s.is_empty()),
        })
    }

    fn update_role(role: &mut Role, body: &Value) -> Result<(), String> {
        if let Some(t) = opt_str(body, "role_type") {
            if t != "jwt" && t != "oidc" {
                return Err(format!("invalid 'role_type': {t}"));
            }
            role.role_type = t;
        }
        if body.get("bound_audiences").is_some() {
            role.bound_audiences = string_list(body.get("bound_audiences"))?;
        }
        if let Some(s) = opt_str(body, "bound_subject") {
            role.bound_subject = s;
        }
        if let Some(c) = body.get("bound_claims") {
            role.bound_claims = c.as_object().cloned().unwrap_or_default();
        }
        if let Some(Value::Object(m)) = body.get("claim_mappings") {
            role.claim_mappings = m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
        }
        if let Some(u) = opt_str(body, "user_claim") {
            role.user_claim = u;
        }
        if let Some(g) = opt_str(body, "groups_claim") {
            role.groups_claim = g;
        }
        role.clock_skew_leeway = leeway(body, "clock_skew_leeway", role.clock_skew_leeway)?;
        role.expiration_leeway = leeway(body, "expiration_leeway", role.expiration_leeway)?;
        role.not_before_leeway = leeway(body, "not_before_leeway", role.not_before_leeway)?;
        role.token.update(body)?;
        if role.user_claim.is_empty() {
            return Err("a user claim must be defined on the role".into());
        }
        if role.role_type == "jwt"
            && role.bound_audiences.is_empty()
            && role.bound_subject.is_empty()
            && role.bound_claims.is_empty()
        {
            return Err(
                "must have at least one bound constraint when creating/updating a role".into(),
            );
        }
        Ok(())
    }

    pub fn plan(&mut self, body: &Value) -> Result<LoginPlan, Resp> {
        let Some(config) = self.config.clone() else {
            return Err(Resp::bad_request("could not load configuration"));
        };
        let role_name = opt_str(body, "role")
            .filter(|r| !r.is_empty())
            .or(config.default_role.clone())
            .ok_or_else(|| Resp::bad_request("missing role"))?;
        let Some(role) = self.roles.get(&role_name).cloned() else {
            return Err(Resp::bad_request(format!(
                "role \"{role_name}\" could not be found"
            )));
        };
        if role.role_type == "oidc" {
            return Err(Resp::bad_request("role with oidc role_type is not allowed"));
        }
        let jwt = opt_str(body, "jwt").unwrap_or_default();
        if jwt.is_empty() {
            return Err(Resp::bad_request("missing token"));
        }
        let cached = self
            .jwks_cache
            .as_ref()
            .filter(|(at, _)| at.elapsed() < Duration::from_secs(60))
            .map(|(_, k)| k.clone());
        Ok(LoginPlan {
            role_name,
            role,
            config,
            cached,
            jwt,
        })
    }
}

fn string_list_raw(v: Option<&Value>) -> Result<Vec<String>, String> {
    // PEM blocks contain no commas, but keep each list entry whole.
    match v {
        Some(Value::Array(items)) => Ok(items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .filter(|s| !s.trim().is_empty())
            .collect()),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(vec![s.clone()]),
        _ => Ok(Vec::new()),
    }
}

/// Follows an OIDC discovery document to the provider's keys.
async fn fetch_discovery(url: &str, ca: Option<&str>) -> Result<RemoteKeys, String> {
    let client = crate::tls::http_client(ca)
        .map_err(|e| format!("error checking oidc discovery URL: {e}"))?;
    let doc_url = format!("{url}/.well-known/openid-configuration");
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(&doc_url).send())
        .await
        .map_err(|_| "error checking oidc discovery URL: timeout".to_string())?
        .map_err(|e| format!("error checking oidc discovery URL: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "error checking oidc discovery URL: status {}",
            resp.status()
        ));
    }
    let doc: Value = resp
        .json()
        .await
        .map_err(|e| format!("error checking oidc discovery URL: {e}"))?;
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("error checking oidc discovery URL: no jwks_uri in discovery document")?;
    let keys = fetch_jwks(jwks_uri, ca).await?;
    Ok(RemoteKeys {
        keys,
        issuer: doc
            .get("issuer")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

async fn fetch_jwks(url: &str, ca: Option<&str>) -> Result<Vec<Jwk>, String> {
    let client = crate::tls::http_client(ca).map_err(|e| format!("error fetching JWKS: {e}"))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(url).send())
        .await
        .map_err(|_| "error fetching JWKS: timeout".to_string())?
        .map_err(|e| format!("error fetching JWKS: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("error fetching JWKS: status {}", resp.status()));
    }
    let v: Value = resp
        .json()
        .await
        .map_err(|e| format!("error parsing JWKS: {e}"))?;
    parse_jwks(&v)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claim_num(claims: &Value, key: &str) -> Option<i64> {
    claims
        .get(key)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

/// Reads a claim by name or by JSON pointer (`/a/b`), as Vault does.
fn claim<'a>(claims: &'a Value, key: &str) -> Option<&'a Value> {
    if key.starts_with('/') {
        claims.pointer(key)
    } else {
        claims.get(key)
    }
}

impl LoginPlan {
    /// Verifies the JWT; returns freshly fetched JWKS keys for caching.
    pub async fn run(self) -> (Result<LoginOk, Resp>, Option<RemoteKeys>) {
        let jws = match decode(&self.jwt) {
            Ok(j) => j,
            Err(e) => {
                return (
                    Err(Resp::bad_request(format!("error validating token: {e}"))),
                    None,
                );
            }
        };
        let alg = jws
            .header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let default_algs = [
            "RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "PS384", "PS512", "EdDSA",
        ];
        let allowed = if self.config.supported_algs.is_empty() {
            default_algs.contains(&alg.as_str())
        } else {
            self.config.supported_algs.contains(&alg)
        };
        if !allowed {
            return (
                Err(Resp::bad_request(format!(
                    "error validating token: unsupported signing algorithm \"{alg}\""
                ))),
                None,
            );
        }
        let mut refreshed = None;
        let remote = self.config.jwks_url.is_some() || self.config.discovery_url.is_some();
        let mut issuer = None;
        let verified = if remote {
            let mut current = self.cached.clone();
            let mut ok = current.as_ref().is_some_and(|k| jws.verify(&k.keys));
            if !ok {
                // Unknown key or nothing cached: fetch again, as keys rotate.
                let fetched = match (&self.config.jwks_url, &self.config.discovery_url) {
                    (Some(url), _) => fetch_jwks(url, self.config.jwks_ca_pem.as_deref())
                        .await
                        .map(|keys| RemoteKeys { keys, issuer: None }),
                    (None, Some(url)) => {
                        fetch_discovery(url, self.config.discovery_ca_pem.as_deref()).await
                    }
                    (None, None) => unreachable!("remote key source checked above"),
                };
                match fetched {
                    Ok(k) => {
                        ok = jws.verify(&k.keys);
                        refreshed = Some(k.clone());
                        current = Some(k);
                    }
                    Err(e) => return (Err(Resp::bad_request(e)), None),
                }
            }
            issuer = current.and_then(|k| k.issuer);
            ok
        } else {
            jws.verify(&self.config.pubkeys)
        };
        if !verified {
            return (
                Err(Resp::bad_request(
                    "error validating token: failed to verify signature",
                )),
                refreshed,
            );
        }
        // With discovery the token must come from the discovered provider.
        if let Some(iss) = issuer
            && jws.claims.get("iss").and_then(Value::as_str) != Some(iss.as_str())
        {
            return (
                Err(Resp::bad_request(format!(
                    "error validating token: oidc: id token issued by a different provider, expected {iss:?}"
                ))),
                refreshed,
            );
        }
        (self.check_claims(&jws.claims), refreshed)
    }

    fn check_claims(&self, claims: &Value) -> Result<LoginOk, Resp> {
        let role = &self.role;
        let bad = |m: &str| Err(Resp::bad_request(format!("error validating claims: {m}")));
        let now = now();
        if let Some(exp) = claim_num(claims, "exp")
            && now > exp + role.clock_skew_leeway + role.expiration_leeway.max(0)
        {
            return Err(Resp::bad_request(
                "error validating token: token is expired (exp)",
            ));
        }
        if let Some(nbf) = claim_num(claims, "nbf")
            && now + role.clock_skew_leeway + role.not_before_leeway.max(0) < nbf
        {
            return Err(Resp::bad_request(
                "error validating token: token not valid yet (nbf)",
            ));
        }
        if let Some(iss) = &self.config.bound_issuer
            && claims.get("iss").and_then(Value::as_str) != Some(iss.as_str())
        {
            return bad("iss claim does not match bound issuer");
        }
        let auds: Vec<String> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        if role.bound_audiences.is_empty() {
            if !auds.is_empty() {
                return bad("audience claim found in JWT but no audiences bound to the role");
            }
        } else if !auds.iter().any(|a| role.bound_audiences.contains(a)) {
            return bad("aud claim does not match any bound audience");
        }
        if !role.bound_subject.is_empty()
            && claims.get("sub").and_then(Value::as_str) != Some(role.bound_subject.as_str())
        {
            return bad("sub claim does not match bound subject");
        }
        for (k, want) in &role.bound_claims {
            let got = claim(claims, k);
            let matches = |w: &Value| match (got, w) {
                (Some(Value::Array(items)), w) => items.contains(w),
                (Some(g), w) => g == w,
                (None, _) => false,
            };
            let ok = match want {
                Value::Array(options) => options.iter().any(matches),
                w => matches(w),
            };
            if !ok {
                return bad(&format!(
                    "claim {k:?} does not match any associated bound claim values"
                ));
            }
        }
        let user = match claim(claims, &role.user_claim) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(Resp::bad_request(format!(
                    "claim {:?} not found in token",
                    role.user_claim
                )));
            }
        };
        let mut metadata = BTreeMap::new();
        metadata.insert("role".to_string(), self.role_name.clone());
        for (claim_name, meta_key) in &role.claim_mappings {
            if let Some(v) = claim(claims, claim_name) {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                metadata.insert(meta_key.clone(), s);
            }
        }
        Ok(LoginOk {
            params: role.token.clone(),
            metadata,
            display_name: user,
        })
    }
}
