//! Carnet: the FHIR R4 server behind a patient-controlled national health record.

pub mod auth;
pub mod config;
pub mod consent;
pub mod docs;
pub mod fhir;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod http;
pub mod records;
pub mod search;
pub mod store;

use actix_service::{IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::{web, App};
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
    #[error(transparent)]
    Key(#[from] auth::local_issuer::KeyError),
    #[error("{0}")]
    Token(String),
    #[error(transparent)]
    Database(#[from] store::StoreError),
}

/// Resolves `listen` to the addresses to bind. Any address is allowed: every path to the data
/// goes through the consent engine, so the server may face other machines.
pub fn listen_addresses(listen: &str) -> Result<Vec<SocketAddr>, StartError> {
    let addresses: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| StartError::Listen(format!("listen = {listen:?}: {e}")))?
        .collect();
    if addresses.is_empty() {
        return Err(StartError::Listen(format!(
            "listen = {listen:?}: names no address"
        )));
    }
    Ok(addresses)
}

/// The built-in issuer, when the configuration turns it on.
fn local_issuer(config: &Config) -> Result<Option<auth::local_issuer::LocalIssuer>, StartError> {
    if !config.local_issuer_enabled() {
        return Ok(None);
    }
    let issuer = auth::local_issuer::LocalIssuer::open(
        config.local_issuer_url(),
        &config.local_issuer_key_path(),
    )?;
    Ok(Some(issuer))
}

/// Mints an access token from the local issuer (`carnet token`), valid `expires_in` seconds.
pub fn mint_token(
    config: &Config,
    claims: &auth::principal::Claims,
    expires_in: i64,
) -> Result<String, StartError> {
    let issuer = local_issuer(config)?.ok_or_else(|| {
        StartError::Token(
            "the local issuer is off in this configuration (auth.local_issuer = false)".into(),
        )
    })?;
    if expires_in <= 0 {
        return Err(StartError::Token("--expires-in must be positive".into()));
    }
    if expires_in > config.max_token_lifetime() {
        return Err(StartError::Token(format!(
            "--expires-in {expires_in} is longer than auth.max_token_lifetime_seconds ({}): \
             the server would refuse the token",
            config.max_token_lifetime()
        )));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    issuer
        .mint(claims, config.audience(), now, expires_in)
        .map_err(StartError::Token)
}

/// Rebuilds the search index tables from the stored resources (`carnet reindex`); returns how
/// many resources were indexed.
pub fn reindex(config: &Config) -> Result<u64, StartError> {
    let store = store::Store::open(&config.database_url, config.postgres.partitions)?;
    let base_url = config.base().to_owned();
    let count = store.reindex(|version| {
        let document = fhir::json::parse_lossless(&String::from_utf8_lossy(&version.body))
            .map_err(|e| store::StoreError::Corrupt(e.to_string()))?;
        let index = search::index::rows(&version.resource_type, &document, &base_url);
        // A Consent whose directives can no longer be read keeps the ones stored (dropping a
        // block would open what it closed); the rebuild goes on and says so.
        let access = match consent::facts::access_rows(
            &version.resource_type,
            &version.id,
            &document,
            &base_url,
        ) {
            Ok(access) => Some(access),
            Err(why) => {
                tracing::warn!(
                    resource = %format!("{}/{}", version.resource_type, version.id),
                    %why,
                    "reindex: directives kept as stored"
                );
                None
            }
        };
        Ok((index, access))
    })?;
    store.analyze()?;
    Ok(count)
}

/// Applies migrations and exits.
pub fn migrate(config: &Config) -> Result<(), StartError> {
    store::Target::parse(&config.database_url)?.prepare(config.postgres.partitions)?;
    Ok(())
}

/// Everything the application shares, built from `config` as `serve` does before it listens:
/// profiles loaded, database opened and migrated, issuers and paging secret ready. Public so
/// that tests can drive [`app`] in-process against a real database.
pub fn build_state(config: Config) -> Result<web::Data<http::AppState>, StartError> {
    fhir::profiles::load().map_err(StartError::Profiles)?;
    let store = Arc::new(store::Store::open(
        &config.database_url,
        config.postgres.partitions,
    )?);
    let local_issuer = local_issuer(&config)?.map(Arc::new);
    let paging_secret = store.secret("paging")?;
    let external: Vec<String> = config.auth.issuers.iter().map(|i| i.url.clone()).collect();
    let issuers = auth::issuers::TrustedIssuers::new(
        local_issuer.as_deref(),
        &external,
        std::time::Duration::from_secs(config.auth.jwks_min_refresh_seconds),
    );
    let authenticator = Arc::new(auth::Authenticator::new(
        issuers,
        config.audience().to_owned(),
        config.clients.clone(),
        config.max_token_lifetime(),
    ));
    let backend_services = local_issuer.clone().map(|issuer| {
        Arc::new(auth::backend_services::BackendServices::new(
            issuer, &config,
        ))
    });
    let started = fhir::resource::instant(fhir::resource::now_micros());
    Ok(web::Data::new(http::AppState {
        capability_statement: fhir::capability::capability_statement(
            config.base(),
            config.update_create,
            &started,
            !config.cors.allowed_origins.is_empty(),
        ),
        records: records::Door::new(
            store,
            consent::Engine::new(
                config.consent.profession_matrix.clone(),
                config.consent.professional_patients_per_hour,
            ),
            config.base(),
            config.update_create,
        ),
        config,
        authenticator,
        local_issuer,
        backend_services,
        paging_secret,
    }))
}

/// Runs the server until SIGTERM/SIGINT (graceful: in-flight requests finish).
pub async fn serve(config: Config) -> Result<(), StartError> {
    let addresses = listen_addresses(&config.listen)?;
    let state = build_state(config)?;
    let header_timeout = std::time::Duration::from_secs(state.config.limits.header_timeout_seconds);
    // actix-web's HttpServer, assembled by hand so that each connection is wrapped: the answers
    // the HTTP/1 codec writes itself get an OperationOutcome too (see http::connection).
    let mut server = actix_server::Server::build();
    for &address in &addresses {
        let state = state.clone();
        server = server
            .bind("carnet", address, move || {
                let app = app(state.clone())
                    .into_factory()
                    .map_err(|error| error.error_response());
                let http = actix_http::HttpService::build()
                    .client_request_timeout(header_timeout)
                    .client_disconnect_timeout(std::time::Duration::from_secs(1))
                    .local_addr(address)
                    .h1(actix_service::map_config(app, |_| AppConfig::default()));
                actix_service::fn_service(|io: actix_web::rt::net::TcpStream| {
                    let peer = io.peer_addr().ok();
                    std::future::ready(Ok((http::connection::OutcomeOnBareErrors::new(io), peer)))
                })
                .and_then(http)
            })
            .map_err(|e| StartError::Listen(e.to_string()))?;
        tracing::info!(%address, "listening");
    }
    server
        .run()
        .await
        .map_err(|e| StartError::Listen(e.to_string()))
}

/// The application: middleware from the outside in — access log, CORS, edges, panics — then
/// the routes. `serve` puts it behind each connection; tests may call it in-process.
pub fn app(
    state: web::Data<http::AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .wrap(actix_web::middleware::from_fn(http::panics::catch_panics))
        .wrap(actix_web::middleware::from_fn(http::edges::edges))
        // Outside the edges so that every answer, errors included, carries the CORS headers.
        .wrap(actix_web::middleware::from_fn(http::cors::cors))
        // The path only: query strings carry identifiers (an INS is personal data).
        .wrap(
            actix_web::middleware::Logger::new("%{method}xi %U %s %Dms")
                .custom_request_replace("method", |req| req.method().to_string())
                .log_target("carnet::access"),
        )
        .configure(http::routes)
}
