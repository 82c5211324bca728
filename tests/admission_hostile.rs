//! Hostile clients and hostile manifests against the real HTTPS webhook (static rules):
//! slow-loris and silent connections are cut off in bounded time while others are served,
//! garbage on the TLS port is dropped without harm, and manifests built to escape the KV
//! mount, stall a regex engine or blow up a template are answered at once, with a reason.

#[path = "support/webhook.rs"]
mod webhook;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vaultgate::admission::tls::{self, Timeouts};
use webhook::{Answer, Server, check_answer, denial, es_spec, external_secret, review, store};

/// Reads until the server closes the connection (or fails it); how long that took, or `None`
/// if it was still open after `limit`.
async fn closed_within<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let read_all = async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_all)
        .await
        .ok()
        .map(|()| start.elapsed())
}

/// A client that sends `bytes` one at a time, `every` apart, for as long as it can.
fn trickle<W: tokio::io::AsyncWrite + Unpin + Send + 'static>(
    mut w: W,
    bytes: &'static [u8],
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for b in bytes.iter().cycle() {
            if w.write_all(&[*b]).await.is_err() || w.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// The head of an HTTP/1.1 POST /validate whose JSON body is `len` bytes.
fn h1_head(len: usize) -> String {
    format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    )
}

const SLOW_HEAD: &[u8] = b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nx-a: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// An HTTP/2 POST /validate with no body, HPACK-encoded by hand (no Huffman, no table).
fn h2_request(stream: u8) -> Vec<u8> {
    let mut block = vec![0x83, 0x87]; // :method POST, :scheme https
    block.extend([0x04, 9]); // :path, not indexed
    block.extend(b"/validate");
    block.extend([0x01, 9]); // :authority, not indexed
    block.extend(b"localhost");
    let mut frame = vec![0, 0, block.len() as u8, 1, 0x5, 0, 0, 0, stream];
    frame.extend(block);
    frame
}

fn valid_review_body(uid: &str) -> Vec<u8> {
    serde_json::to_vec(&review(
        uid,
        "CREATE",
        &external_secret("v1", es_spec("app/db")),
    ))
    .unwrap()
}

async fn assert_served_promptly(s: &Server, client: &reqwest::Client, bound: Duration) {
    let body = valid_review_body("prompt");
    let a = s.post(client, "/validate", body.clone()).await;
    assert!(a.took < bound, "a normal request took {:?}", a.took);
    assert_eq!(check_answer(&body, &a).unwrap()["allowed"], true);
}

const SHORT: Timeouts = Timeouts {
    handshake: Duration::from_millis(1000),
    header_read: Duration::from_millis(1000),
    idle: Duration::from_millis(2000),
};

