use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = vaultgate::cli::Cli::parse();
    vaultgate::cli::main(cli)
}
