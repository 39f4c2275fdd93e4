use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The container monitor and exec helper: single-threaded, before any runtime starts.
    if let Some(code) = backend::runtime::shim::dispatch() {
        std::process::exit(code);
    }
    let cli = backend::cli::Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // One line with the cause chain; never a backtrace, whatever RUST_BACKTRACE says in
        // the user's environment (the message names the flag or field).
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: backend::cli::Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(backend::cli::run(cli))
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
