//! `LockError` as an HTTP response (feature `axum`), so a handler can return
//! `Result<_, LockError>` or wrap it in its own error type.
//!
//! | error | status | why |
//! | --- | --- | --- |
//! | `Busy`, `Timeout` | 423 Locked, `Retry-After` = the holder's remaining lease (s) | someone else is working on this resource |
//! | `Lost` | 503 Service Unavailable | the lease ended while the work ran (see below) |
//! | `Connection`, `Redis` | 503 Service Unavailable, `Retry-After: 1` | the lock service is unreachable |
//! | `InvalidName`, `Config` | 500 Internal Server Error | a bug in the service, not the request |
//!
//! The body is the error's message as plain text.
//!
//! `Lost` does not mean that retrying is safe. The body was cancelled at an
//! await, or it ran to its end under [`OnLost::Notify`](crate::OnLost::Notify),
//! so part of its work, or all of it, may already be done, and another holder may
//! have overlapped it. A retry is safe only if the work is idempotent, or if
//! its writes were fenced (the storage refused a stale fencing token) or made in
//! one transaction that the cancellation rolled back. Tell the client what your
//! handler guarantees.

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::error::LockError;

impl LockError {
    /// The HTTP status this error maps to (see the module docs).
    pub fn http_status(&self) -> StatusCode {
        match self {
            LockError::Busy { .. } | LockError::Timeout { .. } => StatusCode::LOCKED,
            LockError::Lost { .. }
            | LockError::Connection { .. }
            | LockError::Redis { .. }
            | LockError::Unreplicated { .. } => StatusCode::SERVICE_UNAVAILABLE,
            LockError::InvalidName { .. }
            | LockError::Config { .. }
            | LockError::Reentrant { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds a client should wait before retrying, when that is known.
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            LockError::Busy { .. } | LockError::Timeout { .. } => self
                .retry_after()
                .map(|left| left.as_millis().div_ceil(1_000).max(1) as u64),
            LockError::Connection { .. }
            | LockError::Redis { .. }
            | LockError::Unreplicated { .. } => Some(1),
            _ => None,
        }
    }
}

impl IntoResponse for LockError {
    fn into_response(self) -> Response {
        let status = self.http_status();
        let retry_after = self.retry_after_secs();
        if status.is_server_error() {
            tracing::warn!(error = %self, "lock error answered with {status}");
        }
        let mut response = (status, self.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(seconds) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn busy_is_423_with_retry_after_rounded_up() {
        let error = LockError::Timeout {
            name: "account:1".into(),
            waited: Duration::from_secs(2),
            retry_after: Some(Duration::from_millis(8_200)),
        };
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::LOCKED);
        assert_eq!(response.headers()[RETRY_AFTER], "9");
    }

    #[test]
    fn lost_is_503_and_config_is_500() {
        let lost = LockError::Lost {
            name: "a".into(),
            reason: crate::LostReason::Refused,
        };
        assert_eq!(
            lost.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let config = LockError::Config {
            subject: "x".into(),
            reason: "y".into(),
        };
        assert_eq!(
            config.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
