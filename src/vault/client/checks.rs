//! Checks of a store against Vault, for `vaultgate check` and the webhook's live checks:
//! the token (lookup-self), the mount, and the capabilities of the token on given paths.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use super::StoreClient;
use crate::api::VaultKvVersion;
use crate::vault::http::Req;
use crate::vault::{VaultError, answers};

impl StoreClient {
    /// `auth/token/lookup-self` data (how ESO validates a store).
    pub async fn lookup_self(&self) -> Result<Value, VaultError> {
        let path = "auth/token/lookup-self";
        let reply = self
            .call(Req {
                call: "lookup_self",
                method: Method::GET,
                path,
                query: None,
                token: None,
                namespace: Some(self.login_namespace.as_deref()),
                body: None,
            })
            .await?;
        if !(200..300).contains(&reply.status) {
            return Err(self.status_error("lookup-self", &Method::GET, path, &reply));
        }
        answers::data_object(&reply.body)
            .map(|d| Value::Object(d.clone()))
            .map_err(|e| VaultError::bad_answer(format!("GET {path}: {e}")))
    }

    /// The store's mount exists and is a KV engine of the declared version.
    pub async fn check_mount(&self) -> Result<(), VaultError> {
        let Some(mount) = self.mount.as_deref() else {
            // Without `path` each key carries its own mount; nothing single to check.
            return Ok(());
        };
        let mut denied = None;
        let mut info = None;
        for path in [
            format!("sys/internal/ui/mounts/{mount}"),
            format!("sys/mounts/{mount}"),
        ] {
            let reply = self
                .call(Req {
                    call: "mount",
                    method: Method::GET,
                    path: &path,
                    query: None,
                    token: None,
                    namespace: None,
                    body: None,
                })
                .await?;
            match reply.status {
                200..=299 => {
                    info = Some((reply.body, path));
                    break;
                }
                401 | 403 if reply.not_json.is_none() => denied = Some(path),
                404 | 400 if reply.not_json.is_none() => {}
                _ => return Err(self.status_error("mount", &Method::GET, &path, &reply)),
            }
        }
        let Some((body, path)) = info else {
            return Err(match denied {
                Some(path) => VaultError::PermissionDenied {
                    path,
                    call: "read mount".into(),
                },
                None => VaultError::config(format!(
                    "no secrets engine is mounted at {mount:?} (spec.provider.vault.path)"
                )),
            });
        };
        let (engine, version) = answers::mount_info(&body)
            .map_err(|e| VaultError::bad_answer(format!("GET {path}: {e}")))?;
        check_mount_info(mount, &engine, &version, self.kv_version)
    }

    /// `sys/capabilities-self` for each path (full Vault paths, e.g. `secret/data/app`).
    /// Identical calls share one request as reads do (`reads.rs`): a burst of admissions of
    /// ExternalSecrets finding in one folder asks once.
    pub async fn capabilities(
        &self,
        paths: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, VaultError> {
        let path = "sys/capabilities-self";
        // A failure of this call says nothing about the paths asked about: never a NotFound
        // or a denial of them.
        let failed = |reason: String| VaultError::CouldNotCheck {
            what: "capabilities".into(),
            reason,
        };
        let asked = async {
            let body = json!({ "paths": paths });
            let reply = self
                .call(Req {
                    call: "capabilities",
                    method: Method::POST,
                    path,
                    query: None,
                    token: None,
                    namespace: None,
                    body: Some(&body),
                })
                .await?;
            if !(200..300).contains(&reply.status) {
                return Err(failed(format!(
                    "POST {path}: Vault answered HTTP {}{}",
                    reply.status,
                    reply.detail()
                )));
            }
            // Read inside the shared call: an answer of the wrong shape is an error, and
            // errors are not reused.
            let mut out = serde_json::Map::new();
            for p in paths {
                let caps = answers::capabilities(&reply.body, p, paths.len() == 1)
                    .map_err(|e| failed(format!("POST {path}: {e}")))?;
                out.insert(p.clone(), json!(caps));
            }
            Ok(Some(Arc::new(Value::Object(out))))
        };
        let answer = self
            .shared(format!("capabilities {paths:?}"), asked)
            .await?;
        let by_path = answer.as_deref().and_then(Value::as_object);
        let caps_of = |p: &String| -> Vec<String> {
            by_path
                .and_then(|m| m.get(p))
                .and_then(Value::as_array)
                .map(|c| {
                    c.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(paths.iter().map(|p| (p.clone(), caps_of(p))).collect())
    }
}

/// A mount's engine type and options version against the store's declared KV version.
pub(crate) fn check_mount_info(
    mount: &str,
    engine: &str,
    options_version: &str,
    declared: VaultKvVersion,
) -> Result<(), VaultError> {
    if engine != "kv" && engine != "generic" {
        return Err(VaultError::config(format!(
            "the secrets engine at {mount:?} is {engine:?}, not a KV engine"
        )));
    }
    let actual = if engine == "kv" && options_version == "2" {
        VaultKvVersion::V2
    } else {
        VaultKvVersion::V1
    };
    if actual != declared {
        return Err(VaultError::config(format!(
            "the KV engine at {mount:?} is version {}, but the store declares version {}: set \
             spec.provider.vault.version to {}",
            actual.as_str(),
            declared.as_str(),
            actual.as_str()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_checks() {
        use VaultKvVersion::{V1, V2};
        let cases = [
            ("kv", "2", V2, true),
            ("kv", "1", V1, true),
            ("kv", "", V1, true),
            ("generic", "", V1, true),
            ("kv", "2", V1, false),
            ("kv", "1", V2, false),
            ("transit", "", V2, false),
        ];
        for (engine, v, declared, ok) in cases {
            assert_eq!(
                check_mount_info("secret", engine, v, declared).is_ok(),
                ok,
                "{engine} {v} {declared:?}"
            );
        }
    }
}
