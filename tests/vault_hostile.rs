//! The Vault client, and the reconciler, against answers no Vault would give: huge, trickled,
//! cut short, not JSON, or JSON of the wrong shape. Each must end in a clear error naming the
//! Vault path, within a bound, without holding the body in memory, and never in a deleted or
//! emptied Secret.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, ListParams, PostParams};
use kube_emulator::KubeEmulator;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vault_emulator::{RawResponse, VaultEmulator, VaultEmulatorConfig};
use vaultgate::api::*;
use vaultgate::metrics::Metrics;
use vaultgate::reconcile::run;
use vaultgate::vault::{StoreClient, StoreHandle, VaultClients, VaultError, fetch_external_secret};

#[path = "support/emulated.rs"]
mod emulated;
use emulated::{eventually, sel};

/// No single call may take longer than this (the request timeout is 10 s).
const CALL_BOUND: Duration = Duration::from_secs(15);
/// A 1 GiB answer may not raise the process's peak memory by more than this.
const MEMORY_BOUND_MIB: u64 = 64;

/// What every message about a body that is not JSON ends with.
const FOREIGN: &str = "something other than Vault may be answering: a proxy or load balancer, \
                       or spec.provider.vault.server is not Vault's address";

const READER: &str = r#"
path "secret/data/*" { capabilities = ["read", "list"] }
path "secret/metadata/*" { capabilities = ["read", "list"] }
"#;

/// Tests that measure memory, or allocate a lot, run one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Env {
    vault: VaultEmulator,
    _kube: KubeEmulator,
    kc: kube::Client,
    clients: VaultClients,
}

async fn env() -> Env {
    let emulated::Emulators { vault, kube, kc } =
        emulated::start(VaultEmulatorConfig::default(), &[("team-a", &[])]).await;
    vault.put_policy("reader", READER).unwrap();
    let clients = VaultClients::new(kc.clone(), Metrics::new());
    Env {
        vault,
        _kube: kube,
        kc,
        clients,
    }
}

impl Env {
    async fn put_secret(&self, name: &str, data: &[(&str, &[u8])]) {
        let api: Api<Secret> = Api::namespaced(self.kc.clone(), "team-a");
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        );
        let _ = api.delete(name, &Default::default()).await;
        api.create(&PostParams::default(), &s).await.unwrap();
    }

    /// A SecretStore `team-a/<name>` on KV v2 `secret`; `retries` as `retrySettings`.
    fn store(&self, name: &str, auth: VaultAuth, retries: Option<i32>) -> StoreHandle {
        let mut s = SecretStore::new(
            name,
            SecretStoreSpec {
                provider: SecretStoreProvider {
                    vault: Some(VaultProvider {
                        server: self.vault.addr(),
                        path: Some("secret".into()),
                        version: Some(VaultKvVersion::V2),
                        auth: Some(auth),
                        ..Default::default()
                    }),
                },
                retry_settings: retries.map(|n| RetrySettings {
                    max_retries: Some(n),
                    retry_interval: Some("50ms".into()),
                }),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("team-a".into());
        s.metadata.uid = Some(format!("uid-{name}"));
        s.metadata.resource_version = Some("1".into());
        StoreHandle::from_secret_store(&s)
    }

    /// A logged-in client with token auth and the reader policy.
    async fn client(&self, retries: Option<i32>) -> Arc<StoreClient> {
        let token = self.vault.create_token(&["reader"], None);
        self.put_secret("vault-token", &[("token", token.as_bytes())])
            .await;
        let auth = VaultAuth {
            token_secret_ref: Some(sel("vault-token", "token")),
            ..Default::default()
        };
        let store = self.store("vault", auth, retries);
        self.clients.client(&store, "team-a").await.unwrap()
    }

    fn reads_of(&self, path: &str) -> usize {
        self.vault
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }
}

/// Runs `f`, failing the test if it takes longer than `bound`; returns its output and time.
async fn timed<T>(bound: Duration, f: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = tokio::time::timeout(bound, f)
        .await
        .unwrap_or_else(|_| panic!("call took longer than {bound:?}"));
    (out, started.elapsed())
}

/// Starts a new peak: `VmHWM` is the highest resident size since this call (Linux 4.0+), so
/// that an earlier test's peak does not hide this one's.
fn reset_peak() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak memory figure ({e}); growth may read low");
    }
}

