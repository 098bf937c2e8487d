//! The `vmbgp-bench` binary: parses the command line, sets up logging, runs the command and maps
//! the outcome to the one exit-code table. Everything else lives in the library.

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vmbgp_bench::cli::Cli;
use vmbgp_bench::commands::execute;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = cli.log_level;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_filter())),
        )
        .with_writer(std::io::stderr)
        .with_ansi(vmbgp_bench::log_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return vmbgp_bench::exit::ExitCode::Internal.into();
        }
    };
    let mut stdout = std::io::stdout();
    match runtime.block_on(execute(cli, &mut stdout)) {
        Ok(code) => code.into(),
        Err(e) => {
            let mut message = format!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!("\n  caused by: {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            e.exit_code().into()
        }
    }
}
