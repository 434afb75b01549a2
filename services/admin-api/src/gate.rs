//! Who may call the admin API: every request under `/api/queue` must carry credentials
//! (Basic for the fallback administrator, Bearer for an API key), over TLS or from this host,
//! and each operation answers only the roles the gRPC permission table names for the same
//! operation.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferrymail_rpc::cluster_tls::{Role, allowed_roles};
use ferrymail_telemetry::{AdminClient, LogLimit};

use crate::credentials::{self, CredentialError};
use crate::metrics::ApiMetrics;
use crate::password_check::{PasswordCheck, Principal};
use crate::problem::Problem;

/// How often refusals are logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The authentication in front of the API.
pub struct Gate {
    check: PasswordCheck,
    allow_plain_text: bool,
    metrics: ApiMetrics,
    logged: LogLimit,
}

impl Gate {
    /// Checks credentials with `check`; `allow_plain_text` accepts them over plain HTTP
    /// from other hosts too.
    pub fn new(check: PasswordCheck, allow_plain_text: bool, metrics: ApiMetrics) -> Self {
        Self {
            check,
            allow_plain_text,
            metrics,
            logged: LogLimit::new(LOG_EVERY),
        }
    }

    fn refuse(&self, client: &AdminClient, reason: &'static str, problem: Problem) -> Response {
        self.metrics.refused(reason);
        if let Some(left_out) = self.logged.admit() {
            tracing::warn!(client = %client.address.ip(), reason, left_out, "admin API request refused: {}", problem.detail);
        }
        let mut response = problem.into_response();
        if response.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ferrymail\", Basic realm=\"ferrymail\""),
            );
        }
        response
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Whose credentials: `admin` or `api-key.<id>`.
    pub principal: Principal,
    /// The roles the credentials carry.
    pub roles: Vec<Role>,
}

impl Caller {
    /// `Ok` when the permission table lets this caller call `method` of the Queue service.
    pub fn permit(&self, method: &str) -> Result<(), Problem> {
        let path = format!("/ferrymail.v1.Queue/{method}");
        match allowed_roles(&path) {
            None => Ok(()),
            Some(allowed) if self.roles.iter().any(|r| allowed.contains(r)) => Ok(()),
            Some(_) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("{} may not call {method}", self.principal),
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Only reachable behind `authenticate`, which inserts it.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                CredentialError::Missing.to_string(),
            )
        })
    }
}

/// The middleware: refuses the request, or lets it through with its [`Caller`].
pub async fn authenticate(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(client): ConnectInfo<AdminClient>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request.headers().get(header::AUTHORIZATION);
    if header.is_some() && !client.tls && !client.is_loopback() && !gate.allow_plain_text {
        let problem = Problem::new(
            StatusCode::FORBIDDEN,
            "credentials are refused over plain HTTP from another host: use an http listener \
             with tls.implicit = true (or server.http.allow-plain-text)",
        );
        return gate.refuse(&client, "plain_text", problem);
    }
    if !gate.check.any() {
        let problem = Problem::new(
            StatusCode::UNAUTHORIZED,
            "the admin API has no credentials configured: set authentication.api-key.<id>.secret \
             or authentication.fallback-admin",
        );
        return gate.refuse(&client, "not_configured", problem);
    }
    let presented = match credentials::parse(header.map(HeaderValue::as_bytes)) {
        Ok(presented) => presented,
        Err(error) => {
            let reason = match error {
                CredentialError::Missing => "missing",
                _ => "malformed",
            };
            let problem = Problem::new(StatusCode::UNAUTHORIZED, error.to_string());
            return gate.refuse(&client, reason, problem);
        }
    };
    let Some(principal) = gate.check.check(&presented).await else {
        let problem = Problem::new(StatusCode::UNAUTHORIZED, "invalid credentials");
        return gate.refuse(&client, "invalid", problem);
    };
    request.extensions_mut().insert(Caller {
        principal,
        roles: vec![Role::Admin],
    });
    next.run(request).await
}
