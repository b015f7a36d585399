//! A small OIDC provider for the sync's IdP probe: it serves, for any
//! issuer path `P` (e.g. `/realms/fra`), the discovery document at
//! `P/.well-known/openid-configuration` and a JWKS at
//! `P/protocol/openid-connect/certs`, as Keycloak does.
//!
//! It answers on `127.0.0.1` ([`OidcStub::url`], where the hub reaches it:
//! a spoke's internal URL) and names its issuers with `localhost`
//! ([`OidcStub::public_url`]: a spoke's public URL), so a registration with
//! distinct public and internal URLs has matching issuers. Switches make it
//! fail (503), name another issuer, or lose its JWKS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tokio::task::JoinHandle;

const DISCOVERY: &str = "/.well-known/openid-configuration";
const CERTS: &str = "/protocol/openid-connect/certs";

#[derive(Default)]
struct Shared {
    public_base: String,
    down: AtomicBool,
    jwks_down: AtomicBool,
    issuer: Mutex<Option<String>>,
    discovery_hits: AtomicU64,
}

pub struct OidcStub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    handle: Option<JoinHandle<()>>,
}

impl OidcStub {
    /// Starts on a free port of 127.0.0.1, on the caller's runtime.
    pub async fn start() -> OidcStub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OIDC stub");
        let (shared, addr, router) =
            Self::parts(listener.local_addr().expect("the OIDC stub's address"));
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        OidcStub {
            shared,
            addr,
            handle: Some(handle),
        }
    }

    /// One healthy stub per test process, on a thread and runtime of its
    /// own, so tests on any runtime may share it (never switch it: start
    /// your own for failures).
    pub fn shared() -> &'static OidcStub {
        static SHARED: OnceLock<OidcStub> = OnceLock::new();
        SHARED.get_or_init(|| {
            let std_listener =
                std::net::TcpListener::bind("127.0.0.1:0").expect("bind the OIDC stub");
            std_listener.set_nonblocking(true).expect("the OIDC stub");
            let (shared, addr, router) =
                Self::parts(std_listener.local_addr().expect("the OIDC stub's address"));
            std::thread::Builder::new()
                .name("oidc-stub".into())
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("the OIDC stub");
                    rt.block_on(async move {
                        let listener =
                            tokio::net::TcpListener::from_std(std_listener).expect("the OIDC stub");
                        let _ = axum::serve(listener, router).await;
                    });
                })
                .expect("the OIDC stub");
            OidcStub {
                shared,
                addr,
                handle: None,
            }
        })
    }

    fn parts(addr: SocketAddr) -> (Arc<Shared>, SocketAddr, Router) {
        let shared = Arc::new(Shared {
            public_base: format!("http://localhost:{}", addr.port()),
            ..Shared::default()
        });
        let router = Router::new().fallback(serve).with_state(shared.clone());
        (shared, addr, router)
    }

    /// Where the hub reaches it: `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What its issuers are named with: `http://localhost:<port>`.
    pub fn public_url(&self) -> String {
        self.shared.public_base.clone()
    }

    /// Discovery and JWKS answer 503 while `down`.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The JWKS answers 503 while `down`.
    pub fn set_jwks_down(&self, down: bool) {
        self.shared.jwks_down.store(down, Ordering::SeqCst);
    }

    /// Every discovery document names this issuer (`None`: its own).
    pub fn set_issuer(&self, issuer: Option<&str>) {
        *self.shared.issuer.lock().expect("the OIDC stub") = issuer.map(str::to_owned);
    }

    /// Discovery documents asked for so far (answered or not).
    pub fn discovery_hits(&self) -> u64 {
        self.shared.discovery_hits.load(Ordering::SeqCst)
    }
}

impl Drop for OidcStub {
    fn drop(&mut self) {
        if let Some(h) = &self.handle {
            h.abort();
        }
    }
}

async fn serve(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if path.ends_with(DISCOVERY) {
        shared.discovery_hits.fetch_add(1, Ordering::SeqCst);
    }
    if shared.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Some(prefix) = path.strip_suffix(DISCOVERY) {
        let own = format!("{}{prefix}", shared.public_base);
        let issuer = shared
            .issuer
            .lock()
            .expect("the OIDC stub")
            .clone()
            .unwrap_or(own.clone());
        let oidc = |endpoint: &str| format!("{own}/protocol/openid-connect/{endpoint}");
        return Json(json!({
            "issuer": issuer,
            "authorization_endpoint": oidc("auth"),
            "token_endpoint": oidc("token"),
            "userinfo_endpoint": oidc("userinfo"),
            "jwks_uri": oidc("certs"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }))
        .into_response();
    }
    if path.ends_with(CERTS) {
        if shared.jwks_down.load(Ordering::SeqCst) {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        return Json(json!({"keys": [{
            "kid": "stub", "kty": "RSA", "alg": "RS256", "use": "sig",
            "n": "c3R1Yi1tb2R1bHVzLW5vdC1hLXJlYWwta2V5",
            "e": "AQAB"
        }]}))
        .into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}
