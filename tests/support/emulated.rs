//! What the Vault client and reconciler tests share: both emulators started with namespaces in
//! place, the usual reader policy, a key selector, and polling for what arrives when it arrives.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube_emulator::KubeEmulator;
use tokio_util::sync::CancellationToken;
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultgate::api::SecretKeySelector;
use vaultgate::metrics::Metrics;
use vaultgate::reconcile::{ControllerConfig, run};
use vaultgate::vault::VaultClients;

/// Reads and lists of the KV v2 mount `secret` and the KV v1 mount `kv1`.
pub const READER: &str = r#"
path "secret/data/*" { capabilities = ["read", "list"] }
path "secret/metadata/*" { capabilities = ["read", "list"] }
path "kv1/*" { capabilities = ["read", "list"] }
"#;

pub struct Emulators {
    pub vault: VaultEmulator,
    pub kube: KubeEmulator,
    pub kc: kube::Client,
}

/// Both emulators, and the namespaces given (name, labels) created.
pub async fn start(
    vault: VaultEmulatorConfig,
    namespaces: &[(&str, &[(&str, &str)])],
) -> Emulators {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let vault = VaultEmulator::start(vault).await.expect("vault emulator");
    let kube = KubeEmulator::start(Default::default())
        .await
        .expect("kube emulator");
    let kc = kube.client().await;
    let api: Api<Namespace> = Api::all(kc.clone());
    for (name, labels) in namespaces {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.to_string());
        if !labels.is_empty() {
            n.metadata.labels = Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
        }
        match api.create(&PostParams::default(), &n).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("create namespace {name}: {e}"),
        }
    }
    Emulators { vault, kube, kc }
}

/// Installs vaultgate's CRDs (`deploy/crds/`) in the API server emulator.
pub async fn apply_crds(kube: &KubeEmulator) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds");
    for f in std::fs::read_dir(dir).unwrap() {
        kube.apply_yaml_file(f.unwrap().path()).await.unwrap();
    }
}

/// Key `key` of Secret `name`, in the referring object's namespace.
pub fn sel(name: &str, key: &str) -> SecretKeySelector {
    SecretKeySelector {
        name: Some(name.into()),
        namespace: None,
        key: Some(key.into()),
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `bound`.
pub async fn eventually<T, F, Fut>(what: &str, bound: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < bound, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The reconciler as these tests run it: every namespace, no leader election.
pub fn controller_config(concurrency: u16) -> ControllerConfig {
    ControllerConfig {
        namespace: None,
        controller_class: String::new(),
        leader_elect: false,
        lease_name: "vaultgate-controller".into(),
        lease_namespace: "vaultgate-system".into(),
        identity: "test-replica".into(),
        concurrency,
    }
}

/// vaultgate's reconciler running against the API server emulator until [`Running::stop`].
pub struct Running {
    pub metrics: Metrics,
    pub clients: VaultClients,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn start(kc: kube::Client, cfg: ControllerConfig) -> Running {
        let metrics = Metrics::new();
        let clients = VaultClients::new(kc.clone(), metrics.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            kc,
            clients.clone(),
            metrics.clone(),
            cfg,
            shutdown.clone(),
        ));
        Running {
            metrics,
            clients,
            shutdown,
            task,
        }
    }

    /// Asks the reconciler to stop and waits for it to return cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("run returns after shutdown")
            .unwrap()
            .unwrap();
    }
}
