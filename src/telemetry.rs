//! Logging: JSON lines (default) or text, filtered by `--log-level` (EnvFilter syntax).
//!
//! Nothing logged anywhere in vaultgate carries a secret value, token or password: log fields
//! name objects, Vault paths and statuses only.

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// Installs the global subscriber. Safe to call twice (the second call keeps the first).
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("--log-level {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Already installed (tests, the sandbox): keep the existing one.
    let _ = result;
    Ok(())
}
