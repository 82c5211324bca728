//! `vaultgate run`: wiring of the webhook, the reconciler and the metrics server.

use crate::cli::RunArgs;

pub fn main(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("`vaultgate run` is not available in this build yet")
}