/// A `/proc/self/status` figure in MiB (`VmHWM:` the peak, `VmRSS:` the current).
fn mem_mib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("field in /proc/self/status")
        / 1024
}

fn html() -> RawResponse {
    RawResponse::new(200)
        .header("content-type", "text/html")
        .body("<html><body><h1>502 Bad Gateway</h1></body></html>")
}

fn json_body(status: u16, v: &str) -> RawResponse {
    RawResponse::new(status)
        .header("content-type", "application/json")
        .body(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_answers_fail_fast_without_being_held() {
    let _heavy = HEAVY.lock().await;
    let e = env().await;
    let client = e.client(None).await;
    const GIB: u64 = 1 << 30;
    let prefix = r#"{"data":{"data":{"v":""#;
    for (case, raw, want) in [
        (
            "huge-declared",
            RawResponse::new(200)
                .header("content-type", "application/json")
                .generated(prefix, b'a', GIB),
            "GET secret/data/huge-declared: Vault's response is larger than 32 MiB (Content-Length 1073741824)",
        ),
        (
            "huge-chunked",
            RawResponse::new(200)
                .header("content-type", "application/json")
                .generated_chunked(prefix, b'a', GIB),
            "GET secret/data/huge-chunked: Vault's response is larger than 32 MiB",
        ),
    ] {
        let path = format!("secret/data/{case}");
        e.vault.respond_raw_next_matching(&path, 1, raw);
        reset_peak();
        let (hwm, rss) = (mem_mib("VmHWM:"), mem_mib("VmRSS:"));
        let (r, took) = timed(CALL_BOUND, client.read_secret(case, None)).await;
        let err = r.expect_err("a 1 GiB answer is refused");
        let (hwm_grew, rss_grew) = (
            mem_mib("VmHWM:").saturating_sub(hwm),
            mem_mib("VmRSS:").saturating_sub(rss),
        );
        eprintln!(
            "{case}: failed in {took:?}; peak memory +{hwm_grew} MiB, resident +{rss_grew} MiB"
        );
        assert!(matches!(err, VaultError::BadAnswer { .. }), "{err:?}");
        assert_eq!(err.to_string(), want);
        assert!(
            hwm_grew < MEMORY_BOUND_MIB,
            "{case}: peak memory grew {hwm_grew} MiB"
        );
        assert!(took < Duration::from_secs(5), "{case}: took {took:?}");
        assert_eq!(e.reads_of(&path), 1, "{case}: not retried");
    }

    // Just under the limit is read: the limit is on the size, not on big answers.
    let value = "x".repeat(30 << 20);
    e.vault.respond_raw_next_matching(
        "secret/data/big",
        1,
        json_body(
            200,
            &json!({"data": {"data": {"v": value}, "metadata": {}}}).to_string(),
        ),
    );
    let (r, took) = timed(CALL_BOUND, client.read_secret("big", None)).await;
    let v = r.unwrap().unwrap();
    assert_eq!(v["v"].as_str().map(str::len), Some(30 << 20));
    eprintln!("30 MiB secret read in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_that_would_take_far_more_memory_than_its_size_is_refused() {
    let _heavy = HEAVY.lock().await;
    let e = env().await;
    let client = e.client(None).await;
    // 16 MiB of `0,`: parsed, 8 million 32-byte values, a quarter of a GiB.
    let mut body = String::from(r#"{"data":{"data":{"v":["#);
    body.push_str(&"0,".repeat(8 << 20));
    body.push_str("0]}}}");
    e.vault
        .respond_raw_next_matching("secret/data/wide", 1, json_body(200, &body));
    drop(body);
    reset_peak();
    let hwm = mem_mib("VmHWM:");
    let (r, took) = timed(CALL_BOUND, client.read_secret("wide", None)).await;
    let grew = mem_mib("VmHWM:").saturating_sub(hwm);
    eprintln!("16 MiB of small JSON values: refused in {took:?}, peak memory +{grew} MiB");
    let err = r.expect_err("refused");
    assert_eq!(
        err.to_string(),
        "GET secret/data/wide: HTTP 200, but the body holds more than 1000000 \
         JSON values, more than any Vault answer"
    );
    // The body itself is held twice (the emulator's copy and the one read): 32 MiB.
    assert!(grew < MEMORY_BOUND_MIB, "peak memory grew {grew} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_forever_times_out() {
    let e = env().await;
    // No retries: one attempt shows the timeout (each retry would take as long again).
    let client = e.client(Some(0)).await;
    e.vault.respond_raw_next_matching(
        "secret/data/slow",
        1,
        RawResponse::new(200)
            .header("content-type", "application/json")
            .trickle(r#"{"data":"#, b' ', Duration::from_millis(100), None),
    );
    let (r, took) = timed(CALL_BOUND, client.read_secret("slow", None)).await;
    let err = r.expect_err("times out");
    eprintln!("trickled forever: failed after {took:?}: {err}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(
        text.starts_with(
            "Vault unavailable: GET secret/data/slow: HTTP 200, but timed out reading the \
             response (10 s per attempt) after 1 attempt(s)"
        ),
        "{text}"
    );
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(12),
        "{took:?}"
    );

    // Slow but finishing within the timeout is fine.
    e.vault.respond_raw_next_matching(
        "secret/data/slow",
        1,
        RawResponse::new(200)
            .header("content-type", "application/json")
            .trickle(
                r#"{"data":{"data":{"k":"v"},"metadata":{}}}"#,
                b'\n',
                Duration::from_millis(100),
                Some(41 + 10),
            ),
    );
    let (r, took) = timed(CALL_BOUND, client.read_secret("slow", None)).await;
    assert_eq!(r.unwrap().unwrap()["k"], "v");
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_are_not_json_or_of_the_wrong_shape() {
    let e = env().await;
    let client = e.client(Some(0)).await;
    e.vault
        .kv2_put("secret", "good", json!({"k": "v"}))
        .unwrap();
    let cut = br#"{"data":{"data":{"password":"hunter"#;
    type Case = (&'static str, RawResponse, String);
    let cases: Vec<Case> = vec![
        (
            "html",
            html(),
            format!(
                "BadAnswer: GET secret/data/html: HTTP 200, but the body is not valid JSON \
                 (content-type \"text/html\"): expected value at line 1 column 1; {FOREIGN}"
            ),
        ),
        (
            "truncated",
            RawResponse::new(200)
                .header("content-type", "application/json")
                .body(&cut[..]),
            format!(
                "BadAnswer: GET secret/data/truncated: HTTP 200, but the body is not valid JSON \
                 (content-type \"application/json\"): EOF while parsing a string at line 1 \
                 column 35; {FOREIGN}"
            ),
        ),
        (
            "empty",
            RawResponse::new(200),
            "BadAnswer: GET secret/data/empty: the body is empty".into(),
        ),
        (
            "string-body",
            json_body(200, r#""secret""#),
            "BadAnswer: GET secret/data/string-body: the body is a string, not a JSON object"
                .into(),
        ),
        (
            "no-data",
            json_body(200, r#"{"request_id":"x"}"#),
            "BadAnswer: GET secret/data/no-data: the answer has no \"data\"".into(),
        ),
        (
            "data-string",
            json_body(200, r#"{"data":"oops"}"#),
            "BadAnswer: GET secret/data/data-string: \"data\" is a string, expected an object"
                .into(),
        ),
        (
            "data-array",
            json_body(200, r#"{"data":[1,2]}"#),
            "BadAnswer: GET secret/data/data-array: \"data\" is an array, expected an object"
                .into(),
        ),
        (
            "data-number",
            json_body(200, r#"{"data":42}"#),
            "BadAnswer: GET secret/data/data-number: \"data\" is a number, expected an object"
                .into(),
        ),
        (
            "inner-string",
            json_body(200, r#"{"data":{"data":"oops","metadata":{}}}"#),
            "BadAnswer: GET secret/data/inner-string: \"data.data\" is a string, expected an \
             object"
                .into(),
        ),
        (
            "inner-missing",
            json_body(200, r#"{"data":{"k":"v"}}"#),
            "BadAnswer: GET secret/data/inner-missing: the answer has no \"data.data\", so it is \
             not a KV v2 read: is the mount KV v1? (spec.provider.vault.version)"
                .into(),
        ),
        (
            "metadata-string",
            json_body(200, r#"{"data":{"data":{"k":"v"},"metadata":"x"}}"#),
            "BadAnswer: GET secret/data/metadata-string: \"data.metadata\" is a string, expected \
             an object"
                .into(),
        ),
        (
            "page-404",
            RawResponse::new(404)
                .header("content-type", "text/html")
                .body("<h1>Not Found</h1>"),
            format!(
                "BadAnswer: GET secret/data/page-404: HTTP 404, and the body is not valid JSON \
                 (content-type \"text/html\"): expected value at line 1 column 1; {FOREIGN}"
            ),
        ),
        (
            "page-502",
            RawResponse::new(502)
                .header("content-type", "text/html")
                .body("<h1>Bad Gateway</h1>"),
            format!(
                "Unavailable: Vault unavailable: GET secret/data/page-502: HTTP 502 after 1 \
                 attempt(s), and the body is not valid JSON (content-type \"text/html\"): \
                 expected value at line 1 column 1; {FOREIGN}"
            ),
        ),
        (
            "errors-string",
            json_body(400, r#"{"errors":"invalid version"}"#),
            "Invalid: GET secret/data/errors-string: Vault answered HTTP 400: invalid version"
                .into(),
        ),
        (
            "errors-number",
            json_body(400, r#"{"errors":7}"#),
            "Invalid: GET secret/data/errors-number: Vault answered HTTP 400".into(),
        ),
        (
            "cut-short",
            RawResponse::new(200)
                .header("content-type", "application/json")
                .short_length(&cut[..], 4096),
            "Unavailable: Vault unavailable: GET secret/data/cut-short: HTTP 200, but the \
             response broke off after 35 bytes after 1 attempt(s): error decoding response body"
                .into(),
        ),
    ];
    for (case, raw, want) in cases {
        let path = format!("secret/data/{case}");
        e.vault.respond_raw_next_matching(&path, 1, raw);
        let (r, took) = timed(CALL_BOUND, client.read_secret(case, None)).await;
        let err = r.err().unwrap_or_else(|| panic!("{case}: not an error"));
        let kind = match &err {
            VaultError::BadAnswer { .. } => "BadAnswer",
            VaultError::Unavailable { .. } => "Unavailable",
            VaultError::Invalid { .. } => "Invalid",
            other => panic!("{case}: {other:?}"),
        };
        let got = format!("{kind}: {err}");
        if case == "cut-short" {
            // The transport's own words follow; they vary with the library version.
            assert!(got.starts_with(&want), "{case}: {got}");
        } else {
            assert_eq!(got, want, "{case}");
        }
        assert!(
            !got.contains("hunter"),
            "{case}: a value in an error: {got}"
        );
        assert!(took < Duration::from_secs(2), "{case}: took {took:?}");
        assert_eq!(e.reads_of(&path), 1, "{case}: read once");
    }

    // A deleted version (`data.data` null) is a missing secret, as in ESO, whose error says
    // when it was deleted; without data and without a deletion, simply missing.
    e.vault.respond_raw_next_matching(
        "secret/data/deleted",
        1,
        json_body(
            200,
            r#"{"data":{"data":null,"metadata":{"deletion_time":"2024-01-01T00:00:00Z"}}}"#,
        ),
    );
    let err = client.read_secret("deleted", None).await.unwrap_err();
    assert!(err.is_missing(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the latest version of \"secret/data/deleted\" was deleted in Vault at 2024-01-01T00:00:00Z"
    );
    e.vault.respond_raw_next_matching(
        "secret/data/emptied",
        1,
        json_body(
            200,
            r#"{"data":{"data":null,"metadata":{"deletion_time":""}}}"#,
        ),
    );
    assert!(client.read_secret("emptied", None).await.unwrap().is_none());
    // Vault's own answers are unaffected.
    assert_eq!(
        client.read_secret("good", None).await.unwrap().unwrap()["k"],
        "v"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_of_every_json_type_are_encoded_as_eso_does() {
    let e = env().await;
    let client = e.client(None).await;
    e.vault.respond_raw_next_matching(
        "secret/data/typed",
        1,
        json_body(
            200,
            r#"{"data":{"data":{"s":"x","i":42,"f":1.5,"b":true,"z":null,
                "o":{"b":1,"a":"<&>"},"l":[1,"x",null]},"metadata":{"version":1}}}"#,
        ),
    );
    let keys = ["s", "i", "f", "b", "z", "o", "l"];
    let spec = ExternalSecretSpec {
        data: Some(
            keys.iter()
                .map(|k| ExternalSecretData {
                    secret_key: k.to_string(),
                    remote_ref: ExternalSecretDataRemoteRef {
                        key: "typed".into(),
                        property: Some(k.to_string()),
                        decoding_strategy: Some(DecodingStrategy::None),
                        ..Default::default()
                    },
                    source_ref: None,
                })
                .collect(),
        ),
        ..Default::default()
    };
    let fetched = fetch_external_secret(&client, &spec, false).await.unwrap();
    let got: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (*k, std::str::from_utf8(&fetched.data[*k]).unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("s", "x"),
            ("i", "42"),
            ("f", "1.5"),
            ("b", "true"),
            ("z", ""),
            ("o", r#"{"a":"\u003c\u0026\u003e","b":1}"#),
            ("l", r#"[1,"x",null]"#),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lists_and_capabilities_of_the_wrong_type() {
    let e = env().await;
    let client = e.client(Some(0)).await;
    e.vault
        .kv2_put("secret", "team/app", json!({"k": "v"}))
        .unwrap();

    e.vault.respond_raw_next_matching(
        "secret/metadata/team/app",
        1,
        json_body(
            200,
            r#"{"data":{"custom_metadata":"owner=a","versions":{}}}"#,
        ),
    );
    let err = client.read_metadata("team/app").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "GET secret/metadata/team/app: \"data.custom_metadata\" is a string, expected an object"
    );

    let find = |path: &str| ExternalSecretSpec {
        data_from: Some(vec![ExternalSecretDataFromRemoteRef {
            find: Some(ExternalSecretFind {
                path: Some(path.into()),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    for (answer, want) in [
        (
            json_body(200, r#"{"data":{"keys":"app"}}"#),
            "\"data.keys\" is a string, expected an array of names",
        ),
        (
            json_body(200, r#"{"data":{"keys":["app",7]}}"#),
            "\"data.keys[1]\" is a number, expected a string",
        ),
        // A folder named "" would be listed again and again.
        (
            json_body(200, r#"{"data":{"keys":["/"]}}"#),
            "\"data.keys[0]\" (\"/\") is not a secret or folder name",
        ),
        (
            json_body(200, r#"{"data":null}"#),
            "the answer has no \"data\"",
        ),
        (
            RawResponse::new(404)
                .header("content-type", "text/html")
                .body("<h1>404</h1>"),
            "GET secret/metadata/team/: HTTP 404, and the body is not valid JSON",
        ),
    ] {
        e.vault
            .respond_raw_next_matching("secret/metadata/team/", 1, answer);
        let (r, _) = timed(
            CALL_BOUND,
            fetch_external_secret(&client, &find("team"), true),
        )
        .await;
        let err = r
            .err()
            .expect("a bad LIST answer is an error, not an empty result");
        let text = err.to_string();
        assert!(
            text.starts_with("spec.dataFrom[0].find (path \"team\"): GET secret/metadata/team/"),
            "{text}"
        );
        assert!(text.contains(want), "{text}");
    }
    // Vault's own answer still works.
    let fetched = fetch_external_secret(&client, &find("team"), true)
        .await
        .unwrap();
    assert_eq!(
        fetched.data.keys().collect::<Vec<_>>(),
        ["team_app"],
        "the key of a found secret is its path"
    );

    e.vault.respond_raw_next_matching(
        "sys/capabilities-self",
        1,
        json_body(200, r#"{"secret/data/team/app":"read"}"#),
    );
    let err = client
        .capabilities(&["secret/data/team/app".to_string()])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not check capabilities (POST sys/capabilities-self: \"secret/data/team/app\" is \
         a string, expected an array of capabilities)"
    );
    // The call itself refused (an endpoint missing behind a proxy, a policy without it): a
    // failure to check, never a missing secret or a denial of the path asked about.
    for (status, body, want) in [
        (
            404,
            r#"{"errors":[]}"#,
            "could not check capabilities (POST sys/capabilities-self: Vault answered HTTP 404)",
        ),
        (
            403,
            r#"{"errors":["permission denied"]}"#,
            "could not check capabilities (POST sys/capabilities-self: Vault answered HTTP 403: \
             permission denied)",
        ),
    ] {
        e.vault
            .respond_raw_next_matching("sys/capabilities-self", 1, json_body(status, body));
        let err = client
            .capabilities(&["secret/data/team/app".to_string()])
            .await
            .unwrap_err();
        assert!(
            matches!(err, VaultError::CouldNotCheck { .. }) && !err.is_missing(),
            "{err:?}"
        );
        assert!(err.is_transient(), "{err:?}");
        assert_eq!(err.to_string(), want);
    }
    e.vault.respond_raw_next_matching(
        "auth/token/lookup-self",
        1,
        json_body(200, r#"{"data":"me"}"#),
    );
    let err = client.lookup_self().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "GET auth/token/lookup-self: \"data\" is a string, expected an object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_answers_of_the_wrong_type() {
    let e = env().await;
    e.vault.enable_auth("approle", "approle").unwrap();
    let root = e.vault.root_token();
    let http = reqwest::Client::new();
    let api = |method: reqwest::Method, path: &str, body: Value| {
        let req = http
            .request(method, format!("{}/v1/{path}", e.vault.addr()))
            .header("x-vault-token", &root)
            .json(&body);
        async move {
            req.send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap_or(Value::Null)
        }
    };
    api(
        reqwest::Method::POST,
        "auth/approle/role/app",
        json!({"token_policies": ["reader"], "token_ttl": "1h"}),
    )
    .await;
    let role_id = api(
        reqwest::Method::GET,
        "auth/approle/role/app/role-id",
        json!({}),
    )
    .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = api(
        reqwest::Method::POST,
        "auth/approle/role/app/secret-id",
        json!({}),
    )
    .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    e.put_secret("approle", &[("secret-id", secret_id.as_bytes())])
        .await;
    let auth = VaultAuth {
        app_role: Some(VaultAppRole {
            path: "approle".into(),
            role_id: Some(role_id),
            role_ref: None,
            secret_ref: sel("approle", "secret-id"),
        }),
        ..Default::default()
    };
    let cases = [
        (
            json_body(200, r#"{"auth":{"client_token":42,"lease_duration":60}}"#),
            "POST auth/approle/login: unusable login answer: \"auth.client_token\" is a number, \
             expected a string",
        ),
        (
            json_body(
                200,
                r#"{"auth":{"client_token":"hvs.leaked","lease_duration":"1h"}}"#,
            ),
            "POST auth/approle/login: unusable login answer: \"auth.lease_duration\" is a \
             string, expected a whole number of seconds",
        ),
        (
            json_body(200, r#"{"auth":null,"data":{}}"#),
            "POST auth/approle/login: unusable login answer: the answer holds no \"auth\" (no \
             token)",
        ),
        (
            html(),
            "POST auth/approle/login: HTTP 200, but the body is not valid JSON (content-type \
             \"text/html\")",
        ),
        (
            json_body(400, r#"{"errors":"invalid secret id"}"#),
            "Vault login with auth method appRole failed: POST auth/approle/login: HTTP 400: \
             invalid secret id: check the role and the credentials in the referenced Secret",
        ),
    ];
    for (i, (answer, want)) in cases.into_iter().enumerate() {
        // A store of its own for each case: a failed login answers its store for 5 s.
        let store = e.store(&format!("approle-{i}"), auth.clone(), Some(0));
        e.vault
            .respond_raw_next_matching("auth/approle/login", 1, answer);
        let (r, took) = timed(CALL_BOUND, e.clients.client(&store, "team-a")).await;
        let text = r.err().expect("login refused").to_string();
        assert!(text.starts_with(want), "case {i}: {text}");
        assert!(!text.contains("hvs.leaked"), "case {i}: {text}");
        assert!(took < Duration::from_secs(2), "case {i}: {took:?}");
    }
    // A proper answer logs in.
    let store = e.store("approle-ok", auth, None);
    e.clients.client(&store, "team-a").await.unwrap();

    // A Retry-After no server should send is believed only so far (and does not overflow).
    let client = e.client(Some(3)).await;
    e.vault.respond_raw_next_matching(
        "secret/data/limited",
        1,
        json_body(429, r#"{"errors":["rate limited"]}"#)
            .header("retry-after", "18446744073709551615"),
    );
    let (r, took) = timed(CALL_BOUND, client.read_secret("limited", None)).await;
    match r {
        Err(VaultError::RateLimited { retry_after }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(3600)))
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(took < Duration::from_secs(2), "{took:?}");
}

// ---- the reconciler -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_vault_keeps_the_secret_and_it_converges_after() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let vault = VaultEmulator::start(VaultEmulatorConfig::default())
        .await
        .unwrap();
    vault.put_policy("reader", READER).unwrap();
    let kube = KubeEmulator::start(Default::default()).await.unwrap();
    let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds");
    for f in std::fs::read_dir(crds).unwrap() {
        kube.apply_yaml_file(f.unwrap().path()).await.unwrap();
    }
    let kc = kube.client().await;
    for ns in ["team-a", "vaultgate-system"] {
        let mut n = Namespace::default();
        n.metadata.name = Some(ns.into());
        let _ = Api::<Namespace>::all(kc.clone())
            .create(&PostParams::default(), &n)
            .await;
    }
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(
        kc.clone(),
        VaultClients::new(kc.clone(), metrics.clone()),
        metrics,
        emulated::controller_config(4),
        shutdown.clone(),
    ));

    vault
        .kv2_put("secret", "app", json!({"password": "before"}))
        .unwrap();
    let token = vault.create_token(&["reader"], None);
    // deletionPolicy Delete: a secret gone from Vault removes the target, so an answer taken
    // for "gone" would delete it.
    kube.apply_yaml(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata:
  name: vault-token
  namespace: team-a
stringData:
  token: {token}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: vault
  namespace: team-a
spec:
  provider:
    vault:
      server: "{server}"
      path: secret
      version: v2
      auth:
        tokenSecretRef:
          name: vault-token
          key: token
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: app
  namespace: team-a
spec:
  refreshInterval: 1s
  secretStoreRef:
    name: vault
  target:
    name: app
    deletionPolicy: Delete
  data:
  - secretKey: password
    remoteRef:
      key: app
      property: password
"#,
        server = vault.addr()
    ))
    .await
    .unwrap();

    let secrets: Api<Secret> = Api::namespaced(kc.clone(), "team-a");
    let es_api: Api<ExternalSecret> = Api::namespaced(kc.clone(), "team-a");
    let value = || async {
        let s = secrets.get_opt("app").await.unwrap()?;
        let v = s.data?.get("password")?.0.clone();
        Some(String::from_utf8(v).unwrap())
    };
    let ready = || async {
        let es = es_api.get_opt("app").await.unwrap()?;
        let c = es
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        Some((
            c.status,
            c.reason.unwrap_or_default(),
            c.message.unwrap_or_default(),
        ))
    };
    let wait = Duration::from_secs(30);
    eventually("the Secret", wait, || async {
        (value().await.as_deref() == Some("before")).then_some(())
    })
    .await;
    let before = secrets.get("app").await.unwrap();

    // An empty 200 (which once read as "secret deleted"), then a proxy's page.
    vault.respond_raw_next_matching("secret/data/app", 1, RawResponse::new(200));
    vault.respond_raw_next_matching("secret/data/app", 1, html());
    for want in [
        "could not get secret data from provider: spec.data[0] (key \"app\", property \
         \"password\"): GET secret/data/app: the body is empty",
        "could not get secret data from provider: spec.data[0] (key \"app\", property \
         \"password\"): GET secret/data/app: HTTP 200, but the body is not valid JSON \
         (content-type \"text/html\"): expected value at line 1 column 1; something other than \
         Vault may be answering",
    ] {
        let (_, reason, message) = eventually(want, wait, || async {
            ready()
                .await
                .filter(|(s, _, m)| s == "False" && m.starts_with(want))
        })
        .await;
        assert_eq!(reason, "SecretSyncedError", "{message}");
        let now = secrets
            .get_opt("app")
            .await
            .unwrap()
            .expect("the Secret is kept");
        assert_eq!(now.data, before.data, "the Secret's data is unchanged");
        assert_eq!(
            now.metadata.resource_version, before.metadata.resource_version,
            "the Secret was not written"
        );
    }
    // Events are written from a queue after the status: waited for.
    eventually("a Warning event naming the Vault path", wait, || async {
        let events = Api::<K8sEvent>::namespaced(kc.clone(), "team-a")
            .list(&ListParams::default())
            .await
            .unwrap();
        events
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("UpdateFailed")
                    && e.note
                        .as_deref()
                        .unwrap_or("")
                        .contains("GET secret/data/app")
            })
            .then_some(())
    })
    .await;

    // Vault answers properly again: the Secret follows.
    vault
        .kv2_put("secret", "app", json!({"password": "after"}))
        .unwrap();
    eventually("the new value", wait, || async {
        (value().await.as_deref() == Some("after")).then_some(())
    })
    .await;
    eventually("Ready", wait, || async {
        ready()
            .await
            .filter(|(s, r, _)| s == "True" && r == "SecretSynced")
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the reconciler stops")
        .unwrap()
        .unwrap();
}
