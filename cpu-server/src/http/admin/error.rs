//! Admin API errors: JSON `{"error": …, "code": …}` with the right status,
//! never internals. Each is counted in the `errors` metric by code: the
//! answer carries its [`ErrorTag`] and [`count_errors`], a layer of the routes
//! that answer with these errors, counts it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::WWW_AUTHENTICATE;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use crate::metrics::Metrics;

/// An error answer of the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401: missing or wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong admin token (Authorization: Bearer <ADMIN_TOKEN>)",
        )
    }

    /// 404: the room has no orb.
    pub fn no_orb(room: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no orb for room {room}"))
    }

    /// 400: a malformed request.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.message, "code": self.code}));
        let tag = Extension(ErrorTag(self.code));
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(WWW_AUTHENTICATE, "Bearer")], tag, body).into_response()
        } else {
            (self.status, tag, body).into_response()
        }
    }
}

/// The code of an [`ApiError`] answer, kept in the response's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorTag(pub &'static str);

/// Counts an [`ApiError`] answer in the `errors` metric (a response layer).
pub async fn count_errors(State(metrics): State<Arc<Metrics>>, response: Response) -> Response {
    if let Some(ErrorTag(code)) = response.extensions().get::<ErrorTag>() {
        metrics.error(code);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: every API error answer is counted once, by code, in the handle's `errors`.
    #[tokio::test]
    async fn error_answers_are_counted_by_code_in_the_given_metrics() {
        let metrics = Arc::new(Metrics::new());
        let count = |code: &str| {
            metrics
                .errors
                .get_or_create(&vec![("code".to_owned(), code.to_owned())])
                .get()
        };
        let answer = count_errors(State(Arc::clone(&metrics)), ApiError::no_orb("r1").into_response()).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND);
        let answer = count_errors(State(Arc::clone(&metrics)), ApiError::unauthorized().into_response()).await;
        assert!(answer.headers().contains_key(WWW_AUTHENTICATE));
        count_errors(State(Arc::clone(&metrics)), StatusCode::OK.into_response()).await;
        assert_eq!((count("not_found"), count("unauthorized")), (1, 1));
    }
}
