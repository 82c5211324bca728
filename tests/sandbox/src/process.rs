//! vaultgate as its own process, for measurements whose figures must be its own (memory, file
//! descriptors, tasks): finding the release binary, starting and stopping it, reading
//! `/proc/<pid>`, and the emulators it runs against (in the measuring process).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube_emulator::{KubeEmulator, KubeEmulatorConfig};
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};

use crate::repo_root;

/// The `vaultgate` binary next to the running executable (both built by one `cargo build`).
pub fn vaultgate_binary() -> anyhow::Result<PathBuf> {
    sibling_binary("vaultgate")
}

/// A binary of this workspace next to the running executable.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.parent().context("executable directory")?.join(name);
    if !bin.exists() {
        bail!(
            "{} not found: build it first (`cargo build --release -p vaultgate -p vaultgate-sandbox`)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// SIGTERM and wait (up to 30 s), as Kubernetes stops a pod; the exit status if it ended.
    ///
    /// The wait sleeps its thread. Called on a multi-threaded runtime it hands that thread's
    /// tasks to another first: the emulators run there, and a graceful shutdown talks to them
    /// (a stalled emulator would hold every shutdown until the deadline and the kill).
    pub fn terminate(self) -> Option<std::process::ExitStatus> {
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.terminate_blocking())
            }
            _ => self.terminate_blocking(),
        }
    }

    fn terminate_blocking(mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// The emulators, in this process, and a kubeconfig (admin) for the vaultgate process.
pub struct Emulators {
    pub kube: KubeEmulator,
    pub vault: VaultEmulator,
    pub kubeconfig: PathBuf,
}

impl Emulators {
    /// Starts both, applies the CRDs and the namespace of deploy/, writes `<work>/<name>.kubeconfig`.
    pub async fn start(work: &Path, name: &str) -> anyhow::Result<Emulators> {
        let kube = KubeEmulator::start(KubeEmulatorConfig {
            history_size: 200_000,
            ..Default::default()
        })
        .await?;
        let vault = VaultEmulator::start(VaultEmulatorConfig::default()).await?;
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
            kube.apply_yaml_file(root.join(f)).await?;
        }
        let kubeconfig = work.join(format!("{name}.kubeconfig"));
        kube.write_kubeconfig(&kubeconfig, &kube.admin_token())?;
        Ok(Emulators {
            kube,
            vault,
            kubeconfig,
        })
    }

    /// Points `kubeconfig` (what vaultgate is started with) at ServiceAccount `namespace/name`,
    /// which must exist, with a day-long token: vaultgate's requests then show in the audit log
    /// under its own user, apart from the harness's (admin). Returns that user.
    pub fn use_service_account(&mut self, namespace: &str, name: &str) -> anyhow::Result<String> {
        let token = self
            .kube
            .issue_token(namespace, name, &[self.kube.issuer()], 24 * 3600);
        let path = self.kubeconfig.with_extension(format!("{name}.kubeconfig"));
        self.kube.write_kubeconfig(&path, &token)?;
        self.kubeconfig = path;
        Ok(format!("system:serviceaccount:{namespace}:{name}"))
    }

    pub async fn shutdown(self) {
        self.kube.shutdown().await;
        self.vault.shutdown().await;
    }
}

/// `vaultgate run ARGS --metrics-addr METRICS` against `env`'s API server, with extra
/// environment `envs` (e.g. `VAULTGATE_LOG_LEVEL`, `POD_NAME`); its log goes to `log`. With
/// `cpus`, on those CPUs only (through `taskset`, so from its first thread).
pub fn spawn_vaultgate(
    cpus: Option<&[usize]>,
    bin: &Path,
    env: &Emulators,
    args: &[&str],
    metrics: SocketAddr,
    envs: &[(&str, &str)],
    log: Stdio,
) -> anyhow::Result<Proc> {
    let mut cmd = match cpus {
        None => Command::new(bin),
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &crate::cpus::format_list(cpus)]).arg(bin);
            c
        }
    };
    let child = cmd
        .arg("run")
        .args(args)
        .arg("--metrics-addr")
        .arg(metrics.to_string())
        .env("KUBECONFIG", &env.kubeconfig)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Proc(child))
}

/// Waits until `http://METRICS/readyz` answers 200; how long that took.
pub async fn wait_ready(metrics: SocketAddr, limit: Duration) -> anyhow::Result<Duration> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()?;
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("http://{metrics}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("vaultgate not ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A `kB` field of `/proc/<pid>/status`, in MiB.
fn status_mib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .with_context(|| field.to_string())?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb / 1024.0)
}

/// Resident memory now (VmRSS), in MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmRSS:")
}

