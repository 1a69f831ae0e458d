//! The `carnet` command: serve, migrate.

use carnet::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "carnet",
    version,
    about = "FHIR R4 server for a patient-controlled health record"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server; applies pending migrations first.
    Serve {
        /// Configuration file (default: ./carnet.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Applies pending migrations and exits.
    Migrate {
        /// Configuration file (default: ./carnet.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CARNET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let (Command::Serve { config } | Command::Migrate { config }) = &cli.command;
    let config = match Config::load(config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let result = match cli.command {
        Command::Serve { .. } => actix_web::rt::System::new().block_on(carnet::serve(config)),
        Command::Migrate { .. } => carnet::migrate(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    tracing::error!("{e}");
    eprintln!("carnet: {e}");
    ExitCode::FAILURE
}