/// Each kind of slow or silent client is cut off close to its limit (never before it), and
/// while dozens of them hold connections, ordinary requests are answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_cut_off() {
    let s = Server::start(SHORT).await;
    // Forty slow-loris clients hold connections for the whole test.
    let mut loris = Vec::new();
    for _ in 0..40 {
        let tls = s.connect_tls(&[b"http/1.1"]).await;
        let (r, w) = tokio::io::split(tls);
        loris.push((r, trickle(w, SLOW_HEAD, Duration::from_millis(100))));
    }
    let client = s.client();
    for _ in 0..5 {
        assert_served_promptly(&s, &client, Duration::from_millis(500)).await;
        assert_served_promptly(&s, &s.client(), Duration::from_millis(500)).await;
    }
    let within = |d: Option<Duration>, limit: Duration, what: &str| {
        let d = d.unwrap_or_else(|| panic!("{what}: still connected"));
        assert!(
            d >= limit.mul_f64(0.8) && d < limit + Duration::from_millis(1500),
            "{what}: closed after {d:?}, limit {limit:?}"
        );
        d
    };
    let deadline = SHORT.header_read * 4;

    // TCP only, never a TLS byte.
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let never_tls = closed_within(&mut tcp, deadline);
    // Half a ClientHello, then silence.
    let mut half = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    let half_hello = closed_within(&mut half, deadline);
    // TLS, then nothing at all (HTTP/1.1 and HTTP/2 offered).
    let mut silent = s.connect_tls(&[b"h2", b"http/1.1"]).await;
    let silent_tls = closed_within(&mut silent, deadline);
    // HTTP/2 with half of its preface.
    let mut h2_half = s.connect_tls(&[b"h2"]).await;
    h2_half.write_all(&H2_PREFACE[..10]).await.unwrap();
    let h2_half_preface = closed_within(&mut h2_half, deadline);
    // HTTP/2 with preface and settings, but no request.
    let mut h2_idle = s.connect_tls(&[b"h2"]).await;
    h2_idle.write_all(H2_PREFACE).await.unwrap();
    h2_idle.write_all(H2_SETTINGS).await.unwrap();
    let h2_no_request = closed_within(&mut h2_idle, deadline);
    // HTTP/1.1 headers that never end, one byte every 100 ms.
    let (mut r1, w1) = tokio::io::split(s.connect_tls(&[b"http/1.1"]).await);
    let t1 = trickle(w1, SLOW_HEAD, Duration::from_millis(100));
    let h1_trickle = closed_within(&mut r1, deadline);

    let (a, b, c, d, e, f) = tokio::join!(
        never_tls,
        half_hello,
        silent_tls,
        h2_half_preface,
        h2_no_request,
        h1_trickle
    );
    within(a, SHORT.handshake, "TCP without TLS");
    within(b, SHORT.handshake, "half a ClientHello");
    within(c, SHORT.header_read, "TLS without a request");
    within(d, SHORT.header_read, "half an HTTP/2 preface");
    within(e, SHORT.header_read, "HTTP/2 without a request");
    within(f, SHORT.header_read, "HTTP/1.1 headers one byte at a time");
    t1.abort();
    // The forty slow clients were cut off too.
    for (mut r, t) in loris {
        assert!(
            closed_within(&mut r, Duration::from_millis(100))
                .await
                .is_some()
        );
        t.abort();
    }
    assert_served_promptly(&s, &client, Duration::from_millis(500)).await;
    s.stop().await;
}

/// A body that trickles in (headers complete, then a byte every 100 ms) is answered 503 at the
/// request time limit (the live budget plus 2 s: 4 s here), and the connection closed; requests
/// on other connections are answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off_at_the_request_limit() {
    const LIMIT: Duration = Duration::from_secs(4);
    let s = Server::start(SHORT).await;
    let body = valid_review_body("slow-body");
    let (mut r, mut w) = tokio::io::split(s.connect_tls(&[b"http/1.1"]).await);
    w.write_all(h1_head(body.len()).as_bytes()).await.unwrap();
    w.flush().await.unwrap();
    let start = Instant::now();
    let body: &'static [u8] = body.leak();
    let t = trickle(w, body, Duration::from_millis(100));
    let client = s.client();
    assert_served_promptly(&s, &client, Duration::from_millis(500)).await;
    let mut answer = Vec::new();
    let read =
        tokio::time::timeout(LIMIT + Duration::from_secs(3), r.read_to_end(&mut answer)).await;
    let took = start.elapsed();
    t.abort();
    assert!(read.is_ok(), "still open after {took:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        took >= LIMIT.mul_f64(0.9) && took < LIMIT + Duration::from_millis(1500),
        "answered after {took:?}, limit {LIMIT:?}"
    );
    assert_served_promptly(&s, &client, Duration::from_millis(500)).await;
    s.stop().await;
}

