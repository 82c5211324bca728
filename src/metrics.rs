//! Prometheus metrics. ESO's metric names and labels are kept so existing dashboards work;
//! vaultgate's own additions are prefixed `vaultgate_`.
//!
//! Label values are names, kinds, calls and statuses only: never a secret value or a path's
//! content.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric of the process, registered in one registry served at `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// ESO: `externalsecret_sync_calls_total{name, namespace}`.
    pub sync_calls_total: IntCounterVec,
    /// ESO: `externalsecret_sync_calls_error{name, namespace}`.
    pub sync_calls_error: IntCounterVec,
    /// ESO: `externalsecret_status_condition{name, namespace, condition, status}` (1 or 0).
    pub status_condition: GaugeVec,
    /// ESO: `externalsecret_reconcile_duration{name, namespace}`, milliseconds of the last
    /// reconcile (a gauge, as in ESO).
    pub reconcile_duration: GaugeVec,
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
    /// Tasks alive in the process's tokio runtime, set when `/metrics` is scraped: a count that
    /// keeps rising under a steady load is a task leak.
    pub runtime_alive_tasks: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let sync_calls_total = IntCounterVec::new(
            Opts::new(
                "externalsecret_sync_calls_total",
                "Total number of the External Secret sync calls",
            ),
            &["name", "namespace"],
        )
        .expect("valid metric");
        let sync_calls_error = IntCounterVec::new(
            Opts::new(
                "externalsecret_sync_calls_error",
                "Total number of the External Secret sync errors",
            ),
            &["name", "namespace"],
        )
        .expect("valid metric");
        let status_condition = GaugeVec::new(
            Opts::new(
                "externalsecret_status_condition",
                "The status condition of a specific External Secret",
            ),
            &["name", "namespace", "condition", "status"],
        )
        .expect("valid metric");
        let reconcile_duration = GaugeVec::new(
            Opts::new(
                "externalsecret_reconcile_duration",
                "The duration time to reconcile the External Secret (ms)",
            ),
            &["name", "namespace"],
        )
        .expect("valid metric");
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
        let runtime_alive_tasks = IntGauge::new(
            "vaultgate_runtime_alive_tasks",
            "Tasks alive in the tokio runtime (sampled at scrape time)",
        )
        .expect("valid metric");
        for c in [
            Box::new(sync_calls_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sync_calls_error.clone()),
            Box::new(status_condition.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(provider_api_calls.clone()),
            Box::new(vault_requests.clone()),
            Box::new(vault_logins.clone()),
            Box::new(admission_requests.clone()),
            Box::new(admission_duration.clone()),
            Box::new(store_ready.clone()),
            Box::new(runtime_alive_tasks.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            sync_calls_total,
            sync_calls_error,
            status_condition,
            reconcile_duration,
            provider_api_calls,
            vault_requests,
            vault_logins,
            admission_requests,
            admission_duration,
            store_ready,
            runtime_alive_tasks,
        }
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

    /// Sets ESO's `externalsecret_status_condition` for one ExternalSecret: the current status
    /// gets 1, the others 0 (as ESO does).
    pub fn set_es_condition(&self, name: &str, namespace: &str, condition: &str, status: &str) {
        for s in ["True", "False", "Unknown"] {
            let v = if s == status { 1.0 } else { 0.0 };
            self.status_condition
                .with_label_values(&[name, namespace, condition, s])
                .set(v);
        }
    }

    /// Forgets the series of a deleted ExternalSecret, so that cardinality follows the cluster.
    pub fn forget_es(&self, name: &str, namespace: &str) {
        let _ = self
            .sync_calls_total
            .remove_label_values(&[name, namespace]);
        let _ = self
            .sync_calls_error
            .remove_label_values(&[name, namespace]);
        let _ = self
            .reconcile_duration
            .remove_label_values(&[name, namespace]);
        for cond in ["Ready", "Deleted"] {
            for s in ["True", "False", "Unknown"] {
                let _ = self
                    .status_condition
                    .remove_label_values(&[name, namespace, cond, s]);
            }
        }
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
        m.sync_calls_total.with_label_values(&["es", "ns"]).inc();
        m.sync_calls_error.with_label_values(&["es", "ns"]).inc();
        m.set_es_condition("es", "ns", "Ready", "True");
        m.reconcile_duration
            .with_label_values(&["es", "ns"])
            .set(3.0);
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
}
