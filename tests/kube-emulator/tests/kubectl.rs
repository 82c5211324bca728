//! `kubectl` 1.32 as a real client of the emulator.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

struct Kubectl {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn new(k: &kube_emulator::KubeEmulator, tag: &str) -> Self {
        assert!(
            std::process::Command::new("kubectl")
                .arg("version")
                .arg("--client")
                .output()
                .is_ok(),
            "kubectl is not installed or not on PATH; these tests need a real kubectl binary"
        );
        let dir = std::env::temp_dir().join(format!("kube-emulator-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        k.write_kubeconfig(&kubeconfig, &k.admin_token()).unwrap();
        Kubectl { dir, kubeconfig }
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=10s")
            .args(args)
            .env("HOME", &self.dir)
            .env("KUBECACHEDIR", self.dir.join("cache"))
            .kill_on_drop(true);
        c
    }

    /// Run to completion; panics with stderr unless it succeeds.
    async fn ok(&self, args: &[&str]) -> String {
        let out = within(20, self.command(args).output()).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    async fn fails(&self, args: &[&str]) -> String {
        let out = within(20, self.command(args).output()).await.unwrap();
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
  namespace: default
  labels:
    app: demo
spec:
  size: 3
"#;

#[tokio::test]
async fn get_namespaces_and_version() {
    let k = start().await;
    let kc = Kubectl::new(&k, "ns");
    let out = kc.ok(&["get", "ns"]).await;
    assert!(
        out.contains("NAME")
            && out.contains("STATUS")
            && out.contains("default")
            && out.contains("kube-system"),
        "{out}"
    );
    assert!(out.contains("Active"), "{out}");
    let out = kc.ok(&["version", "-o", "json"]).await;
    assert!(out.contains("serverVersion"), "{out}");
    let out = kc.ok(&["auth", "whoami"]).await;
    assert!(out.contains("admin"), "{out}");
    let out = kc.ok(&["api-resources"]).await;
    assert!(
        out.contains("secrets")
            && out.contains("customresourcedefinitions")
            && out.contains("leases"),
        "{out}"
    );
}

#[tokio::test]
async fn apply_crd_and_custom_resource_then_get_describe_delete() {
    let k = start().await;
    let kc = Kubectl::new(&k, "crd");
    let crd = kc.file("crd.yaml", WIDGET_CRD);
    let out = kc.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"),
        "{out}"
    );

    let out = kc.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com unchanged"),
        "{out}"
    );

    let cr = kc.file("w1.yaml", WIDGET);
    let out = kc.ok(&["apply", "-f", cr.to_str().unwrap()]).await;
    assert!(out.contains("widget.example.com/w1 created"), "{out}");
    let out = kc.ok(&["apply", "-f", cr.to_str().unwrap()]).await;
    assert!(out.contains("widget.example.com/w1 unchanged"), "{out}");
    let cr = kc.file("w1.yaml", &WIDGET.replace("size: 3", "size: 5"));
    let out = kc.ok(&["apply", "-f", cr.to_str().unwrap()]).await;
    assert!(out.contains("widget.example.com/w1 configured"), "{out}");

    let out = kc.ok(&["get", "widgets"]).await;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "READY", "AGE"], "{out}");
    assert!(
        out.lines().nth(1).unwrap().starts_with("w1 ") && out.contains(" 5 "),
        "{out}"
    );
    let out = kc
        .ok(&["get", "wg", "w1", "-o", "jsonpath={.spec.color}"])
        .await;
    assert_eq!(out, "blue", "schema default applied");

    let out = kc.ok(&["describe", "widget", "w1"]).await;
    assert!(
        out.contains("Name:") && out.contains("w1") && out.contains("Size:") && out.contains("5"),
        "{out}"
    );

    let bad = kc.file("bad.yaml", &WIDGET.replace("size: 3", "size: 0"));
    let err = kc.fails(&["apply", "-f", bad.to_str().unwrap()]).await;
    assert!(
        err.contains("spec.size") && err.contains("should be greater than or equal to 1"),
        "{err}"
    );

    // kubectl asks for strict field validation: unknown fields are refused.
    let unknown = kc.file(
        "unknown.yaml",
        &WIDGET.replace("size: 3", "size: 3\n  unknown: 1"),
    );
    let err = kc.fails(&["apply", "-f", unknown.to_str().unwrap()]).await;
    assert!(
        err.contains("strict decoding error: unknown field \"spec.unknown\""),
        "{err}"
    );

    let out = kc.ok(&["delete", "widget", "w1"]).await;
    assert!(out.contains("widget.example.com \"w1\" deleted"), "{out}");
    let err = kc.fails(&["get", "widget", "w1"]).await;
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

#[tokio::test]
async fn apply_builtin_kinds_client_side() {
    let k = start().await;
    let kc = Kubectl::new(&k, "builtin");
    let f = kc.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"\n  b: \"2\"\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: sec\nstringData:\n  password: hunter2\n",
    );
    let out = kc.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    assert!(
        out.contains("configmap/cfg created") && out.contains("secret/sec created"),
        "{out}"
    );
    // Dropping a key from the manifest removes it (three-way strategic merge).
    let f = kc.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"\n",
    );
    let out = kc.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    assert!(out.contains("configmap/cfg configured"), "{out}");
    let out = kc.ok(&["get", "cm", "cfg", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"], serde_json::json!({"a": "1"}));
    let out = kc.ok(&["get", "secrets"]).await;
    assert!(out.contains("sec") && out.contains("Opaque"), "{out}");
    let out = kc.ok(&["describe", "secret", "sec"]).await;
    assert!(out.contains("password:  7 bytes"), "{out}");
    let out = kc
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            f.to_str().unwrap(),
            "--force-conflicts",
        ])
        .await;
    assert!(out.contains("configmap/cfg serverside-applied"), "{out}");
    let out = kc.ok(&["delete", "configmap", "cfg"]).await;
    assert!(out.contains("configmap \"cfg\" deleted"), "{out}");
    let out = kc.ok(&["get", "configmaps", "-o", "name"]).await;
    assert!(!out.contains("configmap/cfg"), "{out}");
}

