//! Live admission checks against the Vault and Kubernetes emulators: directly through
//! `review`, and end to end with the emulated API server calling the webhook on `create`.

#[path = "support/live.rs"]
mod live;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use live::{Env, env, es, judge, read, review_body, secret_store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vaultgate::admission::LiveMode;
use vaultgate::admission::{Endpoint, TlsSource, WebhookConfig, review, serve_listener};
use vaultgate::metrics::Metrics;
use vaultgate::vault::VaultClients;

#[tokio::test]
async fn remote_refs_are_checked_in_vault() {
    let e = env().await;
    let enforce = e.state(LiveMode::Enforce, Duration::from_secs(2));
    let store = ("SecretStore", "vault");

    let ok = judge(
        &enforce,
        &es("team-a", "ok", store, read("app/db", "password")),
        false,
    )
    .await;
    assert!(
        ok.allowed && ok.warnings.is_empty(),
        "{} {:?}",
        ok.message,
        ok.warnings
    );

    let missing = judge(
        &enforce,
        &es("team-a", "m", store, read("app/missing", "password")),
        false,
    )
    .await;
    assert!(!missing.allowed);
    assert!(
        missing.message.contains("spec.data[0].remoteRef.key")
            && missing.message.contains("secret/data/app/missing"),
        "{}",
        missing.message
    );
    assert!(!missing.message.contains("s3cr3t"));

    let prop = judge(
        &enforce,
        &es("team-a", "p", store, read("app/db", "pasword")),
        false,
    )
    .await;
    assert!(!prop.allowed);
    assert!(
        prop.message.contains("spec.data[0].remoteRef.property")
            && prop.message.contains("\"pasword\""),
        "{}",
        prop.message
    );
    assert!(!prop.message.contains("s3cr3t"), "{}", prop.message);

    // Not readable by the store's identity.
    let denied = judge(
        &enforce,
        &es("team-a", "d", store, read("other/x", "a")),
        false,
    )
    .await;
    assert!(!denied.allowed);
    assert!(
        denied.message.contains("secret/data/other/x") && denied.message.contains("403"),
        "{}",
        denied.message
    );

    // A missing version.
    let mut versioned = es(
        "team-a",
        "v",
        store,
        json!([{"secretKey": "v", "remoteRef": {"key": "app/db", "version": "7"}}]),
    );
    let v = judge(&enforce, &versioned, false).await;
    assert!(
        !v.allowed && v.message.contains("(version 7)"),
        "{}",
        v.message
    );
    versioned["spec"]["data"][0]["remoteRef"]["version"] = json!("1");
    assert!(judge(&enforce, &versioned, false).await.allowed);

    // dataFrom: extract must be an object; find needs list on the folder.
    let mut df = es("team-a", "df", store, Value::Null);
    df["spec"]["data"] = Value::Null;
    df["spec"]["dataFrom"] = json!([{"extract": {"key": "app/config"}}, {"find": {"path": "app"}}]);
    let v = judge(&enforce, &df, false).await;
    assert!(v.allowed, "{}", v.message);
    df["spec"]["dataFrom"] =
        json!([{"extract": {"key": "app/db", "property": "user"}}, {"find": {"path": "other"}}]);
    let v = judge(&enforce, &df, false).await;
    assert!(!v.allowed);
    assert!(
        v.message
            .contains("spec.dataFrom[0].extract: property \"user\""),
        "{}",
        v.message
    );
    assert!(
        v.message.contains("spec.dataFrom[1].find.path")
            && v.message
                .contains("may not list \"secret/metadata/other/\""),
        "{}",
        v.message
    );

    // warn: the same problem is a warning and the object is admitted.
    let warn = e.state(LiveMode::Warn, Duration::from_secs(2));
    let w = judge(
        &warn,
        &es("team-a", "m", store, read("app/missing", "password")),
        false,
    )
    .await;
    assert!(w.allowed);
    assert!(
        w.warnings
            .iter()
            .any(|w| w.contains("secret/data/app/missing")),
        "{:?}",
        w.warnings
    );
}

#[tokio::test]
async fn a_burst_of_applies_costs_one_login() {
    let e = env().await;
    let state = e.state(LiveMode::Enforce, Duration::from_secs(2));
    let store = ("SecretStore", "vault");
    let before_reads = e.vault.count_kv_reads();
    e.kube.clear_audit();
    let obj = es("team-a", "burst", store, read("app/db", "password"));
    let verdicts = futures::future::join_all((0..100).map(|_| judge(&state, &obj, false))).await;
    assert!(verdicts.iter().all(|v| v.allowed));
    // All hundred missed the empty cache at once, and waited for one read of the store.
    let store_reads = e
        .kube
        .audit()
        .iter()
        .filter(|a| a.verb == "get" && a.resource == "secretstores" && a.name == "vault")
        .count();
    assert_eq!(store_reads, 1, "reads of the SecretStore");
    // Other ExternalSecrets on the same store share the login too.
    for i in 0..10 {
        let other = es("team-a", &format!("o{i}"), store, read("app/config", "a"));
        assert!(judge(&state, &other, false).await.allowed);
    }
    assert_eq!(e.vault.count_logins(), 1);
    // Results are cached: the burst read each secret a handful of times, not 110.
    let reads = e.vault.count_kv_reads() - before_reads;
    assert!(reads <= 4, "{reads} KV reads");
}

/// A cold burst spreads the readers of one path over seconds (`kubectl apply` of many
/// namespaces, each with its own ExternalSecret on a shared secret): the checks reuse a Vault
/// answer as long as they reuse a verdict, not only while it is in flight.
#[tokio::test]
async fn reads_of_one_path_seconds_apart_share_one_vault_read() {
    let e = env().await;
    let state = e.state(LiveMode::Enforce, Duration::from_secs(2));
    let store = ("SecretStore", "vault");
    let first = es("team-a", "first", store, read("app/db", "password"));
    assert!(judge(&state, &first, false).await.allowed);
    let reads = e.vault.count_kv_reads();
    assert_eq!(reads, 1);
    // Past the window in which any two reads of a store share one request.
    tokio::time::sleep(vaultgate::vault::READ_SHARE_WINDOW + Duration::from_millis(100)).await;
    // Another verdict (another property) on the same path.
    let second = es("team-a", "second", store, read("app/db", "user"));
    assert!(judge(&state, &second, false).await.allowed);
    assert_eq!(e.vault.count_kv_reads(), reads, "reads of app/db");
    // A path not read before is read.
    let third = es("team-a", "third", store, read("app/config", "a"));
    assert!(judge(&state, &third, false).await.allowed);
    assert_eq!(e.vault.count_kv_reads(), reads + 1);
}

/// ExternalSecrets finding in one folder ask Vault once whether the store may list it, when
/// admitted together and when seconds apart.
#[tokio::test]
async fn checks_of_one_folder_share_one_capabilities_call() {
    let e = env().await;
    let state = e.state(LiveMode::Enforce, Duration::from_secs(2));
    let store = ("SecretStore", "vault");
    let finding = |name: &str, extract: &str| {
        let mut o = es("team-a", name, store, Value::Null);
        o["spec"]["data"] = Value::Null;
        o["spec"]["dataFrom"] = json!([{"find": {"path": "app"}}, {"extract": {"key": extract}}]);
        o
    };
    let capabilities = || {
        e.vault
            .requests()
            .iter()
            .filter(|r| r.path == "sys/capabilities-self")
            .count()
    };
    // Different references (no shared verdict), the same folder.
    let (a, b) = (finding("a", "app/config"), finding("b", "app/db"));
    let (va, vb) = futures::join!(judge(&state, &a, false), judge(&state, &b, false));
    assert!(va.allowed && vb.allowed, "{} {}", va.message, vb.message);
    assert_eq!(capabilities(), 1);
    tokio::time::sleep(vaultgate::vault::READ_SHARE_WINDOW + Duration::from_millis(100)).await;
    // Seconds later, another verdict again: its find is answered by the same call.
    let mut c = finding("c", "app/db");
    c["spec"]["dataFrom"][1]["extract"]["property"] = json!("user");
    let vc = judge(&state, &c, false).await;
    assert!(!vc.allowed, "extracting a string is refused");
    assert_eq!(capabilities(), 1);
}

#[tokio::test]
async fn vault_down_or_slow_answers_within_the_budget() {
    let e = env().await;
    let store = ("SecretStore", "vault");
    let budget = Duration::from_millis(500);
    e.vault.set_down(true);
    for (mode, allowed) in [(LiveMode::Warn, true), (LiveMode::Enforce, false)] {
        let state = e.state(mode, budget);
        let start = Instant::now();
        let v = judge(
            &state,
            &es("team-a", "down", store, read("app/db", "password")),
            false,
        )
        .await;
        assert!(
            start.elapsed() < budget + Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            v.allowed, allowed,
            "{mode:?}: {} {:?}",
            v.message, v.warnings
        );
        let text = if allowed {
            v.warnings.join(" ")
        } else {
            v.message
        };
        assert!(text.contains("Vault"), "{mode:?}: {text}");
    }
    // Updates that leave the spec alone, status writes and deletes need no Vault at all.
    let state = e.state(LiveMode::Enforce, budget);
    let obj = es("team-a", "down", store, read("app/db", "password"));
    let mut update: Value = serde_json::from_slice(&review_body(&obj, false)).unwrap();
    update["request"]["operation"] = json!("UPDATE");
    let mut changed_meta = obj.clone();
    changed_meta["metadata"]["labels"] = json!({"x": "y"});
    update["request"]["object"] = changed_meta;
    update["request"]["oldObject"] = obj.clone();
    let mut status = update.clone();
    status["request"]["subResource"] = json!("status");
    let mut delete = update.clone();
    delete["request"]["operation"] = json!("DELETE");
    delete["request"]["object"] = Value::Null;
    for body in [update, status, delete] {
        let (_, r) = review(
            &state,
            Endpoint::Validate,
            &serde_json::to_vec(&body).unwrap(),
        )
        .await
        .unwrap();
        assert!(r.allowed && r.warnings.is_none(), "{r:?}");
    }
    e.vault.set_down(false);
    e.vault.set_latency(Duration::from_secs(5));
    for (mode, allowed) in [(LiveMode::Warn, true), (LiveMode::Enforce, false)] {
        let state = e.state(mode, budget);
        let start = Instant::now();
        let v = judge(
            &state,
            &es("team-a", "slow", store, read("app/db", "password")),
            false,
        )
        .await;
        assert!(
            start.elapsed() < budget + Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(v.allowed, allowed);
        let text = if allowed {
            v.warnings.join(" ")
        } else {
            v.message
        };
        assert!(
            text.contains("did not answer within 500ms"),
            "{mode:?}: {text}"
        );
    }
}

#[tokio::test]
async fn stores_and_their_conditions() {
    let e = env().await;
    let warn = e.state(LiveMode::Warn, Duration::from_secs(2));
    let enforce = e.state(LiveMode::Enforce, Duration::from_secs(2));

    // A store that does not exist yet: a warning, or a denial in enforce.
    let obj = es(
        "team-a",
        "x",
        ("SecretStore", "later"),
        read("app/db", "password"),
    );
    let w = judge(&warn, &obj, false).await;
    assert!(w.allowed);
    assert!(
        w.warnings
            .iter()
            .any(|w| w.contains("SecretStore team-a/later does not exist")),
        "{:?}",
        w.warnings
    );
    let d = judge(&enforce, &obj, false).await;
    assert!(
        !d.allowed && d.message.contains("does not exist"),
        "{}",
        d.message
    );

    // A ClusterSecretStore whose conditions exclude the namespace: refused in every mode.
    let css = ("ClusterSecretStore", "only-team-a");
    let refused = judge(
        &warn,
        &es("team-b", "x", css, read("app/db", "password")),
        false,
    )
    .await;
    assert!(!refused.allowed);
    assert_eq!(
        refused.message,
        "using cluster store \"only-team-a\" is not allowed from namespace \"team-b\": denied by spec.condition"
    );
    let fine = judge(
        &enforce,
        &es("team-a", "x", css, read("app/db", "password")),
        false,
    )
    .await;
    assert!(fine.allowed, "{}", fine.message);
}

#[tokio::test]
async fn stores_are_checked_by_logging_in() {
    let e = env().await;
    let enforce = e.trusted_state(LiveMode::Enforce, Duration::from_secs(2));
    let server = e.vault.addr();
    let ok = judge(
        &enforce,
        &secret_store("s1", "vault-userpass", "secret", &server),
        false,
    )
    .await;
    assert!(ok.allowed, "{}", ok.message);
    let bad = judge(
        &enforce,
        &secret_store("s2", "wrong-password", "secret", &server),
        false,
    )
    .await;
    assert!(!bad.allowed);
    assert!(
        bad.message.contains("SecretStore team-a/s2") && bad.message.contains("login"),
        "{}",
        bad.message
    );
    assert!(!bad.message.contains("nope"), "{}", bad.message);
    let no_mount = judge(
        &enforce,
        &secret_store("s3", "vault-userpass", "kv-missing", &server),
        false,
    )
    .await;
    assert!(!no_mount.allowed);
    assert!(
        no_mount.message.contains("kv-missing"),
        "{}",
        no_mount.message
    );
    // A ClusterSecretStore whose credentials live in each ExternalSecret's namespace cannot
    // log in on its own: noted, checked later through its ExternalSecrets.
    let mut referent = secret_store("c1", "vault-userpass", "secret", &server);
    referent["kind"] = json!("ClusterSecretStore");
    referent["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let r = judge(&enforce, &referent, false).await;
    assert!(r.allowed, "{}", r.message);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("each ExternalSecret's namespace")),
        "{:?}",
        r.warnings
    );
    // With the namespace given, it logs in like a SecretStore.
    referent["spec"]["provider"]["vault"]["auth"]["userPass"]["secretRef"]["namespace"] =
        json!("team-a");
    let r = judge(&enforce, &referent, false).await;
    assert!(
        r.allowed && r.warnings.is_empty(),
        "{} {:?}",
        r.message,
        r.warnings
    );
    let logins = e.vault.count_logins();
    // Dry run: nothing that would log in.
    let dry = judge(
        &enforce,
        &secret_store("s4", "vault-userpass", "secret", &server),
        true,
    )
    .await;
    assert!(dry.allowed);
    assert!(
        dry.warnings.iter().any(|w| w.contains("dry run")),
        "{:?}",
        dry.warnings
    );
    let dry_es = judge(
        &e.state(LiveMode::Enforce, Duration::from_secs(2)),
        &es(
            "team-a",
            "dry",
            ("SecretStore", "vault"),
            read("app/db", "password"),
        ),
        true,
    )
    .await;
    assert!(dry_es.allowed);
    assert!(
        dry_es.warnings.iter().any(|w| w.contains("dry run")),
        "{:?}",
        dry_es.warnings
    );
    assert_eq!(e.vault.count_logins(), logins);
}

// ---- end to end: the emulated API server calls the webhook ----------------------------------

struct Webhook {
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    vault: VaultClients,
}

async fn start_webhook(e: &Env, mode: LiveMode) -> Webhook {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    e.kube
        .map_service("vaultgate-system", "vaultgate-webhook", 443, addr);
    let metrics = Metrics::new();
    let vault = VaultClients::new(e.client.clone(), metrics.clone());
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_listener(
        listener,
        WebhookConfig {
            addr,
            tls: TlsSource::SelfManaged {
                namespace: "vaultgate-system".into(),
                secret_name: "vaultgate-webhook-tls".into(),
                service_name: "vaultgate-webhook".into(),
                webhook_config_name: "vaultgate".into(),
            },
            client_ca: None,
            live: mode,
            live_budget: Duration::from_secs(2),
        },
        Some(e.client.clone()),
        Some(vault.clone()),
        metrics,
        ready.clone(),
        shutdown.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.load(Ordering::SeqCst) {
        assert!(!task.is_finished(), "webhook stopped: {:?}", task.await);
        assert!(Instant::now() < deadline, "webhook not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Webhook {
        ready,
        shutdown,
        task,
        vault,
    }
}

impl Webhook {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        assert!(!self.ready.load(Ordering::SeqCst));
        self.vault.revoke_all().await;
    }
}

struct Created {
    status: u16,
    warnings: Vec<String>,
    body: Value,
}

/// POSTs an ExternalSecret through the API server, keeping the warning headers.
async fn create(client: &kube::Client, obj: &Value) -> Created {
    let ns = obj["metadata"]["namespace"].as_str().unwrap();
    let req = http::Request::post(format!(
        "/apis/external-secrets.io/v1/namespaces/{ns}/externalsecrets"
    ))
    .header("content-type", "application/json")
    .body(kube::client::Body::from(serde_json::to_vec(obj).unwrap()))
    .unwrap();
    let resp = client.send(req).await.unwrap();
    let status = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    let bytes = resp.into_body().collect_bytes().await.unwrap();
    Created {
        status,
        warnings,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn bare_es(name: &str, key: &str) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {
            "secretStoreRef": {"name": "vault"},
            "data": [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}],
        }
    })
}