/// Connections that have been used are closed once idle: HTTP/1.1 after the header time,
/// HTTP/2 (with a GOAWAY) after the idle time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let s = Server::start(SHORT).await;
    // HTTP/1.1: one request, then nothing.
    let mut h1 = s.connect_tls(&[b"http/1.1"]).await;
    let body = valid_review_body("idle1");
    h1.write_all(h1_head(body.len()).as_bytes()).await.unwrap();
    h1.write_all(&body).await.unwrap();
    let mut head = [0u8; 12];
    h1.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // HTTP/2: one request (answered 400: it has no body), then nothing.
    let mut h2 = s.connect_tls(&[b"h2"]).await;
    h2.write_all(H2_PREFACE).await.unwrap();
    h2.write_all(H2_SETTINGS).await.unwrap();
    h2.write_all(&h2_request(1)).await.unwrap();
    let limit = SHORT.idle * 3;
    let (d1, d2) = tokio::join!(closed_within(&mut h1, limit), async {
        // Frames until the connection closes: the response's HEADERS, then a GOAWAY.
        let start = Instant::now();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let r = tokio::time::timeout(limit, async {
            loop {
                match h2.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        r.ok().map(|()| (start.elapsed(), frame_types(&seen)))
    });
    let d1 = d1.expect("idle HTTP/1.1 connection closed");
    assert!(
        d1 >= SHORT.header_read.mul_f64(0.8) && d1 < SHORT.header_read * 2,
        "HTTP/1.1 idle for {d1:?}"
    );
    let (d2, frames) = d2.expect("idle HTTP/2 connection closed");
    assert!(
        d2 >= SHORT.idle.mul_f64(0.8) && d2 < SHORT.idle + SHORT.header_read * 2,
        "HTTP/2 idle for {d2:?}"
    );
    assert!(frames.contains(&1), "a response HEADERS frame: {frames:?}");
    assert!(frames.contains(&7), "a GOAWAY frame: {frames:?}");
    s.stop().await;
}

/// A slow-loris on a connection it used honestly first: the next request's headers trickle in
/// a byte at a time. It is cut off at the header limit, counted from the end of the previous
/// response, and never before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_after_a_first_request_are_cut_off() {
    let s = Server::start(SHORT).await;
    let (mut r, mut w) = tokio::io::split(s.connect_tls(&[b"http/1.1"]).await);
    let body = valid_review_body("first");
    w.write_all(h1_head(body.len()).as_bytes()).await.unwrap();
    w.write_all(&body).await.unwrap();
    w.flush().await.unwrap();
    let mut head = [0u8; 12];
    r.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let t = trickle(w, SLOW_HEAD, Duration::from_millis(100));
    let d = closed_within(&mut r, SHORT.header_read * 4)
        .await
        .expect("the trickling connection was closed");
    t.abort();
    assert!(
        d >= SHORT.header_read.mul_f64(0.8) && d < SHORT.header_read * 2,
        "closed {d:?} after the first answer, header limit {:?}",
        SHORT.header_read
    );
    let client = s.client();
    assert_served_promptly(&s, &client, Duration::from_millis(500)).await;
    s.stop().await;
}

/// HTTP/2 frame types in a byte stream (after no preface: the server sends none).
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len =
            (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        out.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    out
}

/// The production limits, through the same serving path as `vaultgate run`: a slow-loris
/// client and a client that never starts TLS are both gone within ~10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limits_cut_off_slow_clients() {
    assert_eq!(tls::HANDSHAKE_TIMEOUT, Duration::from_secs(10));
    assert_eq!(tls::HEADER_READ_TIMEOUT, Duration::from_secs(10));
    assert_eq!(tls::IDLE_TIMEOUT, Duration::from_secs(60));
    assert_eq!(
        Timeouts::default(),
        Timeouts {
            handshake: tls::HANDSHAKE_TIMEOUT,
            header_read: tls::HEADER_READ_TIMEOUT,
            idle: tls::IDLE_TIMEOUT,
        }
    );
    let s = Server::start(Timeouts::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut r, w) = tokio::io::split(s.connect_tls(&[b"http/1.1"]).await);
    let t = trickle(w, SLOW_HEAD, Duration::from_secs(1));
    let mut silent = s.connect_tls(&[b"h2", b"http/1.1"]).await;
    let limit = Duration::from_secs(13);
    let (a, b, c, ()) = tokio::join!(
        closed_within(&mut tcp, limit),
        closed_within(&mut r, limit),
        closed_within(&mut silent, limit),
        async {
            // Served meanwhile.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_served_promptly(&s, &s.client(), Duration::from_millis(500)).await;
        }
    );
    t.abort();
    for (d, what) in [(a, "no TLS"), (b, "slow headers"), (c, "no request")] {
        let d = d.unwrap_or_else(|| panic!("{what}: still connected after {limit:?}"));
        assert!(
            d >= Duration::from_secs(9) && d < Duration::from_secs(12),
            "{what}: closed after {d:?}"
        );
    }
    s.stop().await;
}