#[tokio::test]
async fn get_watch_prints_new_objects() {
    let k = start().await;
    k.apply_yaml(WIDGET_CRD).await.unwrap();
    let kc = Kubectl::new(&k, "watch");
    let mut child = kc
        .command(&["get", "widgets", "-w", "--request-timeout=0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = k.client().await;
    widget_api(&client, "default")
        .create(&Default::default(), &widget("watched", 2))
        .await
        .unwrap();
    let seen = within(15, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.starts_with("watched") {
                return l;
            }
        }
        panic!("kubectl get -w ended without printing the new object");
    })
    .await;
    assert!(seen.contains(" 2 "), "{seen}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn describe_shows_events_recorded_through_the_events_api() {
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let k = start().await;
    k.apply_yaml(WIDGET_CRD).await.unwrap();
    let client = k.client().await;
    let w = widget_api(&client, "default")
        .create(&Default::default(), &widget("evented", 1))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "widget-controller".into(),
            instance: None,
        },
    );
    let reference = w.object_ref(&common::widget_resource("v1"));
    within(
        10,
        recorder.publish(
            &Event {
                type_: EventType::Warning,
                reason: "SyncFailed".into(),
                note: Some("the vault path does not exist".into()),
                action: "Sync".into(),
                secondary: None,
            },
            &reference,
        ),
    )
    .await
    .unwrap();
    // Stored once, visible through the core API with kubectl's field selector.
    let core: kube::Api<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(client, "default");
    let found = core
        .list(
            &kube::api::ListParams::default()
                .fields("involvedObject.name=evented,involvedObject.kind=Widget"),
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(
        found.items[0].message.as_deref(),
        Some("the vault path does not exist")
    );

    let kc = Kubectl::new(&k, "events");
    let out = kc.ok(&["describe", "widget", "evented"]).await;
    assert!(
        out.contains("Events:")
            && out.contains("SyncFailed")
            && out.contains("the vault path does not exist"),
        "{out}"
    );
    let out = kc.ok(&["get", "events"]).await;
    assert!(
        out.contains("SyncFailed") && out.contains("widget/evented"),
        "{out}"
    );
}

#[tokio::test]
async fn imperative_create_commands_with_protobuf_bodies() {
    let k = start().await;
    let kc = Kubectl::new(&k, "create");
    let out = kc.ok(&["create", "namespace", "team-a"]).await;
    assert!(out.contains("namespace/team-a created"), "{out}");
    let out = kc
        .ok(&[
            "-n",
            "team-a",
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=hunter2",
            "--type=Opaque",
        ])
        .await;
    assert!(out.contains("secret/db created"), "{out}");
    let out = kc
        .ok(&[
            "-n",
            "team-a",
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=b",
        ])
        .await;
    assert!(out.contains("configmap/cfg created"), "{out}");
    let out = kc
        .ok(&["-n", "team-a", "create", "serviceaccount", "robot"])
        .await;
    assert!(out.contains("serviceaccount/robot created"), "{out}");
    let token = kc
        .ok(&[
            "-n",
            "team-a",
            "create",
            "token",
            "robot",
            "--audience=vault",
            "--duration=20m",
        ])
        .await;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.trim().split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:team-a:robot");
    assert_eq!(claims["aud"], serde_json::json!(["vault"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        1200
    );

    let secret: k8s_openapi::api::core::v1::Secret =
        kube::Api::namespaced(k.client().await, "team-a")
            .get("db")
            .await
            .unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"hunter2");
    let out = kc
        .ok(&["-n", "team-a", "label", "configmap", "cfg", "tier=web"])
        .await;
    assert!(out.contains("configmap/cfg labeled"), "{out}");
    let out = kc
        .ok(&["-n", "team-a", "get", "cm", "-l", "tier=web", "-o", "name"])
        .await;
    assert_eq!(out.trim(), "configmap/cfg");
}

/// `kubectl apply -f` of a `kind: List`: kubectl splits the items itself, after looking the
/// List up in the server's OpenAPI document, and applies each as usual.
#[tokio::test]
async fn apply_a_list_applies_its_items() {
    let k = start().await;
    let kc = Kubectl::new(&k, "list");
    let f = kc.file(
        "list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: first\n  data:\n    a: \"1\"\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: second\n  data:\n    b: \"2\"\n",
    );
    let out = kc.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    assert!(
        out.contains("configmap/first created") && out.contains("configmap/second created"),
        "{out}"
    );
    let out = kc.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    assert!(
        out.contains("configmap/first unchanged") && out.contains("configmap/second unchanged"),
        "{out}"
    );
    let out = kc
        .ok(&["get", "configmap", "second", "-o", "jsonpath={.data.b}"])
        .await;
    assert_eq!(out, "2");
}
