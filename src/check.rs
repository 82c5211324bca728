//! `vaultgate check -f FILE`: the admission defaults and rules, offline.

use std::process::ExitCode;

use crate::cli::CheckArgs;

pub fn main(_args: CheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`vaultgate check` is not available in this build yet")
}