/// Bytes that are not TLS on the HTTPS port are dropped, and nothing else notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_tls_port() {
    let s = Server::start(SHORT).await;
    let client = s.client();
    let mut rng_state = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                // xorshift64*: reproducible garbage.
                rng_state ^= rng_state >> 12;
                rng_state ^= rng_state << 25;
                rng_state ^= rng_state >> 27;
                (rng_state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    };
    let mut payloads: Vec<(String, Vec<u8>)> = vec![
        (
            "plain HTTP".into(),
            b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n{}".to_vec(),
        ),
        ("plain GET".into(), b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        (
            "HTTP/2 prior knowledge without TLS".into(),
            [H2_PREFACE, H2_SETTINGS].concat(),
        ),
        (
            "TLS record of the largest length".into(),
            [&[0x16, 0x03, 0x01, 0xff, 0xff][..], &random(1024)].concat(),
        ),
        (
            "SSLv2 ClientHello".into(),
            vec![
                0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
            ],
        ),
        ("one zero byte".into(), vec![0]),
        ("64 KiB of zeros".into(), vec![0; 64 * 1024]),
    ];
    for n in [1, 5, 100, 1000, 16 * 1024, 256 * 1024] {
        payloads.push((format!("{n} random bytes"), random(n)));
    }
    for (what, bytes) in &payloads {
        let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        // The server may close before all is written.
        let _ = tcp.write_all(bytes).await;
        let d = closed_within(&mut tcp, SHORT.handshake * 3).await;
        let d = d.unwrap_or_else(|| panic!("{what}: connection still open"));
        // Garbage is refused as it arrives; a prefix that could still become a ClientHello
        // is left to the handshake time limit.
        assert!(
            d < SHORT.handshake + Duration::from_millis(1500),
            "{what}: {d:?}"
        );
        assert_served_promptly(&s, &client, Duration::from_millis(500)).await;
    }
    // Garbage after a good handshake: HTTP/1.1 answers 400 or closes; nothing hangs.
    for (what, bytes) in &payloads {
        let mut tls = s.connect_tls(&[b"http/1.1"]).await;
        let _ = tls.write_all(bytes).await;
        let _ = tls.flush().await;
        let d = closed_within(&mut tls, SHORT.header_read * 3).await;
        assert!(d.is_some(), "{what} inside TLS: connection still open");
    }
    // Many at once.
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        let addr = s.addr;
        let bytes = payloads[(i as usize) % payloads.len()].1.clone();
        tasks.push(tokio::spawn(async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = tcp.write_all(&bytes).await;
            closed_within(&mut tcp, Duration::from_secs(5))
                .await
                .is_some()
        }));
    }
    assert_served_promptly(&s, &client, Duration::from_millis(500)).await;
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_served_promptly(&s, &s.client(), Duration::from_millis(500)).await;
    s.stop().await;
}

/// Longest a hostile manifest may take to be answered. The slowest are patterns such as
/// `\p{L}{1000}`, which the regex crate takes ~130 ms to give up on in a release build and five to
/// ten times that in a debug build (dependencies unoptimised) on a busy machine.
const ANSWER_BOUND: Duration = if cfg!(debug_assertions) {
    Duration::from_millis(3000)
} else {
    Duration::from_millis(400)
};

