//! Carnet: the FHIR R4 server behind a patient-controlled national health record.

pub mod auth;
pub mod config;
pub mod docs;
pub mod fhir;
pub mod http;
pub mod store;

use actix_web::{web, App, HttpServer};
use config::Config;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] store::OpenError),
    #[error("{0}")]
    Listen(String),
    #[error("fhir-profiles: {0}")]
    Profiles(String),
}

/// Resolves `listen` and refuses non-loopback addresses: until authentication is in place the
/// server must not be reachable from other machines.
pub fn listen_addresses(listen: &str) -> Result<Vec<SocketAddr>, StartError> {
    let addresses: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| StartError::Listen(format!("listen = {listen:?}: {e}")))?
        .collect();
    if addresses.is_empty() || addresses.iter().any(|a| !a.ip().is_loopback()) {
        return Err(StartError::Listen(format!(
            "listen = {listen:?}: only loopback addresses are allowed until authentication is enabled"
        )));
    }
    Ok(addresses)
}

/// Applies migrations and exits.
pub fn migrate(config: &Config) -> Result<(), StartError> {
    store::Target::parse(&config.database_url)?.prepare()?;
    Ok(())
}

/// Runs the server until SIGTERM/SIGINT (graceful: in-flight requests finish).
pub async fn serve(config: Config) -> Result<(), StartError> {
    let addresses = listen_addresses(&config.listen)?;
    fhir::profiles::load().map_err(StartError::Profiles)?;
    let store = Arc::new(store::Store::open(&config.database_url)?);
    let started = fhir::resource::instant(fhir::resource::now_micros());
    let state = web::Data::new(http::AppState {
        capability_statement: fhir::capability::capability_statement(
            config.base(),
            config.update_create,
            &started,
        ),
        config,
        store,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(http::panics::catch_panics))
            .wrap(actix_web::middleware::Logger::new("%r %s %Dms").log_target("carnet::access"))
            .configure(http::routes)
    })
    .bind(&addresses[..])
    .map_err(|e| StartError::Listen(e.to_string()))?;
    for address in &addresses {
        tracing::info!(%address, "listening");
    }
    server
        .run()
        .await
        .map_err(|e| StartError::Listen(e.to_string()))
}
