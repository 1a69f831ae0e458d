//! The `carnet` command: serve, migrate, token.

use carnet::auth::principal::Claims;
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
    /// Rebuilds the search index tables from the stored resources.
    Reindex {
        /// Configuration file (default: ./carnet.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Mints an access token from the built-in local issuer; prints the JWT alone on stdout.
    Token {
        /// Configuration file (default: ./carnet.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        claims: Box<TokenClaims>,
        /// Lifetime of the token in seconds.
        #[arg(long, default_value_t = 3600)]
        expires_in: i64,
    },
}

/// One option per claim of the public contract.
#[derive(clap::Args)]
struct TokenClaims {
    /// Space-separated SMART scopes, e.g. "system/*.cruds".
    #[arg(long)]
    scope: String,
    /// The OAuth client (must be registered in [[clients]]).
    #[arg(long)]
    client_id: Option<String>,
    /// Patient/{id}, RelatedPerson/{id} or Practitioner/{id}.
    #[arg(long)]
    fhir_user: Option<String>,
    /// Launch context: the patient an app acts for.
    #[arg(long)]
    patient: Option<String>,
    /// ANS TRE_G15 profession code (10 médecin, 21 pharmacien…).
    #[arg(long)]
    profession: Option<String>,
    /// Organization/{id} the professional acts for.
    #[arg(long)]
    organization: Option<String>,
    /// TREAT (default) or BTG.
    #[arg(long)]
    purpose_of_use: Option<String>,
    /// Required with --purpose-of-use BTG.
    #[arg(long)]
    break_glass_reason: Option<String>,
    /// Subject of the token.
    #[arg(long)]
    sub: Option<String>,
}

impl From<TokenClaims> for Claims {
    fn from(c: TokenClaims) -> Claims {
        Claims {
            sub: c.sub,
            client_id: c.client_id,
            scope: c.scope,
            fhir_user: c.fhir_user,
            patient: c.patient,
            profession: c.profession,
            organization: c.organization,
            purpose_of_use: c.purpose_of_use,
            break_glass_reason: c.break_glass_reason,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CARNET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let (Command::Serve { config }
    | Command::Migrate { config }
    | Command::Reindex { config }
    | Command::Token { config, .. }) = &cli.command;
    let config = match Config::load(config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let result = match cli.command {
        Command::Serve { .. } => actix_web::rt::System::new().block_on(carnet::serve(config)),
        Command::Migrate { .. } => carnet::migrate(&config),
        Command::Reindex { .. } => carnet::reindex(&config).map(|count| {
            eprintln!("carnet: {count} resources reindexed");
        }),
        Command::Token {
            claims, expires_in, ..
        } => carnet::mint_token(&config, &(*claims).into(), expires_in).map(|token| {
            println!("{token}");
        }),
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