/// Sends each manifest through `/validate` (and `/mutate`), checks the answer is well formed
/// and quick, and returns the validate response.
async fn judge(
    s: &Server,
    client: &reqwest::Client,
    slowest: &mut (Duration, String),
    what: &str,
    object: &Value,
) -> Value {
    let body = serde_json::to_vec(&review(what, "CREATE", object)).unwrap();
    let mut out = Value::Null;
    for ep in ["/validate", "/mutate"] {
        let a: Answer = s.post(client, ep, body.clone()).await;
        assert!(a.took < ANSWER_BOUND, "{what} {ep}: {:?}", a.took);
        if a.took > slowest.0 {
            *slowest = (a.took, format!("{what} {ep}"));
        }
        let resp = check_answer(&body, &a).unwrap_or_else(|| panic!("{what}: {}", a.text()));
        if let Some(msg) = denial(&resp) {
            assert!(msg.len() < 2048, "{what}: a message of {} bytes", msg.len());
        }
        if ep == "/validate" {
            out = resp;
        }
    }
    out
}

fn refused(resp: &Value, what: &str, field: &str, words: &str) {
    let msg = denial(resp).unwrap_or_else(|| panic!("{what}: admitted: {resp}"));
    assert!(
        msg.contains(field) && msg.contains(words),
        "{what}: wanted {field:?} and {words:?} in {msg:?}"
    );
}

fn admitted(resp: &Value, what: &str) {
    assert_eq!(resp["allowed"], true, "{what}: {resp}");
}

fn es_with(spec_patch: Value) -> Value {
    let mut spec = es_spec("app/db");
    for (k, v) in spec_patch.as_object().unwrap() {
        spec[k] = v.clone();
    }
    external_secret("v1", spec)
}

fn data_key(key: &str) -> Value {
    es_with(json!({"data": [{"secretKey": "a", "remoteRef": {"key": key}}]}))
}

