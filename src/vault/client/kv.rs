//! KV operations: reading a secret (a version of it, or one found by listing), its metadata,
//! and listing a folder recursively.

use std::sync::Arc;

use reqwest::Method;
use serde_json::Value;

use super::StoreClient;
use super::reads::ReadResult;
use crate::api::VaultKvVersion;
use crate::vault::http::Req;
use crate::vault::{VaultError, answers, paths};

/// Upper bound of secrets and folders a `find` may list, so a huge mount (or an answer that
/// nests folders without end) cannot exhaust memory or list forever.
const MAX_LISTED: usize = 10_000;

impl StoreClient {
    /// The secret's data map (KV v2: the inner `data`), `None` when it does not exist or the
    /// version is deleted. Deduplicated.
    pub async fn read_secret(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<Arc<Value>>, VaultError> {
        paths::check_key(key).map_err(VaultError::invalid)?;
        let version = version.filter(|v| !v.is_empty());
        if let Some(v) = version {
            paths::check_version(v).map_err(VaultError::invalid)?;
            if self.kv_version == VaultKvVersion::V1 {
                return Err(VaultError::Unsupported {
                    what: format!("reading version {v} of {key:?}: KV v1 has no versions"),
                });
            }
        }
        let path = paths::data_path(self.mount.as_deref(), self.kv_version, key);
        self.read_data_at(path, version.map(|v| format!("version={v}")))
            .await
    }

    /// A secret `list_recursive` returned: its path is relative to the mount as is, so a
    /// folder named like the mount is not taken for the mount.
    pub(crate) async fn read_listed(&self, rel: &str) -> ReadResult {
        paths::check_key(rel).map_err(VaultError::invalid)?;
        let mount = self.listing_mount()?;
        let path = match self.kv_version {
            VaultKvVersion::V2 => format!("{mount}/data/{rel}"),
            VaultKvVersion::V1 => format!("{mount}/{rel}"),
        };
        self.read_data_at(path, None).await
    }

    /// Metadata of a secret `list_recursive` returned.
    pub(crate) async fn read_listed_metadata(&self, rel: &str) -> ReadResult {
        paths::check_key(rel).map_err(VaultError::invalid)?;
        let mount = self.listing_mount()?;
        self.read_metadata_at(format!("{mount}/metadata/{rel}"))
            .await
    }

    fn listing_mount(&self) -> Result<&str, VaultError> {
        self.mount.as_deref().ok_or_else(|| {
            VaultError::config("listing secrets needs spec.provider.vault.path (the KV mount)")
        })
    }

    async fn read_data_at(&self, path: String, query: Option<String>) -> ReadResult {
        let v2 = self.kv_version == VaultKvVersion::V2;
        let version = query
            .as_deref()
            .and_then(|q| q.strip_prefix("version="))
            .map(String::from);
        let shown = path.clone();
        // A version without data reads as `None`, like a missing secret, unless Vault says it
        // was deleted or destroyed: then the error says so.
        let got = self
            .shared_get("read", path, query, |body| {
                match answers::kv_data(body, v2)
                    .map_err(|e| VaultError::bad_answer(format!("GET {shown}: {e}")))?
                {
                    Some(d) => Ok(d.clone()),
                    None => match answers::deleted_version(body) {
                        Some(d) => Err(VaultError::VersionDeleted {
                            path: shown,
                            version,
                            deleted_at: d.deleted_at,
                            destroyed: d.destroyed,
                        }),
                        None => Ok(Value::Null),
                    },
                }
            })
            .await?;
        Ok(got.filter(|v| !v.is_null()))
    }

    /// KV v2 metadata (`created_time`, `current_version`, `custom_metadata`, `versions`, …),
    /// `None` when the secret does not exist. Deduplicated.
    pub async fn read_metadata(&self, key: &str) -> Result<Option<Arc<Value>>, VaultError> {
        paths::check_key(key).map_err(VaultError::invalid)?;
        if self.kv_version == VaultKvVersion::V1 {
            return Err(VaultError::Unsupported {
                what: format!("metadata of {key:?}: KV v1 keeps no metadata (use version v2)"),
            });
        }
        self.read_metadata_at(paths::metadata_path(self.mount.as_deref(), key))
            .await
    }

    async fn read_metadata_at(&self, path: String) -> ReadResult {
        let shown = path.clone();
        self.shared_get("read_metadata", path, None, |body| {
            answers::kv_metadata(body)
                .cloned()
                .map_err(|e| VaultError::bad_answer(format!("GET {shown}: {e}")))
        })
        .await
    }

    /// Every secret under `path` (recursive LIST), relative to the mount, sorted.
    pub async fn list_recursive(&self, path: &str) -> Result<Vec<String>, VaultError> {
        let mount = self.listing_mount()?;
        let folder = path.trim_matches('/');
        if !folder.is_empty() {
            paths::check_key(folder).map_err(VaultError::invalid)?;
        }
        let mut out = Vec::new();
        let mut pending = vec![if folder.is_empty() {
            String::new()
        } else {
            format!("{folder}/")
        }];
        let mut listed_folders = 0usize;
        while let Some(prefix) = pending.pop() {
            listed_folders += 1;
            let list_path = match self.kv_version {
                VaultKvVersion::V2 => paths::list_path(mount, &prefix),
                VaultKvVersion::V1 => format!("{mount}/{prefix}"),
            };
            let reply = self
                .call(Req {
                    call: "list",
                    method: Method::GET,
                    path: &list_path,
                    query: Some("list=true"),
                    token: None,
                    namespace: None,
                    body: None,
                })
                .await?;
            match reply.status {
                200..=299 => {}
                // The folder asked for is gone (deleted, renamed, another mount): as ESO, a
                // missing secret, so that deletionPolicy Retain keeps the Secret.
                _ if reply.is_vault_not_found() && listed_folders == 1 => {
                    return Err(VaultError::NothingListed { path: list_path });
                }
                // A subfolder emptied while listing.
                _ if reply.is_vault_not_found() => continue,
                _ => return Err(self.status_error("list", &Method::GET, &list_path, &reply)),
            }
            let keys = answers::list_keys(&reply.body)
                .map_err(|e| VaultError::bad_answer(format!("GET {list_path}?list=true: {e}")))?;
            for k in keys {
                let full = format!("{prefix}{k}");
                if k.ends_with('/') {
                    pending.push(full);
                } else {
                    out.push(full);
                }
                if out.len() + pending.len() + listed_folders > MAX_LISTED {
                    return Err(VaultError::invalid(format!(
                        "more than {MAX_LISTED} secrets under {mount}/{folder}: narrow find.path"
                    )));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}
