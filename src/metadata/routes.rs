//! The two HTTP surfaces: the pods' endpoints (spec/ace.md "Metadata Service", with the exact
//! content types the ACE validator compares byte for byte) and the registration API of the unix
//! socket (protocol in the module docs of [`super`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use serde::Deserialize;

use super::MetadataError;
use super::identity::Identity;
use super::registry::{AppEntry, PodEntry, Registration, Registry};
use crate::schema::PodUuid;

/// MD4: JSON bodies.
pub const JSON: &str = "application/json";
/// `uuid`, `image/id`, `sign` and `verify` (spec/ace.md; compared byte-exactly by the validator).
pub const TEXT: &str = "text/plain; charset=us-ascii";

/// The service's state, shared by every connection.
pub struct Service {
    pub registry: Registry,
    pub identity: Identity,
}

/// The pods' router: every endpoint under `/acMetadata/v1` (callers known by source address)
/// and under `/<token>/acMetadata/v1` (callers known by token). Serve it with connect info
/// (`into_make_service_with_connect_info::<SocketAddr>`), or only token paths work.
pub fn public_router(service: Arc<Service>) -> Router {
    let endpoints: [(&str, MethodRouter<Arc<Service>>); 8] = [
        ("/pod/annotations", get(pod_annotations)),
        ("/pod/manifest", get(pod_manifest)),
        ("/pod/uuid", get(pod_uuid)),
        ("/pod/hmac/sign", post(sign)),
        ("/pod/hmac/verify", post(verify)),
        ("/apps/{app}/annotations", get(app_annotations)),
        ("/apps/{app}/image/manifest", get(image_manifest)),
        ("/apps/{app}/image/id", get(image_id)),
    ];
    let mut router = Router::new();
    for (path, method) in endpoints {
        router = router
            .route(&format!("/acMetadata/v1{path}"), method.clone())
            .route(&format!("/{{token}}/acMetadata/v1{path}"), method);
    }
    router
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such metadata endpoint") })
        .with_state(service)
}

/// The registration router of the unix socket.
pub fn registration_router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/v1/pods", get(list))
        .route("/v1/pods/{uuid}", put(register).delete(unregister))
        // Image manifests are small, but a pod may have many apps.
        .layer(DefaultBodyLimit::max(16 << 20))
        .with_state(service)
}

fn reply(content_type: &'static str, status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An error answer: one line of text.
fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    let mut line = message.into();
    line.push('\n');
    (status, line).into_response()
}

/// The pod a request is about, found by its token or its source address.
pub struct Caller {
    pod: Arc<PodEntry>,
    app: Option<String>,
}

impl Caller {
    /// One answer of the app named in the path, or 404.
    fn app_answer(&self, content_type: &'static str, pick: fn(&AppEntry) -> &Bytes) -> Response {
        let name = self.app.as_deref().unwrap_or_default();
        match self.pod.apps.get(name) {
            Some(app) => reply(content_type, StatusCode::OK, pick(app).clone()),
            None => problem(
                StatusCode::NOT_FOUND,
                format!("the pod has no app {name:?}"),
            ),
        }
    }
}

impl FromRequestParts<Arc<Service>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &Arc<Service>,
    ) -> Result<Self, Response> {
        let params = RawPathParams::from_request_parts(parts, service)
            .await
            .map_err(IntoResponse::into_response)?;
        let (mut token, mut app) = (None, None);
        for (key, value) in &params {
            match key {
                "token" => token = Some(value),
                "app" => app = Some(value.to_owned()),
                _ => {}
            }
        }
        let pod = match token {
            Some(t) => service
                .registry
                .by_token(t)
                .ok_or_else(|| problem(StatusCode::NOT_FOUND, "unknown metadata token"))?,
            None => {
                let source = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip());
                source
                    .and_then(|a| service.registry.by_address(a))
                    .ok_or_else(|| {
                        let who =
                            source.map_or_else(|| "this caller".to_owned(), |a| a.to_string());
                        problem(
                            StatusCode::FORBIDDEN,
                            format!("{who} is not a registered pod address"),
                        )
                    })?
            }
        };
        Ok(Caller { pod, app })
    }
}