/// Remote keys, properties and Secret keys built to leave the KV mount or to be absurd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_remote_keys() {
    let s = Server::start(Timeouts::default()).await;
    let c = s.client();
    let mut slowest = (Duration::ZERO, String::new());
    let long = "a".repeat(100_000);
    let deep = "a/".repeat(50_000) + "a";
    for (key, words) in [
        ("../x", "contains a \".\" or \"..\" segment"),
        ("app/../../sys/seal", "contains a \".\" or \"..\" segment"),
        ("app/./x", "contains a \".\" or \"..\" segment"),
        ("sys/mounts", "Vault's sys/ API"),
        ("sys", "Vault's sys/ API"),
        ("auth/token/create", "Vault's auth/ API"),
        ("/secret/x", "starts with \"/\""),
        ("app\0x", "NUL"),
        ("", "empty"),
        (long.as_str(), "longer than"),
        (deep.as_str(), "longer than"),
    ] {
        let what = format!("key {:?}", &key[..key.len().min(20)]);
        let r = judge(&s, &c, &mut slowest, &what, &data_key(key)).await;
        refused(&r, &what, "spec.data[0].remoteRef.key", words);
        // The same key in every other place a key goes.
        let r = judge(
            &s,
            &c,
            &mut slowest,
            &what,
            &es_with(json!({"data": [], "dataFrom": [{"extract": {"key": key}}]})),
        )
        .await;
        refused(&r, &what, "spec.dataFrom[0].extract.key", words);
        let r = judge(
            &s,
            &c,
            &mut slowest,
            &what,
            &es_with(json!({"data": [], "dataFrom": [{"find": {"path": key}}]})),
        )
        .await;
        refused(&r, &what, "spec.dataFrom[0].find.path", words);
    }
    // Keys that only look odd are Vault names like any other.
    for key in [
        "ключ/秘密",
        "app/..data",
        "%2e%2e/sys",
        "app\\..\\sys",
        "system/x",
        "a b/c?d#e",
    ] {
        let r = judge(&s, &c, &mut slowest, key, &data_key(key)).await;
        admitted(&r, key);
    }
    // Properties are names inside the secret: anything goes, but it is answered at once.
    for prop in ["a\0b", "../../x", long.as_str()] {
        let es = es_with(
            json!({"data": [{"secretKey": "a", "remoteRef": {"key": "app/db", "property": prop}}]}),
        );
        let r = judge(&s, &c, &mut slowest, "property", &es).await;
        admitted(&r, "property");
    }
    // Secret keys must be valid Secret keys.
    for (sk, words) in [
        ("a\0b", "\\0"),
        ("../x", "not a valid Secret key"),
        (long.as_str(), "not a valid Secret key"),
    ] {
        let es = es_with(json!({"data": [{"secretKey": sk, "remoteRef": {"key": "app/db"}}]}));
        let r = judge(&s, &c, &mut slowest, "secretKey", &es).await;
        refused(&r, "secretKey", "spec.data[0].secretKey", words);
    }
    // A thousand bad keys: one answer, of a readable size, that says how many more there are.
    let many: Vec<Value> = (0..1000)
        .map(|i| json!({"secretKey": format!("k{i}"), "remoteRef": {"key": format!("../{i}")}}))
        .collect();
    let r = judge(
        &s,
        &c,
        &mut slowest,
        "many",
        &es_with(json!({"data": many})),
    )
    .await;
    refused(&r, "many", "spec.data[0].remoteRef.key", "more problems");
    // The store's own mount path.
    for path in ["../sys", "secret/../sys", "a\0b"] {
        let mut st = store("v1", "SecretStore");
        st["spec"]["provider"]["vault"]["path"] = json!(path);
        let r = judge(&s, &c, &mut slowest, "store path", &st).await;
        refused(
            &r,
            "store path",
            "spec.provider.vault.path",
            "not a KV mount path",
        );
    }
    for server in [
        long.as_str(),
        "javascript:alert(1)",
        "http://[::1",
        "https://vault\0:8200",
    ] {
        let mut st = store("v1", "ClusterSecretStore");
        st["spec"]["provider"]["vault"]["server"] = json!(server);
        let r = judge(&s, &c, &mut slowest, "server", &st).await;
        refused(&r, "server", "spec.provider.vault.server", "");
    }
    println!(
        "slowest hostile key answer: {:?} ({})",
        slowest.0, slowest.1
    );
    s.stop().await;
}

