//! The write side for PushSecrets: read what Vault holds at a target (never shared with other
//! reads: a push decides on what is there now), then carry out a [`PushPlan`] or
//! [`DeletePlan`]. The decisions are in [`crate::vault::push_plan`].

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::StoreClient;
use crate::api::VaultKvVersion;
use crate::vault::http::Req;
use crate::vault::push_plan::{DeletePlan, PushPlan, Remote};
use crate::vault::{VaultError, answers, paths};

impl StoreClient {
    /// What Vault holds at `key` now. On v2 one read of the data answers everything: the
    /// version's metadata comes with it, and a deleted current version answers 404 with it.
    pub async fn read_for_push(&self, key: &str) -> Result<Remote, VaultError> {
        paths::check_key(key).map_err(VaultError::invalid)?;
        let path = paths::data_path(self.mount.as_deref(), self.kv_version, key);
        let reply = self
            .call(Req {
                call: "read",
                method: Method::GET,
                path: &path,
                query: None,
                token: None,
                namespace: None,
                body: None,
            })
            .await?;
        let v2 = self.kv_version == VaultKvVersion::V2;
        let bad = |e: String| VaultError::bad_answer(format!("GET {path}: {e}"));
        match reply.status {
            200..=299 => {}
            _ if reply.is_vault_not_found() => {
                // v2: a deleted or destroyed current version still has metadata.
                if v2 && answers::deleted_version(&reply.body).is_some() {
                    let meta = &reply.body["data"]["metadata"];
                    return Ok(Remote {
                        exists: true,
                        data: None,
                        custom_metadata: custom_metadata(meta).map_err(bad)?,
                        version: meta.get("version").and_then(Value::as_u64).unwrap_or(0),
                    });
                }
                return Ok(Remote::default());
            }
            _ => return Err(self.status_error("read", &Method::GET, &path, &reply)),
        }
        let data = answers::kv_data(&reply.body, v2)
            .map_err(bad)?
            .and_then(Value::as_object)
            .cloned();
        if !v2 {
            return Ok(Remote {
                exists: data.is_some(),
                data,
                ..Default::default()
            });
        }
        let meta = &reply.body["data"]["metadata"];
        Ok(Remote {
            exists: true,
            data,
            custom_metadata: custom_metadata(meta).map_err(bad)?,
            version: meta.get("version").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    /// Carries out a push plan: v2 metadata first (the marker before any data), then the data.
    pub async fn apply_push(&self, key: &str, plan: &PushPlan) -> Result<(), VaultError> {
        let PushPlan::Write {
            metadata,
            data,
            cas,
        } = plan
        else {
            return Ok(());
        };
        if let Some(m) = metadata {
            let path = paths::metadata_path(self.mount.as_deref(), key);
            self.send_write(&path, &json!({ "custom_metadata": m }))
                .await?;
        }
        if let Some(d) = data {
            self.write_data(key, d, *cas).await?;
        }
        Ok(())
    }

    /// Carries out a delete plan: v2 soft-deletes the current version then removes the
    /// metadata (with every version), as ESO does.
    pub async fn apply_delete(&self, key: &str, plan: &DeletePlan) -> Result<(), VaultError> {
        match plan {
            DeletePlan::Nothing => Ok(()),
            DeletePlan::Rewrite { data, cas } => self.write_data(key, data, *cas).await,
            DeletePlan::Delete => {
                let path = paths::data_path(self.mount.as_deref(), self.kv_version, key);
                self.send_delete(&path).await?;
                if self.kv_version == VaultKvVersion::V2 {
                    let meta = paths::metadata_path(self.mount.as_deref(), key);
                    self.send_delete(&meta).await?;
                }
                Ok(())
            }
        }
    }

    async fn write_data(
        &self,
        key: &str,
        data: &Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<(), VaultError> {
        let path = paths::data_path(self.mount.as_deref(), self.kv_version, key);
        let body = match self.kv_version {
            VaultKvVersion::V1 => Value::Object(data.clone()),
            VaultKvVersion::V2 => match cas {
                Some(c) => json!({ "data": data, "options": { "cas": c } }),
                None => json!({ "data": data }),
            },
        };
        self.send_write(&path, &body).await
    }

    async fn send_write(&self, path: &str, body: &Value) -> Result<(), VaultError> {
        let reply = self
            .call(Req {
                call: "write",
                method: Method::POST,
                path,
                query: None,
                token: None,
                namespace: None,
                body: Some(body),
            })
            .await?;
        if (200..300).contains(&reply.status) {
            return Ok(());
        }
        Err(self.status_error("write", &Method::POST, path, &reply))
    }

    async fn send_delete(&self, path: &str) -> Result<(), VaultError> {
        let reply = self
            .call(Req {
                call: "delete",
                method: Method::DELETE,
                path,
                query: None,
                token: None,
                namespace: None,
                body: None,
            })
            .await?;
        // Already gone is what was asked for.
        if (200..300).contains(&reply.status) || reply.is_vault_not_found() {
            return Ok(());
        }
        Err(self.status_error("delete", &Method::DELETE, path, &reply))
    }
}

/// `custom_metadata` of a v2 version's metadata: absent or null is none.
fn custom_metadata(meta: &Value) -> Result<BTreeMap<String, String>, String> {
    match meta.get("custom_metadata") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!(
                    "\"data.metadata.custom_metadata.{k}\" is {}, expected a string",
                    answers::kind(other)
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "\"data.metadata.custom_metadata\" is {}, expected an object",
            answers::kind(other)
        )),
    }
}
