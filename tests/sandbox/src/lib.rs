//! The sandbox: a Kubernetes API emulator, a Vault dev server and the real `vaultgate run`
//! wiring in one process, for `make run`, the end-to-end tests and the benchmarks.

pub mod cpus;
pub mod gate;
pub mod lease_bound;
pub mod process;

pub use gate::{ApiGate, GateWrite};

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use kube_emulator::{KubeEmulator, KubeEmulatorConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultgate::cli::{Cli, Command};
use vaultgate::run::Config as RunArgs;

/// The repository root (deploy/ lives there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The ServiceAccount vaultgate runs as (deploy/serviceaccount.yaml).
pub const SERVICE_ACCOUNT: &str = "vaultgate";

/// The user vaultgate is in the API server's audit log.
pub fn vaultgate_user(pod_namespace: &str) -> String {
    format!("system:serviceaccount:{pod_namespace}:{SERVICE_ACCOUNT}")
}

/// What to start.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// Where the Kubernetes emulator listens (`None`: an ephemeral port).
    pub kube_addr: Option<SocketAddr>,
    /// Where the Vault dev server listens.
    pub vault_addr: Option<SocketAddr>,
    /// `vaultgate run` arguments; the webhook and metrics addresses are replaced by free local
    /// ports unless `keep_addrs`.
    pub run_args: RunArgs,
    pub keep_addrs: bool,
    /// Serve the Vault dev server over HTTPS (its CA from `vault.ca_pem()`).
    pub vault_tls: bool,
    /// The pod name, vaultgate's identity in leader election (`None`: from `POD_NAME` or
    /// `HOSTNAME`, as the binary does).
    pub pod_name: Option<String>,
}

impl SandboxOptions {
    /// `vaultgate run` as configured by the `VAULTGATE_*` environment, as the binary would be.
    pub fn from_env() -> anyhow::Result<Self> {
        let cli = Cli::try_parse_from(["vaultgate", "run"]).context("VAULTGATE_* environment")?;
        let Command::Run(args) = cli.command else {
            unreachable!("parsed `run`")
        };
        let keep_addrs = std::env::var_os("VAULTGATE_WEBHOOK_ADDR").is_some();
        Ok(SandboxOptions {
            kube_addr: None,
            vault_addr: None,
            run_args: *args,
            keep_addrs,
            vault_tls: false,
            pod_name: None,
        })
    }
}

/// A running sandbox.
pub struct Sandbox {
    pub kube: KubeEmulator,
    pub vault: VaultEmulator,
    pub args: RunArgs,
    pub shutdown: CancellationToken,
    pub vaultgate: JoinHandle<anyhow::Result<()>>,
    /// Between vaultgate and the API server: injects faults, timestamps its writes.
    pub gate: ApiGate,
}

/// A free port on 127.0.0.1 (bound and released: good enough for a local sandbox). A port is
/// never handed out twice by one process, so that sandboxes started side by side in one test
/// binary cannot be given the same address.
pub fn free_local_addr() -> SocketAddr {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
        let addr = l.local_addr().expect("local address");
        if !handed.contains(&addr.port()) {
            handed.push(addr.port());
            return addr;
        }
    }
}

/// Binds `want` if it is free, otherwise an ephemeral port (a second sandbox must still start).
pub fn addr_or_free(want: SocketAddr) -> SocketAddr {
    match TcpListener::bind(want) {
        Ok(l) => l.local_addr().expect("local address"),
        Err(_) => free_local_addr(),
    }
}