/// Regular expressions that would take exponential time in a backtracking engine, or are huge:
/// refused or admitted at once, with a reason when refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_regexes() {
    const TOO_BIG: &str = "compiles to more than 10 MiB";
    let s = Server::start(Timeouts::default()).await;
    let c = s.client();
    let mut slowest = (Duration::ZERO, String::new());
    let long_literal = "a".repeat(100_000);
    let long_alternation = (0..20_000)
        .map(|i| format!("k{i}"))
        .collect::<Vec<_>>()
        .join("|");
    let deep_groups = "(".repeat(10_000) + &")".repeat(10_000);
    let mut cases: Vec<(&str, String, Option<&str>)> = vec![
        ("nested plus", "(a+)+$".into(), None),
        ("ambiguous alternation", "(a|a)*b".into(), None),
        ("nested star", "(.*a){20}".into(), None),
        (
            "backreference",
            r"(a)\1".into(),
            Some("backreferences are not supported"),
        ),
        ("lookahead", "(?=a)".into(), Some("look-around")),
        ("huge repetition", "a{1000}{1000}".into(), Some(TOO_BIG)),
        (
            "wide unicode repetition",
            r"\p{L}{1000}".into(),
            Some(TOO_BIG),
        ),
        // Go's \w is ASCII: small however often it is repeated.
        ("ascii word repetition", r"\w{1000}".into(), None),
        ("a million", "a{1000000}".into(), Some(TOO_BIG)),
        ("large but allowed", r"^[\w-]{3,63}$".into(), None),
        (
            "over the repetition maximum",
            "a{4294967296}".into(),
            Some("does not compile"),
        ),
        (
            "10k nested groups",
            deep_groups,
            Some("is longer than 4096 bytes"),
        ),
        (
            "300 nested groups",
            "(".repeat(300) + &")".repeat(300),
            Some("nest"),
        ),
        (
            "100k-character pattern",
            long_literal,
            Some("is longer than 4096 bytes"),
        ),
        (
            "20k alternatives",
            long_alternation,
            Some("is longer than 4096 bytes"),
        ),
    ];
    // The same patterns apply as find regexps, rewrite sources and namespace regexes.
    for (what, re, want) in cases.drain(..) {
        let find = es_with(
            json!({"data": [], "dataFrom": [{"find": {"path": "app", "name": {"regexp": re}}}]}),
        );
        let rewrite = es_with(json!({"data": [], "dataFrom": [{"extract": {"key": "app"},
            "rewrite": [{"regexp": {"source": re, "target": "x"}}]}]}));
        let mut css = store("v1", "ClusterSecretStore");
        css["spec"]["conditions"] = json!([{"namespaceRegexes": [re]}]);
        for (obj, field) in [
            (find, "spec.dataFrom[0].find.name.regexp"),
            (rewrite, "spec.dataFrom[0].rewrite[0].regexp.source"),
            (css, "spec.conditions[0].namespaceRegexes[0]"),
        ] {
            let r = judge(&s, &c, &mut slowest, what, &obj).await;
            match want {
                None => admitted(&r, what),
                Some(words) => refused(&r, what, field, words),
            }
        }
    }
    // Many distinct patterns near the size limit in one manifest: still one quick answer.
    let many: Vec<Value> = (0..64)
        .map(|i| json!({"find": {"path": "app", "name": {"regexp": format!("[a-z]{{{}}}x{i}", 200 + i)}}}))
        .collect();
    let r = judge(
        &s,
        &c,
        &mut slowest,
        "many regexes",
        &es_with(json!({"data": [], "dataFrom": many})),
    )
    .await;
    admitted(&r, "many regexes");
    println!(
        "slowest hostile regex answer: {:?} ({})",
        slowest.0, slowest.1
    );
    s.stop().await;
}