/// CPU time (user + system, all threads, exited ones included) a process has used, in seconds.
/// `/proc/<pid>/stat` counts it in USER_HZ ticks, which the kernel ABI fixes at 100.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Runs a command to its end and returns its output with the CPU seconds it used: read from
/// its `/proc` entry once it has exited and before it is reaped (a zombie keeps its totals).
pub fn output_with_cpu(cmd: &mut Command) -> anyhow::Result<(std::process::Output, f64)> {
    use std::io::Read;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let errs = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let mut stdout = Vec::new();
    out.read_to_end(&mut stdout)?;
    let stderr = errs.join().unwrap_or_default();
    let pid = child.id();
    let mut cpu = f64::NAN;
    for _ in 0..2000 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            break;
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next());
        if state == Some("Z") {
            cpu = cpu_seconds(pid)?;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = child.wait()?;
    Ok((
        std::process::Output {
            status,
            stdout,
            stderr,
        },
        cpu,
    ))
}

/// Peak resident memory (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmHWM:")
}

/// Open file descriptors (entries of `/proc/<pid>/fd`), and how many of them are sockets.
pub fn open_fds(pid: u32) -> anyhow::Result<(usize, usize)> {
    let (mut all, mut sockets) = (0, 0);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // An fd closed between the listing and the look is simply not counted.
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        all += 1;
        if target.to_string_lossy().starts_with("socket:") {
            sockets += 1;
        }
    }
    Ok((all, sockets))
}

/// The value of an unlabelled metric (or the sum over its series) in a `/metrics` text.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(labelled) = rest.strip_prefix('{') {
            labelled.rsplit_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        if let Some(v) = value.and_then(|v| v.trim().parse::<f64>().ok()) {
            found = true;
            sum += v;
        }
    }
    found.then_some(sum)
}

/// `GET http://METRICS/metrics`.
pub async fn scrape(metrics: SocketAddr) -> anyhow::Result<String> {
    let text = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text)
}

/// Manifests (one multi-document YAML) for the load runs: namespaces `ns-0` … and `stores`
/// ClusterSecretStores `store-0` … on AppRole (so that logins are real logins: a static token
/// never logs in), each with its own role `{role_prefix}-{s}` holding `policy`, its secret-id in
/// a Secret in vaultgate-system. Enables the AppRole auth method in Vault.
pub async fn approle_load_manifests(
    vault: &VaultEmulator,
    role_prefix: &str,
    policy: &str,
    stores: usize,
    namespaces: usize,
) -> anyhow::Result<String> {
    let mut docs = String::new();
    for ns in 0..namespaces {
        docs.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{ns}}}\n"
        ));
    }
    vault.enable_auth("approle", "approle")?;
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}/v1/{path}", vault.addr()))
            .header("X-Vault-Token", vault.root_token())
    };
    for s in 0..stores {
        let role = format!("auth/approle/role/{role_prefix}-{s}");
        call(reqwest::Method::POST, &role)
            .json(&serde_json::json!({"token_policies": [policy], "token_ttl": "1h"}))
            .send()
            .await?
            .error_for_status()?;
        let read = |method, path: String| async move {
            call(method, &path)
                .send()
                .await?
                .error_for_status()?
                .json::<serde_json::Value>()
                .await
        };
        let role_id = read(reqwest::Method::GET, format!("{role}/role-id")).await?;
        let secret_id = read(reqwest::Method::POST, format!("{role}/secret-id")).await?;
        docs.push_str(&format!(
            r#"---
apiVersion: v1
kind: Secret
metadata: {{name: store-approle-{s}, namespace: vaultgate-system}}
stringData: {{secret-id: "{secret_id}"}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: store-{s}}}
spec:
  provider:
    vault:
      server: "{server}"
      path: secret
      version: v2
      auth:
        appRole:
          roleId: "{role_id}"
          secretRef: {{name: store-approle-{s}, key: secret-id, namespace: vaultgate-system}}
"#,
            server = vault.addr(),
            role_id = role_id["data"]["role_id"].as_str().context("role_id")?,
            secret_id = secret_id["data"]["secret_id"]
                .as_str()
                .context("secret_id")?,
        ));
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn sums_series() {
        let text = "# HELP x y\nvaultgate_runtime_alive_tasks 42\nexternalsecret_sync_calls_total{name=\"a\",namespace=\"n\"} 3\nexternalsecret_sync_calls_total{name=\"b\",namespace=\"n\"} 4\nexternalsecret_sync_calls_error{name=\"b\",namespace=\"n\"} 1\n";
        assert_eq!(
            metric_sum(text, "vaultgate_runtime_alive_tasks"),
            Some(42.0)
        );
        assert_eq!(
            metric_sum(text, "externalsecret_sync_calls_total"),
            Some(7.0)
        );
        assert_eq!(metric_sum(text, "externalsecret_sync_calls"), None);
        assert_eq!(metric_sum(text, "missing"), None);
    }
}
