//! The web UI at `/ui`: server-rendered pages (maud) over the same store
//! reads and the same handlers as the API, usable without JavaScript
//! (filters are GET forms, actions POST forms); `ui.js` only follows the
//! watch feed to update rows in place.
//!
//! Sign-in exchanges an API key (or a hub token) for a signed, expiring,
//! HttpOnly, SameSite=Strict cookie ([`session`]); every POST of a
//! signed-in page carries the session's CSRF token. Only admin keys act;
//! agent keys and hub tokens see the same pages without the forms, and
//! their POSTs are refused (403). Spoke actions go through
//! [`crate::api::federation::transition`], the REST routes' own path, so
//! the transition, audit row and event are the same.
//!
//! Every answer carries a Content-Security-Policy without inline script
//! or style (the script and the style sheet are files under
//! `/ui/static/`) and forbids framing.

pub mod pages;
pub mod session;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::Utc;
use serde::Deserialize;

use crate::api::auth::{Caller, Role};
use crate::api::error::ApiError;
use crate::auth::{fingerprint_of_digest, looks_like_hub_token, token_digest, KeyVerdict};
use crate::catalog::ProjectStatus;
use crate::spoke::{is_spoke_id, SpokeAction, TransitionRequest};
use crate::state::AppState;
use crate::store::credentials;
use session::{Claims, Principal, Sessions};

const SCRIPT: &str = include_str!("static/ui.js");
const STYLE: &str = include_str!("static/ui.css");

/// The UI's handlers' state: the service's, and the session keys.
#[derive(Clone)]
pub struct Ui {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
}

impl FromRef<Ui> for AppState {
    fn from_ref(ui: &Ui) -> AppState {
        ui.app.clone()
    }
}

/// The `/ui` routes (none when `ui.enabled` is false), with their own
/// security headers; merged into the API's router by `app`.
pub fn router(state: &AppState) -> Router<AppState> {
    let settings = &state.settings;
    if !settings.ui.enabled {
        return Router::new();
    }
    let ui = Ui {
        app: state.clone(),
        sessions: Sessions::new(&settings.ui, &settings.auth),
    };
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/hubs") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/hubs") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/hubs", get(hubs))
        .route("/ui/hubs/{slug}", get(hub))
        .route("/ui/spokes", get(spokes))
        .route("/ui/spokes/{id}/{action}", post(spoke_action))
        .route("/ui/federation", get(federation))
        .route("/ui/events", get(events))
        .route("/ui/static/ui.js", get(script))
        .route("/ui/static/ui.css", get(style))
        .layer(from_fn(security_headers))
        .with_state(ui)
}

/// The policy every UI answer carries: scripts, styles and connections
/// only from this origin, no inline script, no framing, forms post here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    res
}

/// A signed-in visitor: the session's claims, re-checked against the keys
/// configured now.
pub struct Visitor {
    pub claims: Claims,
    /// The session's CSRF token, for the page's forms.
    pub csrf: String,
}

impl Visitor {
    pub fn is_admin(&self) -> bool {
        self.claims.role >= Role::Admin
    }

    /// The API's caller for this visitor, as the REST routes would see it
    /// (a hub session's is read-only: it never reaches a handler that acts).
    fn caller(&self) -> Caller {
        Caller {
            role: self.claims.role,
            fingerprint: self.claims.fingerprint.clone(),
            hub: None,
            spoke: None,
        }
    }

    fn who(&self) -> String {
        match &self.claims.principal {
            Principal::Hub { slug } => format!("hub {slug} ({})", self.claims.fingerprint),
            Principal::Key { .. } => format!(
                "{} key {}",
                self.claims.role.as_str(),
                self.claims.fingerprint
            ),
        }
    }
}

/// Pages without a valid session send the browser to the sign-in page.
pub struct SignIn;

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        Redirect::to("/ui/login").into_response()
    }
}

impl FromRequestParts<Ui> for Visitor {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Self, SignIn> {
        let value = session::cookie_value(&parts.headers).ok_or(SignIn)?;
        let claims = ui.sessions.decode(value, Utc::now()).map_err(|why| {
            tracing::debug!(?why, "web UI session cookie refused");
            SignIn
        })?;
        // Still a key of this configuration, or a valid hub credential?
        let still = match &claims.principal {
            Principal::Key { reference } => ui.sessions.role_of(reference) == Some(claims.role),
            Principal::Hub { slug } => {
                let now = Utc::now();
                credentials::list(&ui.app.db, slug)
                    .await
                    .unwrap_or_default()
                    .iter()
                    .any(|c| {
                        c.fingerprint == claims.fingerprint
                            && c.revoked_at.is_none()
                            && c.expires_at > now
                    })
            }
        };
        if !still {
            tracing::info!(key = %claims.fingerprint, "web UI session of a key no longer configured or valid: signed out");
            return Err(SignIn);
        }
        let csrf = ui.sessions.csrf_token(&claims);
        Ok(Visitor { claims, csrf })
    }
}

