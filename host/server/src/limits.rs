//! What keeps one client from stopping the host: a cap on requests in flight per credential
//! (`429` past it; the counts are in `per_key.rs`), and storage work on threads of its own, so
//! plugin calls that block (file I/O, fsync) never hold the threads that accept connections, do
//! TLS and answer `/healthz`.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::keys::Authenticated;
use crate::state::AppState;

/// The credential whose share a request counts against: its API key, or "signed-url" for all
/// signed URLs together.
fn credential(request: &Request) -> String {
    match request.extensions().get::<Authenticated>() {
        Some(who) => who.0.clone(),
        None => "signed-url".into(),
    }
}

/// Middleware: a request past its credential's cap is refused with `429` at once.
pub async fn per_key(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let who = credential(&request);
    let Some(place) = state.per_key.enter(&who) else {
        tracing::warn!("a credential reached its cap of requests in flight");
        return crate::errors::ApiError::too_many(format!(
            "this credential has {} requests in flight; try again",
            state.per_key.max()
        ))
        .into_response();
    };
    // Held here until the handler has answered (the request, and its extensions, may be
    // dropped as soon as the handler's extractors have run), and by a download's body until
    // its last byte is sent.
    request.extensions_mut().insert(place.clone());
    let response = next.run(request).await;
    drop(place);
    response
}

/// Middleware: runs the rest of the request on the storage work threads. A client that goes
/// away still cancels it (what must finish, like a commit, runs in a task of its own).
pub async fn on_work_threads(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut task = AbortOnDrop(state.work.spawn(next.run(request)));
    match task.await_result().await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "a request's task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A task that is cancelled when whoever awaits it goes away.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn await_result(&mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
