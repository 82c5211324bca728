//! `make run`'s binary reaches `sandbox ready` with the demo Secret synced, and a person's
//! kubectl works against it: get, apply, describe, get -w, delete.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Running {
    child: Child,
    dir: tempdir::Dir,
}

impl Drop for Running {
    fn drop(&mut self) {
        // SIGINT first, as Ctrl-C would; then make sure.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p =
                std::env::temp_dir().join(format!("vaultgate-sandbox-test-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn start() -> Running {
    start_with(&[])
}

fn start_with(env: &[(&str, &str)]) -> Running {
    let dir = tempdir::Dir::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vaultgate-sandbox"))
        .envs(env.iter().copied())
        .env("SANDBOX_DIR", &dir.0)
        // Tests run side by side: no fixed ports.
        .env("SANDBOX_KUBE_ADDR", "127.0.0.1:0")
        .env("SANDBOX_VAULT_ADDR", "127.0.0.1:0")
        .env("VAULTGATE_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the sandbox");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("sandbox: {line}");
            let _ = tx.send(line);
        }
    });
    let running = Running { child, dir };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line == "sandbox ready" => return running,
            Ok(_) => {}
            Err(e) => panic!("the sandbox did not print `sandbox ready`: {e}"),
        }
    }
}

fn kubectl(
    env_file: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let kubeconfig = std::fs::read_to_string(env_file)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("export KUBECONFIG=").map(str::to_string))
        .expect("KUBECONFIG in env");
    let mut cmd = Command::new("kubectl");
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("kubectl must be installed");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One test, sandboxes one after another: two sandbox processes starting side by side would
/// race for the ports they pick.
#[test]
fn make_run_sandbox_with_kubectl() {
    sandbox_serves_the_demo_and_kubectl_works();
    kubectl_apply_with_vault_down_is_admitted_with_a_warning_in_warn_mode();
    kubectl_apply_is_refused_in_enforce_mode_naming_the_vault_path();
}

fn sandbox_serves_the_demo_and_kubectl_works() {
    let running = start();
    let env = running.dir.0.join("env");
    let text = std::fs::read_to_string(&env).unwrap();
    for var in ["KUBECONFIG", "VAULT_ADDR", "VAULT_TOKEN"] {
        assert!(
            text.contains(&format!("export {var}=")),
            "{var} missing from env:\n{text}"
        );
    }

    let (ok, out, err) = kubectl(&env, &["get", "externalsecrets", "-A"], None);
    assert!(ok, "{err}");
    assert!(out.contains("demo-app"), "{out}");
    assert!(
        out.contains("STORE") && out.contains("READY"),
        "ESO's printer columns: {out}"
    );

    let (ok, out, err) = kubectl(
        &env,
        &[
            "get",
            "secret",
            "-n",
            "demo",
            "demo-app",
            "-o",
            "jsonpath={.data.password}",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "c2FuZGJveC1kZW1vLXBhc3N3b3Jk",
        "base64 of the demo value"
    );

    // A person applies their own ExternalSecret; the webhook fills in the defaults.
    let es = r#"
apiVersion: external-secrets.io/v1beta1
kind: ExternalSecret
metadata: {name: mine, namespace: demo}
spec:
  secretStoreRef: {name: vault}
  data:
    - secretKey: user
      remoteRef: {key: demo/app, property: username}
"#;
    let mut watch = Command::new("kubectl")
        .args(["get", "externalsecrets", "-n", "demo", "-w", "--no-headers"])
        .env("KUBECONFIG", running.dir.0.join("kubeconfig"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (ok, out, err) = kubectl(&env, &["apply", "-f", "-"], Some(es));
    assert!(ok, "apply: {out}{err}");
    let (ok, out, err) = kubectl(
        &env,
        &["get", "externalsecret", "-n", "demo", "mine", "-o", "yaml"],
        None,
    );
    assert!(ok, "{err}");
    for default in [
        "refreshInterval: 1h0m0s",
        "creationPolicy: Owner",
        "deletionPolicy: Retain",
        "name: mine",
        "kind: SecretStore",
    ] {
        assert!(out.contains(default), "default {default:?} missing:\n{out}");
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, out, _) = kubectl(
            &env,
            &[
                "get",
                "secret",
                "-n",
                "demo",
                "mine",
                "-o",
                "jsonpath={.data.user}",
            ],
            None,
        );
        if out.trim() == "ZGVtbw==" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Secret demo/mine not synced: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out, err) = kubectl(
        &env,
        &["describe", "externalsecret", "-n", "demo", "mine"],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("Ready") && out.contains("SecretSynced"),
        "{out}"
    );

    let (ok, _, err) = kubectl(
        &env,
        &["delete", "externalsecret", "-n", "demo", "mine"],
        None,
    );
    assert!(ok, "{err}");
    let (_, out, _) = kubectl(&env, &["get", "externalsecret", "-n", "demo", "mine"], None);
    assert!(!out.contains("mine"), "deleted: {out}");

    // `get -w` saw the object come and go.
    let _ = watch.kill();
    let watched = String::from_utf8_lossy(&watch.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        watched.contains("mine"),
        "kubectl get -w printed: {watched}"
    );
}

fn env_var(env_file: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(env_file)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("export {name}="))
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("{name} in env"))
}

const MISSING_PATH: &str = r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: typo, namespace: demo}
spec:
  secretStoreRef: {name: vault}
  data:
    - secretKey: password
      remoteRef: {key: demo/ap, property: password}
"#;

fn kubectl_apply_is_refused_in_enforce_mode_naming_the_vault_path() {
    let running = start_with(&[("VAULTGATE_ADMISSION_LIVE", "enforce")]);
    let env = running.dir.0.join("env");
    let (ok, out, err) = kubectl(&env, &["apply", "-f", "-"], Some(MISSING_PATH));
    assert!(!ok, "refused: {out}{err}");
    assert!(
        err.contains("denied the request") && err.contains("secret/data/demo/ap"),
        "the refusal names the Vault path: {err}"
    );
    let (_, out, _) = kubectl(&env, &["get", "externalsecrets", "-n", "demo"], None);
    assert!(!out.contains("typo"), "nothing stored: {out}");
}

fn kubectl_apply_with_vault_down_is_admitted_with_a_warning_in_warn_mode() {
    let running = start();
    let env = running.dir.0.join("env");
    let vault = env_var(&env, "VAULT_ADDR");
    let seal = |sealed: bool| {
        let out = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "POST",
                "-d",
                &format!("{{\"sealed\": {sealed}}}"),
                &format!("{vault}/_emulator/sealed"),
            ])
            .output()
            .expect("curl");
        assert!(out.status.success(), "sealing the Vault dev server");
    };
    seal(true);
    let (ok, out, err) = kubectl(&env, &["apply", "-f", "-"], Some(MISSING_PATH));
    seal(false);
    assert!(ok, "admitted in warn mode: {out}{err}");
    assert!(err.contains("Warning:"), "with an admission warning: {err}");
    let (_, out, _) = kubectl(
        &env,
        &["get", "externalsecrets", "-n", "demo", "typo"],
        None,
    );
    assert!(out.contains("typo"), "stored: {out}");
}
