//! Prometheus metrics. ESO's metric names and labels are kept so existing dashboards work;
//! vaultgate's own additions are prefixed `vaultgate_`.
//!
//! Label values are names, kinds, calls and statuses only: never a secret value or a path's
//! content.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

const ES_CONDITIONS: [&str; 2] = ["Ready", "Deleted"];
const STATUSES: [&str; 3] = ["True", "False", "Unknown"];

/// What ESO's per-ExternalSecret series hold for one ExternalSecret.
#[derive(Default, Clone, Copy)]
struct EsSeries {
    calls: u64,
    errors: u64,
    duration_ms: Option<f64>,
    /// Index into [`STATUSES`] per [`ES_CONDITIONS`] entry, once set.
    conditions: [Option<u8>; 2],
}

type EsMap = HashMap<(Box<str>, Box<str>), EsSeries>;

/// ESO's per-ExternalSecret series, kept as a few numbers per object and turned into metric
/// families only when scraped. As `prometheus` label vectors they took about 2.5 KiB per
/// ExternalSecret (five series with their own label strings and hashes): 25 MiB at 10,000.
#[derive(Clone)]
struct EsMetrics {
    map: Arc<Mutex<EsMap>>,
    descs: Arc<Vec<Desc>>,
}

impl EsMetrics {
    fn new() -> Self {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            Desc::new(
                name.into(),
                help.into(),
                labels.iter().map(|l| l.to_string()).collect(),
                HashMap::new(),
            )
            .expect("valid metric")
        };
        EsMetrics {
            map: Arc::default(),
            descs: Arc::new(vec![
                desc(
                    "externalsecret_sync_calls_total",
                    "Total number of the External Secret sync calls",
                    &["name", "namespace"],
                ),
                desc(
                    "externalsecret_sync_calls_error",
                    "Total number of the External Secret sync errors",
                    &["name", "namespace"],
                ),
                desc(
                    "externalsecret_status_condition",
                    "The status condition of a specific External Secret",
                    &["name", "namespace", "condition", "status"],
                ),
                desc(
                    "externalsecret_reconcile_duration",
                    "The duration time to reconcile the External Secret (ms)",
                    &["name", "namespace"],
                ),
            ]),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EsMap> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, name: &str, namespace: &str, f: impl FnOnce(&mut EsSeries)) {
        let mut map = self.lock();
        let key: (Box<str>, Box<str>) = (namespace.into(), name.into());
        f(map.entry(key).or_default());
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

fn family(desc: &Desc, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(desc.fq_name.clone());
    f.set_help(desc.help.clone());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

impl Collector for EsMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot: Vec<_> = {
            let map = self.lock();
            map.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
        let (mut calls, mut errors, mut conditions, mut durations) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Label pairs in name order, as the text encoder of registered vectors writes them.
        for ((ns, name), e) in &snapshot {
            let base = || vec![label("name", name), label("namespace", ns)];
            let counter = |v: u64| {
                let mut m = Metric::default();
                m.set_label(base());
                let mut c = Counter::default();
                c.set_value(v as f64);
                m.set_counter(c);
                m
            };
            let gauge = |labels: Vec<LabelPair>, v: f64| {
                let mut m = Metric::default();
                m.set_label(labels);
                let mut g = Gauge::default();
                g.set_value(v);
                m.set_gauge(g);
                m
            };
            calls.push(counter(e.calls));
            if e.errors > 0 {
                errors.push(counter(e.errors));
            }
            if let Some(ms) = e.duration_ms {
                durations.push(gauge(base(), ms));
            }
            for (c, set) in ES_CONDITIONS.iter().zip(e.conditions) {
                let Some(set) = set else { continue };
                for (i, st) in STATUSES.iter().enumerate() {
                    let labels = vec![
                        label("condition", c),
                        label("name", name),
                        label("namespace", ns),
                        label("status", st),
                    ];
                    conditions.push(gauge(labels, if i == set as usize { 1.0 } else { 0.0 }));
                }
            }
        }
        let d = &self.descs;
        [
            (&d[0], MetricType::COUNTER, calls),
            (&d[1], MetricType::COUNTER, errors),
            (&d[2], MetricType::GAUGE, conditions),
            (&d[3], MetricType::GAUGE, durations),
        ]
        .into_iter()
        .filter(|(_, _, m)| !m.is_empty())
        .map(|(desc, kind, m)| family(desc, kind, m))
        .collect()
    }
}

/// Every metric of the process, registered in one registry served at `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// ESO's per-ExternalSecret series: `externalsecret_sync_calls_total`,
    /// `externalsecret_sync_calls_error`, `externalsecret_status_condition` and
    /// `externalsecret_reconcile_duration` (see [`EsMetrics`]).
    es: EsMetrics,
    /// ESO: `externalsecret_provider_api_calls_count{provider, call, status}`.
    pub provider_api_calls: IntCounterVec,
    /// Vault HTTP requests by call (`login`, `read`, `list`, `lookup_self`, …) and HTTP status.
    pub vault_requests: IntCounterVec,
    /// Logins per store kind, to see at a glance that Vault is not hammered.
    pub vault_logins: IntCounterVec,
    /// Admission requests by endpoint (`mutate`/`validate`), kind and outcome.
    pub admission_requests: IntCounterVec,
    /// Admission latency in seconds by endpoint.
    pub admission_duration: HistogramVec,
    /// Store status (`secretstore_status_condition`-like): `vaultgate_store_ready{kind, namespace, name}`.
    pub store_ready: IntGaugeVec,
    /// ESO: `pushsecret_status_condition{name, namespace, condition, status}`.
    pub push_condition: GaugeVec,
    /// ESO: `pushsecret_reconcile_duration{name, namespace}` (milliseconds, as vaultgate's
    /// ExternalSecret duration).
    pub push_duration: GaugeVec,
    /// ESO: `clusterpushsecret_status_condition{name, condition, status}`.
    pub cluster_push_condition: GaugeVec,
    /// ESO: `clusterpushsecret_reconcile_duration{name}` (milliseconds).
    pub cluster_push_duration: GaugeVec,
    /// Leases of generated Vault credentials by event: `issued`, `renewed`, `revoked`, `failed`
    /// (a renew or revoke Vault refused or could not answer).
    pub leases: IntCounterVec,
    /// Tasks alive in the process's tokio runtime, set when `/metrics` is scraped: a count that
    /// keeps rising under a steady load is a task leak.
    pub runtime_alive_tasks: IntGauge,
    /// How long after its due time each scheduled refresh was handed to the controller.
    pub refresh_lag: prometheus::Histogram,
    ces_condition: IntGaugeVec,
    ces_duration: GaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let es = EsMetrics::new();
        let provider_api_calls = IntCounterVec::new(
            Opts::new(
                "externalsecret_provider_api_calls_count",
                "Number of API calls towards the secret provider",
            ),
            &["provider", "call", "status"],
        )
        .expect("valid metric");
        let vault_requests = IntCounterVec::new(
            Opts::new(
                "vaultgate_vault_requests_total",
                "Vault HTTP requests by call and HTTP status",
            ),
            &["call", "status"],
        )
        .expect("valid metric");
        let vault_logins = IntCounterVec::new(
            Opts::new(
                "vaultgate_vault_logins_total",
                "Vault logins by auth method",
            ),
            &["method"],
        )
        .expect("valid metric");
        let admission_requests = IntCounterVec::new(
            Opts::new(
                "vaultgate_admission_requests_total",
                "Admission requests by endpoint, kind and result",
            ),
            &["endpoint", "kind", "result"],
        )
        .expect("valid metric");
        let admission_duration = HistogramVec::new(
            HistogramOpts::new(
                "vaultgate_admission_duration_seconds",
                "Admission request latency",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["endpoint"],
        )
        .expect("valid metric");
        let store_ready = IntGaugeVec::new(
            Opts::new(
                "vaultgate_store_ready",
                "1 when a SecretStore/ClusterSecretStore is Ready",
            ),
            &["kind", "namespace", "name"],
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let push_condition = gauge(
            "pushsecret_status_condition",
            "The status condition of a specific Push Secret",
            &["name", "namespace", "condition", "status"],
        );
        let push_duration = gauge(
            "pushsecret_reconcile_duration",
            "The duration time to reconcile the Push Secret (ms)",
            &["name", "namespace"],
        );
        let cluster_push_condition = gauge(
            "clusterpushsecret_status_condition",
            "The status condition of a specific Cluster Push Secret",
            &["name", "condition", "status"],
        );
        let cluster_push_duration = gauge(
            "clusterpushsecret_reconcile_duration",
            "The duration time to reconcile the Cluster Push Secret (ms)",
            &["name"],
        );
        let leases = IntCounterVec::new(
            Opts::new(
                "vaultgate_generator_leases_total",
                "Leases of generated Vault credentials by event (issued, renewed, revoked, failed)",
            ),
            &["event"],
        )
        .expect("valid metric");
        let runtime_alive_tasks = IntGauge::new(
            "vaultgate_runtime_alive_tasks",
            "Tasks alive in the tokio runtime (sampled at scrape time)",
        )
        .expect("valid metric");
        let refresh_lag = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "vaultgate_refresh_lag_seconds",
                "How long after its due time a scheduled refresh started waiting for the controller",
            )
            .buckets(vec![0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
        )
        .expect("valid metric");
        // ESO's ClusterExternalSecret series: cluster-scoped, so `namespace` is empty.
        let ces_condition = IntGaugeVec::new(
            Opts::new(
                "clusterexternalsecret_status_condition",
                "The status condition of a specific Cluster External Secret",
            ),
            &["name", "namespace", "condition", "status"],
        )
        .expect("valid metric");
        let ces_duration = GaugeVec::new(
            Opts::new(
                "clusterexternalsecret_reconcile_duration",
                "The duration time to reconcile the Cluster External Secret (ms)",
            ),
            &["name", "namespace"],
        )
        .expect("valid metric");
        for c in [
            Box::new(es.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(ces_condition.clone()),
            Box::new(ces_duration.clone()),
            Box::new(provider_api_calls.clone()),
            Box::new(vault_requests.clone()),
            Box::new(vault_logins.clone()),
            Box::new(admission_requests.clone()),
            Box::new(admission_duration.clone()),
            Box::new(store_ready.clone()),
            Box::new(push_condition.clone()),
            Box::new(push_duration.clone()),
            Box::new(cluster_push_condition.clone()),
            Box::new(cluster_push_duration.clone()),
            Box::new(leases.clone()),
            Box::new(runtime_alive_tasks.clone()),
            Box::new(refresh_lag.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            es,
            provider_api_calls,
            vault_requests,
            vault_logins,
            admission_requests,
            admission_duration,
            store_ready,
            push_condition,
            push_duration,
            cluster_push_condition,
            cluster_push_duration,
            leases,
            runtime_alive_tasks,
            refresh_lag,
            ces_condition,
            ces_duration,
        }
    }

    /// Sets a PushSecret's Ready condition series: the current status 1, the other 0 (as ESO).
    pub fn set_push_condition(&self, name: &str, namespace: &str, ready: bool) {
        for (status, on) in [("True", ready), ("False", !ready)] {
            self.push_condition
                .with_label_values(&[name, namespace, "Ready", status])
                .set(if on { 1.0 } else { 0.0 });
        }
    }

    /// Forgets a deleted PushSecret's series.
    pub fn forget_push(&self, name: &str, namespace: &str) {
        for status in ["True", "False"] {
            let _ = self
                .push_condition
                .remove_label_values(&[name, namespace, "Ready", status]);
        }
        let _ = self.push_duration.remove_label_values(&[name, namespace]);
    }

    /// Sets a ClusterPushSecret's Ready condition series.
    pub fn set_cluster_push_condition(&self, name: &str, ready: bool) {
        for (status, on) in [("True", ready), ("False", !ready)] {
            self.cluster_push_condition
                .with_label_values(&[name, "Ready", status])
                .set(if on { 1.0 } else { 0.0 });
        }
    }

    /// A ClusterExternalSecret's `Ready` condition: 1 on the status it has, 0 on the other.
    pub fn set_ces_ready(&self, name: &str, ready: bool) {
        for (status, on) in [("True", ready), ("False", !ready)] {
            self.ces_condition
                .with_label_values(&[name, "", "Ready", status])
                .set(on as i64);
        }
    }

    pub fn ces_reconcile_duration(&self, name: &str, ms: f64) {
        self.ces_duration.with_label_values(&[name, ""]).set(ms);
    }

    /// Drops a deleted ClusterExternalSecret's series.
    pub fn forget_ces(&self, name: &str) {
        for status in ["True", "False"] {
            let _ = self
                .ces_condition
                .remove_label_values(&[name, "", "Ready", status]);
        }
        let _ = self.ces_duration.remove_label_values(&[name, ""]);
    }

    /// Records one Vault HTTP call under both ESO's and vaultgate's names.
    pub fn vault_call(&self, call: &str, status: u16) {
        let status_text = status.to_string();
        self.vault_requests
            .with_label_values(&[call, &status_text])
            .inc();
        let eso_status = if (200..300).contains(&status) {
            "success"
        } else {
            "error"
        };
        self.provider_api_calls
            .with_label_values(&["HashiCorp/Vault", call, eso_status])
            .inc();
    }

    /// Counts one sync of an ExternalSecret (`externalsecret_sync_calls_total`).
    pub fn es_sync_call(&self, name: &str, namespace: &str) {
        self.es.update(name, namespace, |e| e.calls += 1);
    }

    /// Counts one failed sync (`externalsecret_sync_calls_error`).
    pub fn es_sync_error(&self, name: &str, namespace: &str) {
        self.es.update(name, namespace, |e| e.errors += 1);
    }

    /// The last reconcile's duration (`externalsecret_reconcile_duration`, milliseconds).
    pub fn es_reconcile_duration(&self, name: &str, namespace: &str, ms: f64) {
        self.es
            .update(name, namespace, |e| e.duration_ms = Some(ms));
    }

    /// Sets ESO's `externalsecret_status_condition` for one ExternalSecret: the current status
    /// gets 1, the others 0 (as ESO does). Conditions other than `Ready` and `Deleted` (the
    /// only ones an ExternalSecret has) are ignored.
    pub fn set_es_condition(&self, name: &str, namespace: &str, condition: &str, status: &str) {
        let (Some(c), Some(st)) = (
            ES_CONDITIONS.iter().position(|x| *x == condition),
            STATUSES.iter().position(|x| *x == status),
        ) else {
            return;
        };
        self.es
            .update(name, namespace, |e| e.conditions[c] = Some(st as u8));
    }

    /// Counts `n` lease events (`issued`, `renewed`, `revoked`, `failed`).
    pub fn lease_events(&self, event: &str, n: usize) {
        if n > 0 {
            self.leases.with_label_values(&[event]).inc_by(n as u64);
        }
    }

    /// Forgets the series of a deleted ExternalSecret, so that cardinality follows the cluster.
    pub fn forget_es(&self, name: &str, namespace: &str) {
        self.es.lock().remove(&(namespace.into(), name.into()));
    }

    /// The text exposition format served at `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding metrics into memory");
        String::from_utf8(buf).expect("metrics text is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eso_names_are_exposed() {
        let m = Metrics::new();
        m.es_sync_call("es", "ns");
        m.es_sync_error("es", "ns");
        m.set_es_condition("es", "ns", "Ready", "True");
        m.es_reconcile_duration("es", "ns", 3.0);
        m.vault_call("read", 200);
        m.vault_call("login", 403);
        let text = m.render();
        for name in [
            "externalsecret_sync_calls_total{name=\"es\",namespace=\"ns\"} 1",
            "externalsecret_sync_calls_error{name=\"es\",namespace=\"ns\"} 1",
            "externalsecret_status_condition{condition=\"Ready\",name=\"es\",namespace=\"ns\",status=\"True\"} 1",
            "externalsecret_status_condition{condition=\"Ready\",name=\"es\",namespace=\"ns\",status=\"False\"} 0",
            "externalsecret_reconcile_duration{name=\"es\",namespace=\"ns\"} 3",
            "externalsecret_provider_api_calls_count{call=\"read\",provider=\"HashiCorp/Vault\",status=\"success\"} 1",
            "externalsecret_provider_api_calls_count{call=\"login\",provider=\"HashiCorp/Vault\",status=\"error\"} 1",
            "vaultgate_vault_requests_total{call=\"login\",status=\"403\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        m.forget_es("es", "ns");
        assert!(!m.render().contains("name=\"es\""));
    }

    #[test]
    fn cluster_external_secret_series_have_esos_names_and_go_with_the_object() {
        let m = Metrics::new();
        m.set_ces_ready("pull", false);
        m.ces_reconcile_duration("pull", 12.0);
        let text = m.render();
        for line in [
            "clusterexternalsecret_status_condition{condition=\"Ready\",name=\"pull\",namespace=\"\",status=\"True\"} 0",
            "clusterexternalsecret_status_condition{condition=\"Ready\",name=\"pull\",namespace=\"\",status=\"False\"} 1",
            "clusterexternalsecret_reconcile_duration{name=\"pull\",namespace=\"\"} 12",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        m.set_ces_ready("pull", true);
        assert!(m.render().contains("clusterexternalsecret_status_condition{condition=\"Ready\",name=\"pull\",namespace=\"\",status=\"True\"} 1"));
        m.forget_ces("pull");
        assert!(!m.render().contains("name=\"pull\""));
    }
}
