//! Raw answers injected in place of Vault's: status, headers and body bytes
//! arrive as specified, including generated, trickled and cut-short bodies.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use vault_emulator::RawResponse;

fn url(vault: &vault_emulator::VaultEmulator, path: &str) -> String {
    format!("{}/v1/{path}", vault.addr())
}

/// Reads a body chunk by chunk: (bytes received, first bytes, the error that
/// ended it if any). Never holds more than `keep` bytes.
async fn drain(resp: &mut reqwest::Response, keep: usize) -> (u64, Vec<u8>, Option<String>) {
    let mut total = 0u64;
    let mut head = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                total += c.len() as u64;
                let room = keep.saturating_sub(head.len());
                head.extend_from_slice(&c[..room.min(c.len())]);
            }
            Ok(None) => return (total, head, None),
            Err(e) => return (total, head, Some(format!("{e:?}"))),
        }
    }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field in /proc/self/status")
}

#[tokio::test]
async fn bytes_status_and_headers_arrive_as_given() {
    let vault = start().await;
    let http = raw(&vault);
    let root = vault.root_token();
    let page = "<html><body>502 Bad Gateway</body></html>";
    vault.respond_raw_next_matching(
        "secret/*/app",
        2,
        RawResponse::new(200)
            .header("content-type", "text/html; charset=utf-8")
            .header("x-proxy", "edge-1")
            .body(page),
    );
    // Another path is answered by Vault as usual.
    let (s, _) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 200);
    for path in ["secret/data/app", "secret/metadata/app/x"] {
        let resp = within(
            http.get(url(&vault, path))
                .header("x-vault-token", &root)
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let h = resp.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["x-proxy"], "edge-1");
        assert_eq!(h["content-length"], page.len().to_string().as_str());
        assert!(h.get("cache-control").is_none(), "only the given headers");
        assert_eq!(within(resp.text()).await.unwrap(), page);
    }
    // Used up: Vault answers again.
    let (s, body) = call(&http, &vault, "GET", "secret/data/app", Some(&root), None).await;
    assert_eq!((s, body["errors"].clone()), (404, json!([])));
    let log = vault.requests();
    let statuses: Vec<(String, u16)> = log.iter().map(|r| (r.path.clone(), r.status)).collect();
    assert_eq!(
        statuses,
        [
            ("sys/health".to_string(), 200),
            ("secret/data/app".to_string(), 200),
            ("secret/metadata/app/x".to_string(), 200),
            ("secret/data/app".to_string(), 404),
        ]
    );

    // Any status, an empty body, and bytes that are not UTF-8.
    vault.respond_raw_next(1, RawResponse::new(200));
    vault.respond_raw_next(1, RawResponse::new(418).body(vec![0xff, 0x00, 0xfe]));
    let resp = within(http.get(url(&vault, "sys/health")).send())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-length"], "0");
    assert!(resp.headers().get("content-type").is_none());
    assert!(within(resp.bytes()).await.unwrap().is_empty());
    let resp = within(http.get(url(&vault, "sys/health")).send())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 418);
    assert_eq!(
        within(resp.bytes()).await.unwrap().as_ref(),
        [0xff, 0x00, 0xfe]
    );

    // Raw answers and status faults share one queue, oldest first.
    vault.fail_next(1, 503, None);
    vault.respond_raw_next(1, RawResponse::new(200).body("x"));
    let (s, _) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 503);
    let resp = within(http.get(url(&vault, "sys/health")).send())
        .await
        .unwrap();
    assert_eq!(within(resp.text()).await.unwrap(), "x");
    vault.respond_raw_next(5, RawResponse::new(500));
    vault.clear_faults();
    let (s, _) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn generated_bodies_are_streamed_not_held() {
    let vault = start().await;
    let http = raw(&vault);
    const LEN: u64 = 256 << 20;
    vault.respond_raw_next_matching(
        "secret/data/big",
        1,
        RawResponse::new(200)
            .header("content-type", "application/json")
            .generated(r#"{"data":{"data":{"v":""#, b'a', LEN),
    );
    let hwm_before = status_kib("VmHWM:");
    let started = Instant::now();
    let mut resp = within(http.get(url(&vault, "secret/data/big")).send())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-length"], LEN.to_string().as_str());
    assert_eq!(resp.content_length(), Some(LEN));
    let (total, head, err) = within(drain(&mut resp, 32)).await;
    assert_eq!(err, None);
    assert_eq!(total, LEN);
    assert_eq!(&head, br#"{"data":{"data":{"v":"aaaaaaaaaa"#);
    let grown_mib = status_kib("VmHWM:").saturating_sub(hwm_before) / 1024;
    eprintln!(
        "256 MiB generated body: {:?}, peak memory grew {grown_mib} MiB",
        started.elapsed()
    );
    assert!(
        grown_mib < 64,
        "peak memory grew {grown_mib} MiB for a 256 MiB body"
    );

    // Chunked: no Content-Length.
    vault.respond_raw_next(
        1,
        RawResponse::new(200).generated_chunked("", b' ', 100_000),
    );
    let mut resp = within(http.get(url(&vault, "anything")).send())
        .await
        .unwrap();
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    assert_eq!(resp.content_length(), None);
    let (total, head, err) = within(drain(&mut resp, 4)).await;
    assert_eq!((total, head.as_slice(), err), (100_000, &b"    "[..], None));
}

#[tokio::test]
async fn trickled_bodies_arrive_slowly() {
    let vault = start().await;
    let http = raw(&vault);
    let every = Duration::from_millis(100);
    vault.respond_raw_next(1, RawResponse::new(200).trickle("{", b' ', every, Some(6)));
    let started = Instant::now();
    let mut resp = within(http.get(url(&vault, "secret/data/slow")).send())
        .await
        .unwrap();
    assert!(started.elapsed() < every, "headers come at once");
    let (total, head, err) = within(drain(&mut resp, 10)).await;
    assert_eq!((total, head.as_slice(), err), (6, &b"{     "[..], None));
    let took = started.elapsed();
    assert!(took >= every * 5, "5 paced bytes took only {took:?}");

    // Forever: bytes keep coming, one per tick, and the body never ends.
    vault.respond_raw_next(
        1,
        RawResponse::new(200).trickle(r#"{"data":"#, b' ', Duration::from_millis(20), None),
    );
    let mut resp = within(http.get(url(&vault, "secret/data/slow")).send())
        .await
        .unwrap();
    let mut got = 0;
    let read = tokio::time::timeout(Duration::from_millis(600), async {
        while let Ok(Some(c)) = resp.chunk().await {
            got += c.len();
        }
    })
    .await;
    assert!(read.is_err(), "a body trickled forever does not end");
    assert!(got > 8 + 5, "kept receiving: {got} bytes");
}

#[tokio::test]
async fn a_short_body_ends_the_connection() {
    let vault = start().await;
    let http = raw(&vault);
    let sent = br#"{"data":{"data":{"pass"#;
    vault.respond_raw_next(
        1,
        RawResponse::new(200)
            .header("content-type", "application/json")
            .short_length(&sent[..], 4096),
    );
    let mut resp = within(http.get(url(&vault, "secret/data/app")).send())
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-length"], "4096");
    let (total, head, err) = within(drain(&mut resp, 100)).await;
    assert_eq!(total, sent.len() as u64);
    assert_eq!(head, sent);
    assert!(err.is_some(), "the body ends in an error");
    // The emulator keeps serving.
    let (s, _) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn control_endpoint_injects_raw_answers() {
    let vault = start().await;
    let http = raw(&vault);
    let base = vault.addr();
    let post = |body: Value| {
        let http = http.clone();
        let url = format!("{base}/_emulator/raw");
        async move {
            let r = within(http.post(url).json(&body).send()).await.unwrap();
            (r.status().as_u16(), within(r.text()).await.unwrap())
        }
    };
    assert_eq!(
        post(json!({
            "status": 200, "count": 2, "path_prefix": "secret/",
            "headers": {"content-type": "text/plain"}, "body": "not json"
        }))
        .await
        .0,
        204
    );
    for _ in 0..2 {
        let resp = within(http.get(url(&vault, "secret/data/x")).send())
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "text/plain");
        assert_eq!(within(resp.text()).await.unwrap(), "not json");
    }
    let (s, _) = call(&http, &vault, "GET", "secret/data/x", None, None).await;
    assert_eq!(s, 403);

    // base64 bodies, generated sizes, chunked.
    post(json!({"status": 201, "body_base64": "AAEC"})).await;
    let resp = within(http.get(url(&vault, "x")).send()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(within(resp.bytes()).await.unwrap().as_ref(), [0, 1, 2]);
    post(json!({"status": 200, "body": "[", "size": 1_000_000, "fill": "0", "chunked": true}))
        .await;
    let mut resp = within(http.get(url(&vault, "x")).send()).await.unwrap();
    assert!(resp.headers().get("content-length").is_none());
    let (total, head, err) = within(drain(&mut resp, 3)).await;
    assert_eq!(
        (total, head.as_slice(), err),
        (1_000_000, &b"[00"[..], None)
    );

    // Trickled.
    post(json!({"status": 200, "body": "{", "trickle_ms": 50, "chunk": 2, "size": 5})).await;
    let started = Instant::now();
    let mut resp = within(http.get(url(&vault, "x")).send()).await.unwrap();
    let (total, _, err) = within(drain(&mut resp, 0)).await;
    assert_eq!((total, err), (5, None));
    assert!(started.elapsed() >= Duration::from_millis(100));

    // Cut short.
    post(json!({"status": 200, "body": "{\"da", "claimed_length": 50})).await;
    let mut resp = within(http.get(url(&vault, "x")).send()).await.unwrap();
    assert_eq!(resp.content_length(), Some(50));
    let (total, _, err) = within(drain(&mut resp, 0)).await;
    assert_eq!(total, 4);
    assert!(err.is_some());

    // Cleared along with the faults.
    post(json!({"status": 500, "count": 3})).await;
    let resp = within(http.delete(format!("{base}/_emulator/faults")).send())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let (s, _) = call(&http, &vault, "GET", "sys/health", None, None).await;
    assert_eq!(s, 200);

    let (s, text) = post(json!({"body": "x"})).await;
    assert_eq!(s, 400);
    assert!(text.contains("status is required"), "{text}");
    let (s, text) = post(json!({"status": 200, "body": "abc", "claimed_length": 2})).await;
    assert_eq!(s, 400);
    assert!(text.contains("claimed_length"), "{text}");
}
