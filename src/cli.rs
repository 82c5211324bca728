//! Command line: every flag can also be set by an environment variable named `VAULTGATE_` plus
//! the flag in upper snake case (e.g. `--admission-live` ↔ `VAULTGATE_ADMISSION_LIVE`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "vaultgate",
    version,
    about = "HashiCorp Vault secrets into Kubernetes, checked at the door"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the admission webhook and the reconciler.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions (or write them into a directory).
    Crds(CrdsArgs),
    /// Write a CA and a serving certificate for the webhook into a directory (for development).
    Certs(CertsArgs),
    /// Apply the admission defaults and rules to manifests offline.
    Check(CheckArgs),
}

/// What the live admission checks do when they find a problem or cannot reach Vault.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LiveMode {
    /// No live checks.
    Off,
    /// Problems become admission warnings; the object is admitted.
    #[default]
    Warn,
    /// Problems deny the request.
    Enforce,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Serve only the admission webhook (no reconciler).
    #[arg(
        long,
        env = "VAULTGATE_WEBHOOK_ONLY",
        conflicts_with = "controller_only"
    )]
    pub webhook_only: bool,
    /// Run only the reconciler (no webhook).
    #[arg(long, env = "VAULTGATE_CONTROLLER_ONLY")]
    pub controller_only: bool,
    /// HTTPS address of the admission webhook.
    #[arg(long, env = "VAULTGATE_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub webhook_addr: SocketAddr,
    /// Plain-HTTP address for /metrics, /healthz and /readyz.
    #[arg(long, env = "VAULTGATE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Serving certificate (PEM) of the webhook; reloaded when the file changes. Without it,
    /// vaultgate manages its own CA and certificate in a Secret.
    #[arg(long, env = "VAULTGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the serving certificate.
    #[arg(long, env = "VAULTGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that signs the API server's client certificate for the webhook. With it,
    /// the webhook serves only clients holding such a certificate, and checks stores under
    /// review against Vault with their credentials; reloaded when the file changes.
    #[arg(long, env = "VAULTGATE_WEBHOOK_CLIENT_CA")]
    pub webhook_client_ca: Option<PathBuf>,
    /// Namespace vaultgate runs in (for its Lease and certificate Secret).
    #[arg(
        long,
        env = "VAULTGATE_POD_NAMESPACE",
        default_value = "vaultgate-system"
    )]
    pub pod_namespace: String,
    /// Service in front of the webhook (its DNS names go into the self-managed certificate).
    #[arg(
        long,
        env = "VAULTGATE_SERVICE_NAME",
        default_value = "vaultgate-webhook"
    )]
    pub service_name: String,
    /// Secret holding the self-managed CA and serving certificate.
    #[arg(
        long,
        env = "VAULTGATE_CERT_SECRET",
        default_value = "vaultgate-webhook-tls"
    )]
    pub cert_secret: String,
    /// Name of the Validating- and MutatingWebhookConfiguration whose caBundle vaultgate keeps
    /// current when it manages its own certificates.
    #[arg(
        long,
        env = "VAULTGATE_WEBHOOK_CONFIG_NAME",
        default_value = "vaultgate"
    )]
    pub webhook_config_name: String,
    /// Only reconcile ExternalSecrets (and SecretStores) in this namespace.
    #[arg(long, env = "VAULTGATE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Only handle stores whose `spec.controller` equals this class.
    #[arg(long, env = "VAULTGATE_CONTROLLER_CLASS", default_value = "")]
    pub controller_class: String,
    /// Elect a leader on a Lease so that only one replica reconciles.
    #[arg(long, env = "VAULTGATE_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "VAULTGATE_LEASE_NAME",
        default_value = "vaultgate-controller"
    )]
    pub lease_name: String,
    /// Live admission checks against Vault and the cluster.
    #[arg(long, env = "VAULTGATE_ADMISSION_LIVE", value_enum, default_value_t = LiveMode::Warn)]
    pub admission_live: LiveMode,
    /// Time budget of the live admission checks (keep it well under the webhook's timeoutSeconds).
    #[arg(long, env = "VAULTGATE_ADMISSION_LIVE_BUDGET", value_parser = parse_duration, default_value = "2s")]
    pub admission_live_budget: Duration,
    /// How many ExternalSecrets are reconciled at once.
    #[arg(long, env = "VAULTGATE_CONCURRENCY", default_value_t = 64)]
    pub concurrency: u16,
    /// Log format.
    #[arg(long, env = "VAULTGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log filter, in `tracing` EnvFilter syntax.
    #[arg(long, env = "VAULTGATE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