/// A refusal or failure, as a page.
pub struct UiError(pub ApiError);

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError(e)
    }
}

impl From<crate::sync::SyncError> for UiError {
    fn from(e: crate::sync::SyncError) -> Self {
        UiError(e.into())
    }
}

impl From<sqlx::Error> for UiError {
    fn from(e: sqlx::Error) -> Self {
        UiError(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self.0 {
            tracing::error!(
                error = format!("{e:#}"),
                "internal error answering a web UI request"
            );
        }
        let problem = self.0.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            pages::html(pages::error_page(&problem.title, &problem.detail)),
        )
            .into_response()
    }
}

type UiResult = Result<Response, UiError>;

/// A POST from a page of another origin is refused, whatever it carries.
fn same_origin(headers: &HeaderMap) -> Result<(), UiError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or_default();
    if origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(UiError(ApiError::Forbidden(
            "this form was posted from another site".into(),
        )))
    }
}

/// The checks of every signed-in POST: same origin, the session's CSRF
/// token.
fn check_post(ui: &Ui, v: &Visitor, headers: &HeaderMap, csrf: &str) -> Result<(), UiError> {
    same_origin(headers)?;
    if !ui.sessions.csrf_ok(&v.claims, csrf) {
        tracing::warn!(key = %v.claims.fingerprint, "web UI form refused: missing or wrong CSRF token");
        return Err(UiError(ApiError::Forbidden(
            "the form's CSRF token is missing or wrong; reload the page and try again".into(),
        )));
    }
    Ok(())
}

async fn login_page() -> Response {
    pages::html(pages::login(None)).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    api_key: String,
}

async fn login(State(ui): State<Ui>, headers: HeaderMap, Form(form): Form<LoginForm>) -> UiResult {
    same_origin(&headers)?;
    let presented = form.api_key.trim().as_bytes();
    let refused = |why: &str| {
        if let Some(suppressed) = ui.app.keys.may_log_refusal() {
            tracing::warn!(key = %fingerprint_of_digest(&token_digest(presented)), suppressed, "web UI sign-in refused: {why}");
        }
        Ok((
            StatusCode::UNAUTHORIZED,
            pages::html(pages::login(Some(
                "That key is not valid here (unknown, disabled, revoked or expired).",
            ))),
        )
            .into_response())
    };
    let (verdict, fingerprint) = ui.app.keys.check(presented);
    let claims = match verdict {
        KeyVerdict::Valid(role) => {
            let reference = ui.sessions.reference(presented);
            ui.sessions
                .claims(Principal::Key { reference }, role, fingerprint)
        }
        KeyVerdict::SharedAgentKeyDisabled => {
            return refused("a shared agent key while they are turned off")
        }
        KeyVerdict::Unknown if looks_like_hub_token(presented) => {
            let found = credentials::find(&ui.app.db, &token_digest(presented)).await?;
            // A hub's token only: a spoke's (or any other kind) has no
            // hub to show and is refused like an unknown one.
            let hub = found.filter(|c| {
                c.kind() == Some(credentials::CredentialKind::Hub) && c.is_valid(Utc::now())
            });
            match hub {
                Some(c) => {
                    ui.sessions
                        .claims(Principal::Hub { slug: c.slug }, Role::Hub, c.fingerprint)
                }
                None => return refused("a hub token unknown, revoked or expired"),
            }
        }
        KeyVerdict::Unknown => return refused("an unknown key"),
    };
    tracing::info!(key = %claims.fingerprint, role = claims.role.as_str(), "web UI sign-in");
    Ok((
        [(header::SET_COOKIE, ui.sessions.set_cookie(&claims))],
        Redirect::to("/ui/hubs"),
    )
        .into_response())
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(ui): State<Ui>,
    v: Visitor,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> UiResult {
    check_post(&ui, &v, &headers, &form.csrf)?;
    tracing::info!(key = %v.claims.fingerprint, "web UI sign-out");
    Ok((
        [(header::SET_COOKIE, ui.sessions.clear_cookie())],
        Redirect::to("/ui/login"),
    )
        .into_response())
}

/// The hubs page's filters (a GET form).
#[derive(Debug, Default, Deserialize)]
pub struct HubFilter {
    /// Slug or name contains (case-insensitive).
    #[serde(default)]
    pub q: String,
    /// `online`, `degraded`, `offline`, or empty for all.
    #[serde(default)]
    pub status: String,
    /// Carries this tag (empty: any).
    #[serde(default)]
    pub tag: String,
}

impl HubFilter {
    fn status(&self) -> Option<ProjectStatus> {
        ProjectStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == self.status)
    }
}