/// Templates that loop, nest or explode: refused at admission when they cannot parse, and
/// bounded when run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_templates() {
    let s = Server::start(Timeouts::default()).await;
    let c = s.client();
    let mut slowest = (Duration::ZERO, String::new());
    let deep_if = "{{if true}}".repeat(1000) + &"{{end}}".repeat(1000);
    let deep_parens = format!("{{{{{}1{}}}}}", "(".repeat(10_000), ")".repeat(10_000));
    let many_actions = "{{ .a }}".repeat(10_000);
    let unclosed = "{{if true}}".repeat(50);
    let huge = "x".repeat(1024 * 1024 + 1);
    let with_template = |src: &str| {
        es_with(
            json!({"target": {"name": "app", "creationPolicy": "Owner", "deletionPolicy": "Retain",
            "template": {"data": {"out": src}}}}),
        )
    };
    let refused_parse = [
        ("deep ifs", deep_if.as_str(), "nesting depth"),
        ("deep parentheses", deep_parens.as_str(), "nesting depth"),
        ("unclosed ifs", unclosed.as_str(), "EOF"),
        (
            "unknown function",
            "{{ exec \"rm\" }}",
            "function \"exec\" not defined",
        ),
    ];
    for (what, src, words) in refused_parse {
        let r = judge(&s, &c, &mut slowest, what, &with_template(src)).await;
        refused(&r, what, "spec.target.template.data[out]", words);
    }
    // Longer than a Secret holds, alone or together: not even parsed.
    let half = "{{ .a }}".repeat(80_000);
    let mut two = with_template(&half);
    two["spec"]["target"]["template"]["data"]["other"] = json!(half);
    for (what, obj) in [("over 1 MiB", with_template(&huge)), ("two of 640 KB", two)] {
        let r = judge(&s, &c, &mut slowest, what, &obj).await;
        refused(
            &r,
            what,
            "spec: the templates",
            "bytes long together; at most 1048576",
        );
    }
    // More actions than templates have: not parsed either.
    let actions = "{{ .a }}".repeat(100_000);
    let r = judge(
        &s,
        &c,
        &mut slowest,
        "100k actions",
        &with_template(&actions),
    )
    .await;
    refused(
        &r,
        "100k actions",
        "spec: the templates",
        "have 100000 actions together",
    );
    // These parse; they are bounded when they run (below).
    let loops = [
        ("long range", "{{range 100000000}}x{{end}}"),
        (
            "nested ranges",
            "{{range 100000}}{{range 100000}}x{{end}}{{end}}",
        ),
        ("repeat bomb", "{{ repeat 1000000 (repeat 1000000 \"x\") }}"),
        (
            "recursion",
            "{{define \"r\"}}{{template \"r\" .}}{{end}}{{template \"r\" .}}",
        ),
        ("many actions", many_actions.as_str()),
    ];
    for (what, src) in loops {
        let r = judge(&s, &c, &mut slowest, what, &with_template(src)).await;
        admitted(&r, what);
        let t: vaultgate::api::ExternalSecretTemplate =
            serde_json::from_value(json!({"data": {"out": src}})).unwrap();
        let mut fetched = std::collections::BTreeMap::new();
        fetched.insert("a".to_string(), b"v".to_vec());
        let start = Instant::now();
        let out = vaultgate::template::render_target(&t, &fetched, &Default::default());
        let took = start.elapsed();
        assert!(took < Duration::from_secs(3), "{what}: ran {took:?}");
        match (what, out) {
            ("many actions", Ok(r)) => assert_eq!(r.data["out"].len(), 10_000),
            (_, Err(e)) => assert_eq!(e.kind(), "limit", "{what}: {e}"),
            (_, Ok(_)) => panic!("{what}: rendered"),
        }
    }
    // Labels and annotations on the ExternalSecret itself are the API server's to judge: they
    // do not slow anything down here.
    let long = "v".repeat(100_000);
    let mut es = with_template("{{ .a }}");
    es["metadata"]["labels"] = json!({"k": long, "n\0": "\0", "a b": "\n"});
    es["metadata"]["annotations"] = json!({"a": "b".repeat(1024 * 1024)});
    let r = judge(&s, &c, &mut slowest, "own labels", &es).await;
    admitted(&r, "own labels");
    // Those of the target Secret: anything an annotation may hold, and templated label values,
    // are admitted; keys and literal label values the Secret could never carry are refused.
    let mut es = with_template("{{ .a }}");
    es["spec"]["target"]["template"]["metadata"] = json!({
        "labels": {"app": "{{ .a }}", "example.com/team": "{{ .a | lower }}"},
        "annotations": {"note": "line\nbreak\0nul", "big": "a".repeat(512 * 1024)},
    });
    let r = judge(&s, &c, &mut slowest, "target labels", &es).await;
    admitted(&r, "target labels");
    for (what, metadata, words) in [
        (
            "long label value",
            json!({"labels": {"x": long}}),
            "the value of \"x\" is not a valid label value",
        ),
        (
            "NUL in a label key",
            json!({"labels": {"a\0": "x"}}),
            "key \"a\\0\" is not a valid label key",
        ),
        (
            "huge annotation key",
            json!({"annotations": {long.clone(): "x"}}),
            "(100000 bytes) is not a valid annotation key",
        ),
        (
            "label template that does not parse",
            json!({"labels": {"l": "{{ if }}"}}),
            "labels[l]: template: l:1",
        ),
    ] {
        let mut es = with_template("{{ .a }}");
        es["spec"]["target"]["template"]["metadata"] = metadata;
        let r = judge(&s, &c, &mut slowest, what, &es).await;
        refused(&r, what, "spec.target.template.metadata.", words);
    }
    println!(
        "slowest hostile template answer: {:?} ({})",
        slowest.0, slowest.1
    );
    s.stop().await;
}