#[derive(Args, Debug)]
pub struct CrdsArgs {
    /// Write one file per CRD into this directory instead of printing.
    #[arg(long, env = "VAULTGATE_OUT_DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long, env = "VAULTGATE_OUT_DIR", default_value = "certs")]
    pub out_dir: PathBuf,
    /// DNS names (and IP addresses) of the serving certificate.
    #[arg(long = "dns-name", env = "VAULTGATE_DNS_NAMES", value_delimiter = ',', default_values_t = default_dns_names())]
    pub dns_names: Vec<String>,
    /// Validity of the serving certificate.
    #[arg(long, env = "VAULTGATE_VALIDITY", value_parser = parse_duration, default_value = "8760h")]
    pub validity: Duration,
}

fn default_dns_names() -> Vec<String> {
    vec![
        "vaultgate-webhook.vaultgate-system.svc".into(),
        "vaultgate-webhook.vaultgate-system.svc.cluster.local".into(),
        "localhost".into(),
        "127.0.0.1".into(),
    ]
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Multi-document YAML file of manifests (`-` for standard input).
    #[arg(short = 'f', long = "filename", env = "VAULTGATE_FILENAME")]
    pub file: PathBuf,
    /// Also run the live checks against the cluster of the current kubeconfig and its Vault.
    #[arg(long, env = "VAULTGATE_LIVE")]
    pub live: bool,
    /// Time budget of the live checks per object.
    #[arg(long, env = "VAULTGATE_LIVE_BUDGET", value_parser = parse_duration, default_value = "10s")]
    pub live_budget: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::api::duration::parse(s).map_err(|e| e.to_string())
}

/// Runs a parsed command line; the exit code follows the command (`check` exits 1 on problems).
pub fn main(cli: Cli) -> std::process::ExitCode {
    use std::process::ExitCode;
    let result = match cli.command {
        Command::Crds(args) => crds(args).map(|_| ExitCode::SUCCESS),
        Command::Certs(args) => certs(args).map(|_| ExitCode::SUCCESS),
        Command::Check(args) => crate::check::main(args),
        Command::Run(args) => crate::run::main(*args).map(|_| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vaultgate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn crds(args: CrdsArgs) -> anyhow::Result<()> {
    match args.out_dir {
        None => {
            print!("{}", crate::crd::render_all()?);
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for crd in crate::crd::all() {
                std::fs::write(
                    dir.join(crate::crd::file_name(&crd)),
                    crate::crd::to_yaml(&crd)?,
                )?;
            }
        }
    }
    Ok(())
}

fn certs(args: CertsArgs) -> anyhow::Result<()> {
    let bundle = crate::certs::generate(&args.dns_names, args.validity)?;
    crate::certs::write_dir(&bundle, &args.out_dir)?;
    println!(
        "wrote {0}/ca.crt, {0}/tls.crt and {0}/tls.key for {1}",
        args.out_dir.display(),
        args.dns_names.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_its_env_var() {
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if long == "help" || long == "version" {
                    continue;
                }
                let want = format!("VAULTGATE_{}", long.to_uppercase().replace('-', "_"));
                let have = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                // `--dns-name` is a list: its variable is the plural.
                if long == "dns-name" {
                    assert_eq!(have.as_deref(), Some("VAULTGATE_DNS_NAMES"));
                    continue;
                }
                if long == "filename" {
                    assert_eq!(have.as_deref(), Some("VAULTGATE_FILENAME"));
                    continue;
                }
                assert_eq!(
                    have.as_deref(),
                    Some(want.as_str()),
                    "{} --{long}",
                    sub.get_name()
                );
            }
        }
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["vaultgate", "run"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.webhook_addr.to_string(), "0.0.0.0:8443");
        assert_eq!(args.metrics_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(args.admission_live, LiveMode::Warn);
        assert_eq!(args.admission_live_budget, Duration::from_secs(2));
        assert!(
            Cli::try_parse_from(["vaultgate", "run", "--webhook-only", "--controller-only"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["vaultgate", "run", "--tls-cert", "x"]).is_err());
    }
}
