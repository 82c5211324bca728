//! Command line: every flag can also be set by an environment variable named `VAULTGATE_` plus
//! the flag in upper snake case (e.g. `--admission-live` ↔ `VAULTGATE_ADMISSION_LIVE`). This
//! module parses and dispatches; each command's options belong to the command (`run::Config`,
//! `check::Config`), and nothing else imports from here.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

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
    Run(Box<crate::run::Config>),
    /// Print the CustomResourceDefinitions (or write them into a directory).
    Crds(CrdsArgs),
    /// Write a CA and a serving certificate for the webhook into a directory (for development).
    Certs(CertsArgs),
    /// Apply the admission defaults and rules to manifests offline.
    Check(crate::check::Config),
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
    #[arg(long, env = "VAULTGATE_VALIDITY", value_parser = crate::api::duration::parse_flag, default_value = "8760h")]
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
        assert_eq!(args.admission_live, crate::admission::LiveMode::Warn);
        assert_eq!(args.admission_live_budget, Duration::from_secs(2));
        assert!(
            Cli::try_parse_from(["vaultgate", "run", "--webhook-only", "--controller-only"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["vaultgate", "run", "--tls-cert", "x"]).is_err());
    }
}