/// The banner's text while the sweeper does not judge silence.
fn self_preservation(app: &AppState) -> Option<String> {
    app.nats.as_ref()?;
    app.sight
        .self_preservation(Utc::now(), app.settings.heartbeat.stale_threshold)
}

fn chrome(app: &AppState, v: &Visitor) -> pages::Chrome {
    pages::Chrome {
        who: v.who(),
        csrf: v.csrf.clone(),
        admin: v.is_admin(),
        self_preservation: self_preservation(app),
    }
}

async fn hubs(State(ui): State<Ui>, v: Visitor, Query(filter): Query<HubFilter>) -> UiResult {
    let app = &ui.app;
    let all = crate::store::projects::list(
        &app.db,
        &crate::store::projects::ProjectFilter {
            status: filter.status(),
            ..Default::default()
        },
    )
    .await?;
    let q = filter.q.trim().to_lowercase();
    let tag = filter.tag.trim();
    let shown: Vec<_> = all
        .into_iter()
        .filter(|p| {
            (q.is_empty()
                || p.slug.to_lowercase().contains(&q)
                || p.name.to_lowercase().contains(&q))
                && (tag.is_empty() || p.tags.iter().any(|t| t == tag))
        })
        .collect();
    Ok(pages::html(pages::hubs(&chrome(app, &v), &filter, &shown, Utc::now())).into_response())
}

async fn hub(State(ui): State<Ui>, v: Visitor, Path(slug): Path<String>) -> UiResult {
    let app = &ui.app;
    let not_found = || UiError(ApiError::NotFound(format!("no project with slug {slug:?}")));
    if !protocol::naming::is_valid_slug(&slug) {
        return Err(not_found());
    }
    let project = crate::store::projects::get(&app.db, &slug)
        .await?
        .ok_or_else(not_found)?;
    let history = crate::store::history::list(&app.db, project.id, None, 200).await?;
    Ok(pages::html(pages::hub(&chrome(app, &v), &project, &history, Utc::now())).into_response())
}

async fn spokes(State(ui): State<Ui>, v: Visitor) -> UiResult {
    let app = &ui.app;
    let list = crate::store::spokes::list(&app.db, None).await?;
    Ok(pages::html(pages::spokes(&chrome(app, &v), &list)).into_response())
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

async fn spoke_action(
    State(ui): State<Ui>,
    v: Visitor,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> UiResult {
    check_post(&ui, &v, &headers, &form.csrf)?;
    let caller = v.caller();
    caller.require(Role::Admin)?;
    let Some(action) = SpokeAction::ALL.into_iter().find(|a| a.as_str() == action) else {
        return Err(UiError(ApiError::NotFound(format!(
            "no spoke action {action:?}"
        ))));
    };
    if !is_spoke_id(&id) {
        return Err(UiError(ApiError::NotFound(format!(
            "no spoke with id {id:?}"
        ))));
    }
    let request = TransitionRequest {
        reason: form.reason,
        operator: None,
    };
    let spec = request
        .into_spec(action, &caller.fingerprint)
        .map_err(ApiError::validation)?;
    crate::api::federation::transition(&ui.app, &caller, &id, spec).await?;
    Ok(Redirect::to(&format!("/ui/spokes#{id}")).into_response())
}

async fn federation(State(ui): State<Ui>, v: Visitor) -> UiResult {
    let app = &ui.app;
    let links = crate::store::links::list(&app.db, &Default::default()).await?;
    let status = app.sync.status(app.settings.sync.enabled).await?;
    let drift = app.sync.drift().await?;
    Ok(pages::html(pages::federation(&chrome(app, &v), &links, &status, &drift)).into_response())
}

/// The watch feed for the page's script: `EventSource` cannot send an
/// `X-API-Key`, so the session stands for it; the stream is the API's own.
async fn events(
    State(ui): State<Ui>,
    v: Visitor,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    crate::api::watch::watch(
        State(ui.app.clone()),
        v.caller(),
        headers,
        crate::api::extract::Query(crate::api::watch::WatchParams {
            last_event_id: None,
        }),
    )
    .await
}

async fn script() -> Response {
    static_file("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    static_file("text/css; charset=utf-8", STYLE)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