#[tokio::test]
async fn end_to_end_through_the_api_server() {
    let e = env().await;
    e.kube
        .apply_yaml_file(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/webhooks.yaml"))
        .await
        .unwrap();
    let hook = start_webhook(&e, LiveMode::Enforce).await;

    // Self-managed certificates: the Secret exists and the CA is in both configurations.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(e.client.clone(), "vaultgate-system");
    let tls = secrets.get("vaultgate-webhook-tls").await.unwrap();
    let ca = tls.data.unwrap()["ca.crt"].0.clone();
    let vwc: kube::Api<
        k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
    > = kube::Api::all(e.client.clone());
    let v = vwc.get("vaultgate").await.unwrap();
    assert_eq!(
        v.webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .as_ref()
            .unwrap()
            .0,
        ca
    );
    let mwc: kube::Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        kube::Api::all(e.client.clone());
    let m = mwc.get("vaultgate").await.unwrap();
    assert_eq!(
        m.webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .as_ref()
            .unwrap()
            .0,
        ca
    );

    // A path that does not exist: refused, naming the path.
    let r = create(&e.client, &bare_es("missing", "app/nothing-here")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let msg = r.body["message"].as_str().unwrap_or_default();
    assert!(msg.contains("secret/data/app/nothing-here"), "{msg}");

    // A correct one: admitted with its defaults filled in.
    let r = create(&e.client, &bare_es("good", "app/db")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let spec = &r.body["spec"];
    assert_eq!(spec["refreshInterval"], "1h0m0s");
    assert_eq!(spec["refreshPolicy"], "Periodic");
    assert_eq!(spec["secretStoreRef"]["kind"], "SecretStore");
    assert_eq!(spec["target"]["name"], "good");
    assert_eq!(spec["target"]["creationPolicy"], "Owner");
    assert_eq!(spec["target"]["deletionPolicy"], "Retain");
    hook.stop().await;

    // warn mode with Vault down: admitted, with a warning.
    let hook = start_webhook(&e, LiveMode::Warn).await;
    e.vault.set_down(true);
    let r = create(&e.client, &bare_es("while-down", "app/config")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.warnings.iter().any(|w| w.contains("Vault")),
        "{:?}",
        r.warnings
    );
    e.vault.set_down(false);
    hook.stop().await;
}

#[tokio::test]
async fn hundred_applies_through_the_api_server_cost_one_login() {
    let e = env().await;
    e.kube
        .apply_yaml_file(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/webhooks.yaml"))
        .await
        .unwrap();
    let hook = start_webhook(&e, LiveMode::Enforce).await;
    for i in 0..100 {
        let r = create(&e.client, &bare_es(&format!("es-{i}"), "app/db")).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(e.vault.count_logins(), 1);
    hook.stop().await;
}

#[tokio::test]
async fn check_with_live_reports_vault_problems_per_object() {
    let e = env().await;
    let file = r#"
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: fine, namespace: team-a}
spec:
  secretStoreRef: {name: vault}
  data:
  - secretKey: password
    remoteRef: {key: app/db, property: password}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: gone, namespace: team-a}
spec:
  secretStoreRef: {name: vault}
  data:
  - secretKey: password
    remoteRef: {key: app/gone, property: password}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: nostore, namespace: team-a}
spec:
  secretStoreRef: {name: absent}
  data:
  - secretKey: password
    remoteRef: {key: app/db}
"#;
    let mut report = vaultgate::check::check_text(file).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let vault = VaultClients::new(e.client.clone(), Metrics::new());
    let checker = vaultgate::admission::LiveChecker::new(
        e.client.clone(),
        vault.clone(),
        Duration::from_secs(2),
    );
    vaultgate::check::check_live(&mut report, &checker).await;
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(
        report.problems[0].starts_with("ExternalSecret/team-a/gone: spec.data[0].remoteRef.key: ")
            && report.problems[0].contains("secret/data/app/gone"),
        "{:?}",
        report.problems
    );
    assert_eq!(
        report.problems[1],
        "ExternalSecret/team-a/nostore: spec.secretStoreRef: SecretStore team-a/absent does not exist (yet)"
    );
    vault.revoke_all().await;
}
