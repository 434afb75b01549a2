//! An MTA hook as one of a session's filters: asks the hook at the stages it wants and
//! turns every failure into the verdict `tempfail-on-error` chooses.

use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use ferrymail_config::model::hook::Hook;
use ferrymail_config::model::stage_rules::Stage;

use super::client::{HookClient, SendError};
use super::request::HookRequest;
use super::response::{self, ResponseError};
use crate::filter::{Action, Filter, FilterRequest, Verdict};
use crate::listener::Connections;
use crate::session::Reply;

/// Why a hook gave no usable verdict.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HookError {
    /// It could not be asked, or its answer not read.
    #[error(transparent)]
    Send(#[from] SendError),
    /// Its answer cannot be used.
    #[error(transparent)]
    Response(#[from] ResponseError),
    /// The request could not be written as JSON (never expected of these types).
    #[error("the request cannot be written: {0}")]
    Request(String),
}

/// `session.hook.<id>` for one session. Stateless: each stage is one request.
pub(crate) struct MtaHook {
    name: String,
    hook: Arc<Hook>,
    client: HookClient,
    connections: Arc<Connections>,
}

impl MtaHook {
    /// Hook `hook`, asked through `client`; `connections` counts the client's sessions.
    pub(crate) fn new(hook: Arc<Hook>, client: HookClient, connections: Arc<Connections>) -> Self {
        Self {
            name: format!("hook.{}", hook.id),
            hook,
            client,
            connections,
        }
    }

    /// The hook's verdict, or why there is none.
    async fn ask(&self, request: &FilterRequest<'_>) -> Result<Verdict, HookError> {
        let open = self.connections.open_from(request.session.client.ip());
        // This session is one of the client's even when the count was taken elsewhere
        // (a client address from the PROXY protocol).
        let body = serde_json::to_vec(&HookRequest::new(request, open.max(1)))
            .map_err(|e| HookError::Request(e.to_string()))?;
        let answer = self.client.post(&self.hook, body).await?;
        Ok(response::parse(&answer, request.stage, &self.name)?)
    }

    /// The verdict of a hook that failed: `451 4.3.0`, or go on, as configured.
    fn failed(&self, stage: Stage, error: &HookError) -> Verdict {
        tracing::warn!(
            hook = self.hook.id.as_str(),
            %stage,
            %error,
            tempfail = self.hook.tempfail_on_error,
            "MTA hook failed"
        );
        if self.hook.tempfail_on_error {
            Verdict::action(Action::TempFail(Reply::new(
                451,
                "4.3.0",
                "Temporary failure, please try again later",
            )))
        } else {
            Verdict::proceed()
        }
    }
}

impl Filter for MtaHook {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, stage: Stage) -> bool {
        self.hook.stages.contains(&stage)
    }

    fn check<'a>(&'a mut self, request: &'a FilterRequest<'a>) -> BoxFuture<'a, Verdict> {
        async move {
            match self.ask(request).await {
                Ok(verdict) => verdict,
                Err(error) => self.failed(request.stage, &error),
            }
        }
        .boxed()
    }

    fn abort(&mut self) -> BoxFuture<'_, ()> {
        // Nothing is kept between requests, so there is nothing to abort.
        futures::future::ready(()).boxed()
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        futures::future::ready(()).boxed()
    }
}
