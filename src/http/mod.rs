//! The HTTP surface: routes, content negotiation, headers and errors.

mod body;
pub mod error;
pub mod interactions;
pub mod negotiate;
pub mod panics;
mod respond;

use crate::config::Config;
use crate::fhir::writes::WriteContext;
use crate::store::Store;
use actix_web::web;
use std::sync::Arc;

/// What every request handler shares.
pub struct AppState {
    pub config: Config,
    pub store: Arc<Store>,
    /// Built once at start: it describes the running server.
    pub capability_statement: serde_json::Value,
}

impl AppState {
    /// The write interactions over this server's store and settings.
    pub fn writes(&self) -> WriteContext<'_> {
        WriteContext {
            store: &self.store,
            base_url: self.config.base(),
            update_create: self.config.update_create,
        }
    }
}

/// Registers the FHIR routes under `/fhir`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use interactions::*;
    cfg.service(
        web::scope("/fhir")
            .service(
                web::resource("/metadata")
                    .route(web::get().to(metadata))
                    .default_service(web::to(method_not_allowed("GET"))),
            )
            .service(
                web::resource("/_history")
                    .route(web::get().to(history_system))
                    .default_service(web::to(method_not_allowed("GET"))),
            )
            .service(
                web::resource("/{type}")
                    .route(web::post().to(create))
                    .route(web::put().to(conditional_update))
                    .route(web::delete().to(conditional_delete))
                    .route(web::patch().to(conditional_patch))
                    .default_service(web::to(method_not_allowed(TYPE_METHODS))),
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