impl Sandbox {
    /// Starts both emulators, applies the CRDs, namespace and webhook configurations of deploy/,
    /// and runs vaultgate against them; returns once `/readyz` answers 200.
    pub async fn start(mut opts: SandboxOptions) -> anyhow::Result<Sandbox> {
        vaultgate::run::install_crypto();
        let kube = KubeEmulator::start(KubeEmulatorConfig {
            bind: opts.kube_addr,
            ..Default::default()
        })
        .await?;
        let vault = VaultEmulator::start(VaultEmulatorConfig {
            bind: opts.vault_addr,
            tls: opts.vault_tls,
            ..Default::default()
        })
        .await?;
        let root = repo_root();
        for f in [
            "deploy/crds/external-secrets.io_clusterpushsecrets.yaml",
            "deploy/crds/external-secrets.io_clusterexternalsecrets.yaml",
            "deploy/crds/external-secrets.io_clustersecretstores.yaml",
            "deploy/crds/external-secrets.io_externalsecrets.yaml",
            "deploy/crds/external-secrets.io_pushsecrets.yaml",
            "deploy/crds/external-secrets.io_secretstores.yaml",
            "deploy/crds/generators.external-secrets.io_clustergenerators.yaml",
            "deploy/crds/generators.external-secrets.io_passwords.yaml",
            "deploy/crds/generators.external-secrets.io_sshkeys.yaml",
            "deploy/crds/generators.external-secrets.io_uuids.yaml",
            "deploy/crds/generators.external-secrets.io_vaultdynamicsecrets.yaml",
            "deploy/namespace.yaml",
        ] {
            kube.apply_yaml_file(root.join(f))
                .await
                .with_context(|| format!("applying {f}"))?;
        }
        if !opts.keep_addrs {
            opts.run_args.webhook_addr = free_local_addr();
            opts.run_args.metrics_addr = free_local_addr();
        }
        let args = opts.run_args.clone();
        route_webhooks(
            &kube,
            &args.pod_namespace,
            &args.service_name,
            args.webhook_addr,
        )
        .await?;
        // vaultgate talks to the API server as its ServiceAccount, as in a cluster, so that the
        // audit log shows exactly what its RBAC must allow.
        let client = service_account_client(&kube, &args.pod_namespace, SERVICE_ACCOUNT)
            .await
            .context("vaultgate's ServiceAccount")?;
        let gate = ApiGate::default();
        let client = gate.client(client);
        let shutdown = CancellationToken::new();
        let vaultgate = match opts.pod_name {
            Some(pod) => tokio::spawn(vaultgate::run::run_as(
                args.clone(),
                client,
                shutdown.clone(),
                pod,
            )),
            None => tokio::spawn(vaultgate::run::run(args.clone(), client, shutdown.clone())),
        };
        let mut sandbox = Sandbox {
            kube,
            vault,
            args,
            shutdown,
            vaultgate,
            gate,
        };
        if let Err(e) = wait_ready(
            &sandbox.metrics_url(),
            &sandbox.vaultgate,
            Duration::from_secs(30),
        )
        .await
        {
            if sandbox.vaultgate.is_finished() {
                let stopped = (&mut sandbox.vaultgate).await;
                anyhow::bail!("{e}: {stopped:?}");
            }
            return Err(e);
        }
        Ok(sandbox)
    }

    /// `http://<metrics addr>`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}", local(self.args.metrics_addr))
    }

    /// Another replica of vaultgate (webhook and reconciler, as deploy/ runs them) against the
    /// same emulators and with the same arguments, but its own addresses, its own pod name
    /// `pod_name` and its own ServiceAccount of that name, so that the API server's audit log
    /// tells its requests from the first one's (vaultgate's RBAC does not depend on the
    /// account's name; the emulator does not enforce RBAC). The webhook Service stays routed to
    /// the first replica.
    pub async fn start_replica(&self, pod_name: &str) -> anyhow::Result<Replica> {
        let mut args = self.args.clone();
        args.webhook_addr = free_local_addr();
        args.metrics_addr = free_local_addr();
        let client = service_account_client(&self.kube, &args.pod_namespace, pod_name)
            .await
            .with_context(|| format!("ServiceAccount {pod_name}"))?;
        let gate = ApiGate::default();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(vaultgate::run::run_as(
            args.clone(),
            gate.client(client),
            shutdown.clone(),
            pod_name.to_string(),
        ));
        let replica = Replica {
            pod_name: pod_name.to_string(),
            user: format!("system:serviceaccount:{}:{pod_name}", args.pod_namespace),
            args,
            shutdown,
            task,
            gate,
        };
        wait_ready(
            &replica.metrics_url(),
            &replica.task,
            Duration::from_secs(30),
        )
        .await?;
        Ok(replica)
    }

    /// Writes `kubeconfig` and a shell-sourceable `env` into `dir`.
    pub fn write_files(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let kubeconfig = dir.join("kubeconfig");
        self.kube
            .write_kubeconfig(&kubeconfig, &self.kube.admin_token())?;
        let kubeconfig = kubeconfig.canonicalize()?;
        let mut env = format!(
            "export KUBECONFIG={}\nexport VAULT_ADDR={}\nexport VAULT_TOKEN={}\n",
            kubeconfig.display(),
            self.vault.addr(),
            self.vault.root_token()
        );
        if let Some(ca) = self.vault.ca_pem() {
            let path = dir.join("vault-ca.pem");
            std::fs::write(&path, ca)?;
            env.push_str(&format!(
                "export VAULT_CACERT={}\n",
                path.canonicalize()?.display()
            ));
        }
        std::fs::write(dir.join("env"), env)?;
        Ok(())
    }

    /// Stops vaultgate (gracefully) and both emulators.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(30), self.vaultgate)
            .await
            .context("vaultgate did not stop within 30 s")?
            .context("vaultgate task")?;
        self.kube.shutdown().await;
        self.vault.shutdown().await;
        result
    }
}

