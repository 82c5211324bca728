use clap::Parser;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = vaultgate::cli::Cli::parse();
    vaultgate::cli::main(cli)
}