async fn pod_annotations(c: Caller) -> Response {
    reply(JSON, StatusCode::OK, c.pod.annotations.clone())
}

async fn pod_manifest(c: Caller) -> Response {
    reply(JSON, StatusCode::OK, c.pod.manifest.clone())
}

async fn pod_uuid(c: Caller) -> Response {
    reply(TEXT, StatusCode::OK, c.pod.uuid_text.clone())
}

async fn app_annotations(c: Caller) -> Response {
    c.app_answer(JSON, |a| &a.annotations)
}

async fn image_manifest(c: Caller) -> Response {
    c.app_answer(JSON, |a| &a.image_manifest)
}

async fn image_id(c: Caller) -> Response {
    c.app_answer(TEXT, |a| &a.image_id)
}

#[derive(Deserialize)]
struct SignForm {
    content: String,
}

async fn sign(
    c: Caller,
    State(service): State<Arc<Service>>,
    axum::Form(form): axum::Form<SignForm>,
) -> Response {
    let signature = service.identity.sign(&c.pod.uuid, form.content.as_bytes());
    reply(TEXT, StatusCode::OK, Bytes::from(signature))
}

#[derive(Deserialize)]
struct VerifyForm {
    content: String,
    uuid: String,
    signature: String,
}

/// Open to every caller: it says only whether the signature is valid (200) or not (403).
async fn verify(
    State(service): State<Arc<Service>>,
    axum::Form(form): axum::Form<VerifyForm>,
) -> Response {
    let Ok(uuid) = PodUuid::parse(&form.uuid) else {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("uuid {:?} is not a UUID", form.uuid),
        );
    };
    let status = if service
        .identity
        .verify(&uuid, form.content.as_bytes(), &form.signature)
    {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    reply(TEXT, status, Bytes::new())
}

async fn register(
    State(service): State<Arc<Service>>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> Response {
    let reg: Registration = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("registration of pod {uuid}: {e}"),
            );
        }
    };
    let apps = reg.apps.len();
    // Validation and an fsync: off the async workers.
    let task =
        tokio::task::spawn_blocking(move || service.registry.register(&uuid, reg).map(|()| uuid));
    match task.await {
        Ok(Ok(uuid)) => {
            eprintln!("appc-metadata: registered pod {uuid} ({apps} apps)");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(e)) => error_response(&e),
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("registration failed: {e}"),
        ),
    }
}

async fn unregister(State(service): State<Arc<Service>>, Path(uuid): Path<String>) -> Response {
    let task =
        tokio::task::spawn_blocking(move || service.registry.unregister(&uuid).map(|()| uuid));
    match task.await {
        Ok(Ok(uuid)) => {
            eprintln!("appc-metadata: unregistered pod {uuid}");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(e)) => error_response(&e),
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unregistration failed: {e}"),
        ),
    }
}

fn error_response(e: &MetadataError) -> Response {
    let status = match e {
        MetadataError::Invalid { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    eprintln!("appc-metadata: {e}");
    problem(status, e.to_string())
}

async fn list(State(service): State<Arc<Service>>) -> Response {
    let pods: Vec<serde_json::Value> = service
        .registry
        .list()
        .iter()
        .map(|e| {
            serde_json::json!({
                "uuid": e.uuid.to_string(),
                "apps": e.registration.apps.keys().collect::<Vec<_>>(),
                "addresses": e.registration.addresses,
                "token": e.registration.token.is_some(),
                "init": e.registration.init,
            })
        })
        .collect();
    let body = serde_json::to_vec(&pods).unwrap_or_default();
    reply(JSON, StatusCode::OK, Bytes::from(body))
}
