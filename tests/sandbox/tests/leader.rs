//! Two replicas on one Lease: the leader loses the Lease (its Lease requests fail while all its
//! other requests still go through, the worst case), the other replica takes over, the old
//! leader comes back and stays a follower, and takes the Lease again when the other shuts down.
//! At no point do two replicas write: in the API server's audit log and in each replica's own
//! record of its writes, the old leader's last write comes before the new leader's first. No
//! Secret is deleted or emptied, and every Secret follows the values Vault was given meanwhile.
//! The hand-over times are printed.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;
use vaultgate::admission::LiveMode;
use vaultgate_sandbox::{ApiGate, GateWrite, Sandbox, SandboxOptions, vaultgate_user};

const N: usize = 5;
const LIMIT: Duration = Duration::from_secs(30);
/// The Lease's duration (leader::Timing's default): nobody may take over sooner.
const LEASE: Duration = Duration::from_secs(15);
/// A leader that could not renew for this long steps down (leader::Timing's default).
const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// What the test knows of one replica.
struct Who {
    pod: String,
    /// Its user in the audit log.
    user: String,
    gate: ApiGate,
    metrics: String,
}

impl Who {
    /// Its successful writes of the reconciler's objects (namespace `app`), oldest first.
    fn work(&self) -> Vec<GateWrite> {
        self.gate
            .writes()
            .into_iter()
            .filter(|w| w.ok() && w.path.contains("/namespaces/app/"))
            .collect()
    }
    /// Its successful Lease writes (acquisitions and renewals), oldest first.
    fn lease_writes(&self) -> Vec<GateWrite> {
        self.gate
            .writes()
            .into_iter()
            .filter(|w| w.ok() && w.is_lease())
            .collect()
    }
    /// Its `externalsecret_sync_calls_total`, summed.
    async fn syncs(&self) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        vaultgate_sandbox::process::metric_sum(&text, "externalsecret_sync_calls_total")
            .unwrap_or(0.0)
    }
    async fn ready(&self) -> bool {
        reqwest::get(format!("{}/readyz", self.metrics))
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

async fn holder(sb: &Sandbox) -> Option<String> {
    let leases: kube::Api<Lease> =
        kube::Api::namespaced(sb.kube.client().await, &sb.args.pod_namespace);
    leases
        .get_opt(&sb.args.lease_name)
        .await
        .ok()??
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

async fn wait_holder(sb: &Sandbox, want: &str, limit: Duration) -> Instant {
    let start = Instant::now();
    loop {
        if holder(sb).await.as_deref() == Some(want) {
            return Instant::now();
        }
        assert!(
            start.elapsed() < limit,
            "{want} did not hold the Lease within {limit:?}; holder {:?}",
            holder(sb).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn set_all(sb: &Sandbox, round: &str) {
    for i in 0..N {
        sb.vault
            .kv2_put(
                "secret",
                &format!("app/s{i}"),
                json!({"v": format!("{round}-{i}")}),
            )
            .unwrap();
    }
}

async fn converge(sb: &Sandbox, round: &str) -> Duration {
    let start = Instant::now();
    for i in 0..N {
        wait_value(
            sb,
            "app",
            &format!("es{i}"),
            "v",
            &format!("{round}-{i}"),
            LIMIT,
        )
        .await;
    }
    start.elapsed()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Seconds from `from` to `to`, negative when `to` is earlier.
fn since(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64()
    } else {
        -(from - to).as_secs_f64()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_lost_and_regained_never_two_writers() {
    let mut opts = SandboxOptions::from_env().unwrap();
    opts.run_args.admission_live = LiveMode::Off;
    opts.run_args.leader_elect = true;
    opts.run_args.log_level = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into());
    opts.pod_name = Some("vaultgate-a".into());
    vaultgate::telemetry::init(
        vaultgate::telemetry::LogFormat::Text,
        &opts.run_args.log_level,
    )
    .unwrap();
    let sb = Sandbox::start(opts).await.unwrap();
    // The first replica leads before the second exists.
    wait_holder(&sb, "vaultgate-a", LIMIT).await;
    let replica = sb.start_replica("vaultgate-b").await.unwrap();
    let a = Who {
        pod: "vaultgate-a".into(),
        user: vaultgate_user(&sb.args.pod_namespace),
        gate: sb.gate.clone(),
        metrics: sb.metrics_url(),
    };
    let b = Who {
        pod: replica.pod_name.clone(),
        user: replica.user.clone(),
        gate: replica.gate.clone(),
        metrics: replica.metrics_url(),
    };
    assert_ne!(a.user, b.user);
    sb.kube.clear_audit();

    // Steady state: A leads and does all the work; B is ready (it serves the webhook) and idle.
    approle_app(&sb, N, LIMIT).await;
    let (stop_guard, guarded) = guard(&sb, N);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(holder(&sb).await.as_deref(), Some(a.pod.as_str()));
    assert!(a.ready().await && b.ready().await, "both replicas ready");
    assert!(a.syncs().await > 0.0, "the leader syncs");
    assert_eq!(b.syncs().await, 0.0, "the follower does not sync");
    assert!(b.work().is_empty(), "the follower wrote: {:?}", b.work());

    // A can no longer reach the Lease; everything else it sends still goes through.
    let fault = Instant::now();
    sb.gate.fail_leases(Some(500));
    set_all(&sb, "v2").await;
    let taken = wait_holder(&sb, &b.pod, LEASE * 3).await;
    // Changed while A is still cut off from the Lease: only B can bring it.
    set_all(&sb, "v3").await;
    let v3 = converge(&sb, "v3").await;
    let a_syncs_at_takeover = a.syncs().await;

    // A comes back: it must stay a follower while B renews.
    sb.gate.fail_leases(None);
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a_syncs_back = a.syncs().await;
    set_all(&sb, "v4").await;
    let v4 = converge(&sb, "v4").await;
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(back.elapsed())).await;
    assert_eq!(
        holder(&sb).await.as_deref(),
        Some(b.pod.as_str()),
        "B keeps the Lease"
    );
    assert_eq!(
        a.syncs().await,
        a_syncs_back,
        "A synced while it was a follower"
    );
    assert!(b.syncs().await > 0.0, "B syncs once it leads");

    // B shuts down (releasing the Lease): A takes over again.
    let b_stop = Instant::now();
    replica.stop().await.unwrap();
    let regained = wait_holder(&sb, &a.pod, LIMIT).await;
    set_all(&sb, "v5").await;
    let v5 = converge(&sb, "v5").await;
    stop_guard.store(true, Ordering::SeqCst);
    guarded.await.unwrap().unwrap();

    // Hand-over figures, from each replica's own record of its writes.
    let a_work = a.work();
    let b_work = b.work();
    let a_renewals = a.lease_writes();
    let b_leases = b.lease_writes();
    let last_renewal = a_renewals
        .iter()
        .rfind(|w| w.sent < fault)
        .expect("A renewed the Lease before the fault")
        .clone();
    let b_acquired = b_leases.first().expect("B took the Lease").clone();
    let b_first = b_work.first().expect("B wrote once it led").clone();
    let b_last = b_work.last().unwrap().clone();
    let a_last_before = a_work
        .iter()
        .rfind(|w| w.sent < b_first.sent)
        .expect("A wrote while it led")
        .clone();
    let a_first_after = a_work
        .iter()
        .find(|w| w.sent >= b_first.sent)
        .expect("A wrote again once it led again")
        .clone();
    let t0 = last_renewal.sent;
    println!("A's last Lease renewal before its Lease requests failed: t0");
    println!(
        "  fault injected                 t0 + {:.2} s",
        since(t0, fault)
    );
    println!(
        "  A's last write                 t0 + {:.2} s (steps down at 10 s, abandons work at 15 s)",
        since(t0, a_last_before.answered)
    );
    println!(
        "  B took the Lease               t0 + {:.2} s (seen by the test at t0 + {:.2} s)",
        since(t0, b_acquired.sent),
        since(t0, taken)
    );
    println!(
        "  B's first write                t0 + {:.2} s",
        since(t0, b_first.sent)
    );
    println!(
        "hand-over: {:.2} s without a writer (A's last write to B's first), {:.2} s from the fault to B's first write",
        since(a_last_before.answered, b_first.sent),
        since(fault, b_first.sent)
    );
    println!(
        "Vault values changed during the outage synced in {}; after A came back (as a follower) in {}",
        secs(v3),
        secs(v4)
    );
    println!(
        "B shut down: A led again after {}, wrote {} after B's last write; synced new values in {}",
        secs(regained - b_stop),
        secs(
            a_first_after
                .sent
                .saturating_duration_since(b_last.answered)
        ),
        secs(v5)
    );

    // Never two writers, by each replica's own timestamps...
    let mut overlaps = vec![];
    for w in &a_work {
        if w.answered > b_first.sent && w.sent < b_last.answered {
            overlaps.push(format!("A {} {}", w.method, w.path));
        }
    }
    assert!(
        overlaps.is_empty(),
        "A wrote while B led:\n{}",
        overlaps.join("\n")
    );
    assert!(a_last_before.answered < b_first.sent);
    assert!(b_last.answered < a_first_after.sent);
    // ...and in the API server's audit log: A's writes, then B's, then A's, never interleaved.
    let writes: Vec<(String, String)> = sb
        .kube
        .audit()
        .into_iter()
        .filter(|r| {
            r.namespace == "app"
                && (200..300).contains(&r.code)
                && matches!(
                    r.verb.as_str(),
                    "create" | "update" | "patch" | "delete" | "deletecollection"
                )
                && (r.user == a.user || r.user == b.user)
        })
        .map(|r| {
            let who = if r.user == a.user { "A" } else { "B" };
            (
                who.to_string(),
                format!(
                    "{who} {} {}{}{} {}",
                    r.verb,
                    r.resource,
                    if r.subresource.is_empty() { "" } else { "/" },
                    r.subresource,
                    r.name
                ),
            )
        })
        .collect();
    let mut runs: Vec<(String, usize)> = vec![];
    for (who, _) in &writes {
        match runs.last_mut() {
            Some((w, n)) if w == who => *n += 1,
            _ => runs.push((who.clone(), 1)),
        }
    }
    let shape: Vec<&str> = runs.iter().map(|(w, _)| w.as_str()).collect();
    if shape != ["A", "B", "A"] {
        let mut listing = vec![];
        let mut i = 0;
        for (w, n) in &runs {
            listing.push(format!("{n} write(s) by {w}, first: {}", writes[i].1));
            i += n;
        }
        panic!(
            "writes by both replicas interleave (expected A, then B, then A):\n{}",
            listing.join("\n")
        );
    }
    println!(
        "audit log: {} writes by A, then {} by B, then {} by A; no interleaving",
        runs[0].1, runs[1].1, runs[2].1
    );
    // A stopped taking work when it could not renew for RENEW_DEADLINE (what is in flight then
    // takes milliseconds, allow a second), well before its Lease could expire; B took the Lease
    // no sooner than it expired.
    assert!(
        a_last_before.answered < t0 + RENEW_DEADLINE + Duration::from_secs(1),
        "A still wrote {:.2} s after its last renewal",
        since(t0, a_last_before.answered)
    );
    assert!(
        b_acquired.sent >= t0 + LEASE,
        "B took the Lease {:.2} s after A's last renewal",
        since(t0, b_acquired.sent)
    );
    assert!(a_syncs_at_takeover > 0.0);
    sb.stop().await.unwrap();
}