/// A further vaultgate replica, started by [`Sandbox::start_replica`].
pub struct Replica {
    pub pod_name: String,
    /// Its user in the API server's audit log.
    pub user: String,
    pub args: RunArgs,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
    pub gate: ApiGate,
}

impl Replica {
    /// `http://<metrics addr>`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}", local(self.args.metrics_addr))
    }

    /// Stops it gracefully (as on SIGTERM: it releases the Lease if it holds it).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .context("the replica did not stop within 30 s")?
            .context("replica task")?
    }
}

/// Applies deploy/'s ServiceAccount and webhook configurations, and routes the Service they
/// name (`namespace/service`, port 443) to a webhook listening at `webhook`: from then on the
/// API server calls that webhook on every write of the kinds they cover, as in a cluster.
pub async fn route_webhooks(
    kube: &KubeEmulator,
    namespace: &str,
    service: &str,
    webhook: SocketAddr,
) -> anyhow::Result<()> {
    let root = repo_root();
    for f in ["deploy/serviceaccount.yaml", "deploy/webhooks.yaml"] {
        kube.apply_yaml_file(root.join(f))
            .await
            .with_context(|| format!("applying {f}"))?;
    }
    kube.map_service(namespace, service, 443, local(webhook));
    Ok(())
}

/// A client authenticated as ServiceAccount `namespace/name` (created if missing), with a token
/// from the TokenRequest API.
pub async fn service_account_client(
    kube: &KubeEmulator,
    namespace: &str,
    name: &str,
) -> anyhow::Result<kube::Client> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sas: kube::Api<ServiceAccount> = kube::Api::namespaced(kube.client().await, namespace);
    if sas.get_opt(name).await?.is_none() {
        let sa = ServiceAccount {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        sas.create(&Default::default(), &sa).await?;
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(24 * 3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = sas
        .create_token_request(name, &Default::default(), &request)
        .await
        .context("requesting a token")?
        .status
        .context("TokenRequest status")?
        .token;
    Ok(kube.client_with_token(&token))
}

/// Waits until `<metrics_url>/readyz` answers 200, failing early if `task` ended.
async fn wait_ready<T>(
    metrics_url: &str,
    task: &JoinHandle<T>,
    limit: Duration,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("{metrics_url}/readyz");
    let start = Instant::now();
    loop {
        if task.is_finished() {
            anyhow::bail!("vaultgate stopped before becoming ready (see its log above)");
        }
        if let Ok(r) = http.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if start.elapsed() > limit {
            let body = match http.get(&url).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            anyhow::bail!("vaultgate not ready after {limit:?}: {body}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 0.0.0.0 is where one listens, not where one connects.
fn local(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// Server-side apply of every document, as `kubectl apply --server-side` would.
pub async fn apply_all(client: &kube::Client, text: &str) -> anyhow::Result<()> {
    let discovery = kube::Discovery::new(client.clone()).run().await?;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc)?;
        if v.is_null() {
            continue;
        }
        let obj: kube::api::DynamicObject = serde_json::from_value(v.clone())?;
        let gvk =
            kube::api::GroupVersionKind::try_from(obj.types.as_ref().context("apiVersion/kind")?)?;
        let (ar, caps) = discovery
            .resolve_gvk(&gvk)
            .with_context(|| format!("{gvk:?} is not served"))?;
        let name = obj.metadata.name.clone().context("metadata.name")?;
        let api: kube::Api<kube::api::DynamicObject> =
            match (caps.scope, obj.metadata.namespace.as_deref()) {
                (kube::discovery::Scope::Namespaced, Some(ns)) => {
                    kube::Api::namespaced_with(client.clone(), ns, &ar)
                }
                _ => kube::Api::all_with(client.clone(), &ar),
            };
        api.patch(
            &name,
            &kube::api::PatchParams::apply("sandbox").force(),
            &kube::api::Patch::Apply(&v),
        )
        .await
        .with_context(|| format!("applying {} {name}", gvk.kind))?;
    }
    Ok(())
}
