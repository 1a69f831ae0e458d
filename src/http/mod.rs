//! The HTTP surface: routes, content negotiation, headers and errors.

mod body;
pub mod connection;
pub mod cors;
pub mod discovery;
pub mod edges;
pub mod error;
pub mod guard;
pub mod interactions;
pub mod negotiate;
pub mod panics;
mod respond;
pub mod token;

use crate::auth::local_issuer::LocalIssuer;
use crate::auth::{Access, Authenticator};
use crate::config::Config;
use crate::records::{Door, Records};
use actix_web::web;
use std::sync::Arc;

/// What every request handler shares.
pub struct AppState {
    pub config: Config,
    /// The stored data, reached only through a handle bound to the caller
    /// ([`AppState::records`]).
    pub records: Door,
    /// Built once at start: it describes the running server.
    pub capability_statement: serde_json::Value,
    /// Turns bearer tokens into callers.
    pub authenticator: Arc<Authenticator>,
    /// The built-in issuer, when on (its discovery document and keys are served).
    pub local_issuer: Option<Arc<LocalIssuer>>,
    /// The built-in issuer's token endpoint (SMART Backend Services), when it is on.
    pub backend_services: Option<Arc<crate::auth::backend_services::BackendServices>>,
    /// Authenticates paging cursors (kept in the database: links survive restarts).
    pub paging_secret: Vec<u8>,
}

impl AppState {
    /// The data `access` may reach, for one request.
    pub fn records(&self, access: &Access) -> Records {
        self.records.open(access)
    }
}

/// Registers the FHIR routes under `/fhir`: the public documents first, then everything else
/// behind the authentication gate.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use interactions::*;
    let public = [
        ("/fhir/metadata", web::get().to(metadata), "GET"),
        (
            "/fhir/.well-known/smart-configuration",
            web::get().to(discovery::smart_configuration),
            "GET",
        ),
        (
            "/fhir/local-issuer/.well-known/openid-configuration",
            web::get().to(discovery::local_issuer_discovery),
            "GET",
        ),
        (
            "/fhir/local-issuer/jwks",
            web::get().to(discovery::local_issuer_jwks),
            "GET",
        ),
        (
            "/fhir/local-issuer/token",
            web::post().to(token::token),
            "POST",
        ),
    ];
    for (path, route, allowed) in public {
        cfg.service(
            web::resource(path)
                .route(route)
                .default_service(web::to(method_not_allowed(allowed))),
        );
    }
    cfg.service(
        web::scope("/fhir")
            .wrap(actix_web::middleware::from_fn(guard::require_token))
            .service(
                web::resource(["", "/"])
                    .route(web::get().to(search_system))
                    .default_service(web::to(method_not_allowed("GET"))),
            )
            .service(
                web::resource("/_search")
                    .route(web::post().to(search_system_post))
                    .default_service(web::to(method_not_allowed("POST"))),
            )
            .service(
                web::resource("/_history")
                    .route(web::get().to(history_system))
                    .default_service(web::to(method_not_allowed("GET"))),
            )
            .service(
                web::resource("/{type}")
                    .route(web::get().to(search_type))
                    .route(web::post().to(create))
                    .route(web::put().to(conditional_update))
                    .route(web::delete().to(conditional_delete))
                    .route(web::patch().to(conditional_patch))
                    .default_service(web::to(method_not_allowed(TYPE_METHODS))),
            )
            .service(
                web::resource("/{type}/_search")
                    .route(web::post().to(search_type_post))
                    .default_service(web::to(method_not_allowed("POST"))),
            )
            .service(
                web::resource("/{type}/_history")
                    .route(web::get().to(history_type))
                    .default_service(web::to(method_not_allowed("GET"))),
            )
            .service(
                web::resource("/{type}/{id}")
                    .route(web::get().to(read))
                    .route(web::put().to(update))
                    .route(web::delete().to(delete))
                    .route(web::patch().to(patch))
                    .default_service(web::to(method_not_allowed(INSTANCE_METHODS))),
            )
            .service(
                web::resource("/{type}/{id}/_history")
                    .route(web::get().to(history_instance))
                    .default_service(web::to(method_not_allowed("GET"))),
            )
            // Before the compartment search, which would take `$everything` for a type.
            .service(
                web::resource("/Patient/{id}/$everything")
                    .route(web::get().to(everything))
                    .default_service(web::to(method_not_allowed("GET"))),
            )
            .service(
                web::resource("/Patient/{id}/{compartment_type}")
                    .route(web::get().to(search_compartment))
                    .default_service(web::to(method_not_allowed("GET"))),
            )
            .service(
                web::resource("/{type}/{id}/_history/{vid}")
                    .route(web::get().to(vread))
                    .default_service(web::to(method_not_allowed("GET"))),
            ),
    )
    .route("/docs", web::get().to(crate::docs::page))
    .route("/docs/openapi.json", web::get().to(crate::docs::openapi))
    .default_service(web::to(unknown));
}
