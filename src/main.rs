use clap::Parser;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Both of rustls' providers are linked in (through kube and reqwest): name the one to use.
    vaultgate::run::install_crypto();
    let cli = vaultgate::cli::Cli::parse();
    vaultgate::cli::main(cli)
}
