//! Load shedding by route class. Each class has at most so many requests in flight; past that a request
//! is answered at once (429 `overloaded`, `Retry-After: 1`) instead of queueing behind the others until
//! it times out. The classes keep each other going: a burst of uploads (bodies held in memory, images
//! decoded) leaves searches and reads their own slots. Health, readiness and metrics are never shed.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lens_core::api::ErrorCode;
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::guard::refuse;
use crate::config::InFlightLimits;

/// What a route costs while in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Image bodies read and decoded: uploads and searches by an uploaded image.
    Uploads,
    /// Work for a model: text searches, embeddings, captions, chat, analyses, knowledge documents.
    Model,
    /// Everything else (reads, deletes, jobs, sync).
    Other,
}

impl RouteClass {
    /// The class of `method route` (`route` as matched, `/v1/images/{id}`); `None`: never shed.
    pub fn of(method: &Method, route: &str) -> Option<RouteClass> {
        if matches!(route, "/healthz" | "/readyz" | "/metrics") {
            return None;
        }
        if method != Method::POST {
            return Some(RouteClass::Other);
        }
        Some(match route {
            "/v1/images" | "/v1/search/image" => RouteClass::Uploads,
            "/v1/search"
            | "/v1/embeddings"
            | "/v1/captions"
            | "/v1/chat/completions"
            | "/v1/analyze"
            | "/v1/collections/{name}/search"
            | "/v1/collections/{name}/documents" => RouteClass::Model,
            _ => RouteClass::Other,
        })
    }

    fn name(self) -> &'static str {
        match self {
            RouteClass::Uploads => "uploads",
            RouteClass::Model => "model requests",
            RouteClass::Other => "requests",
        }
    }
}

/// The slots of each class.
pub struct InFlight {
    uploads: Semaphore,
    model: Semaphore,
    other: Semaphore,
    limits: InFlightLimits,
}

impl InFlight {
    pub fn new(limits: InFlightLimits) -> InFlight {
        InFlight {
            uploads: Semaphore::new(limits.uploads),
            model: Semaphore::new(limits.model),
            other: Semaphore::new(limits.other),
            limits,
        }
    }

    fn slots(&self, class: RouteClass) -> (&Semaphore, usize) {
        match class {
            RouteClass::Uploads => (&self.uploads, self.limits.uploads),
            RouteClass::Model => (&self.model, self.limits.model),
            RouteClass::Other => (&self.other, self.limits.other),
        }
    }
}

/// Takes a slot of the request's class for as long as its handler runs, or answers 429 at once.
pub async fn shed(State(in_flight): State<Arc<InFlight>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let Some(class) = RouteClass::of(request.method(), &route) else { return next.run(request).await };
    let (slots, limit) = in_flight.slots(class);
    let Ok(_slot) = slots.try_acquire() else {
        metrics::counter!("lens_requests_shed_total", "class" => class.name()).increment(1);
        let mut refused = ApiError::coded(
            ErrorCode::Overloaded,
            format!("the server is at its limit of {limit} {} in flight: retry in 1 s", class.name()),
        )
        .into_response();
        refused.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
        return refuse(request, refused).await;
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fall_into_classes() {
        assert_eq!(RouteClass::of(&Method::POST, "/v1/images"), Some(RouteClass::Uploads));
        assert_eq!(RouteClass::of(&Method::GET, "/v1/images"), Some(RouteClass::Other));
        assert_eq!(RouteClass::of(&Method::POST, "/v1/search"), Some(RouteClass::Model));
        assert_eq!(RouteClass::of(&Method::POST, "/v1/index/rebuild"), Some(RouteClass::Other));
        assert_eq!(RouteClass::of(&Method::GET, "/healthz"), None);
    }
}
