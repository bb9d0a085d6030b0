//! `GET /v1/sync?since=&limit=`: the change feed a browser mirror pulls (browser sync).
//!
//! Each change an image goes through (added, captioned, tags changed, embedded by a new model,
//! deleted) takes the next number of one persistent counter, in the transaction that makes it
//! (catalog schema 3). A page lists the images whose latest change is after `since`, each once, in
//! change order — an upsert with the server model's embedding and a thumbnail URL, or a delete —
//! and `next_cursor`, the `since` of the next page. A mirror that keeps its cursor gets every later
//! change exactly once per state; pages stay consistent while ingest runs.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use lens_store::Change;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::state::SharedState;

/// Largest `limit`, and the default.
pub const MAX_LIMIT: usize = 500;
pub const DEFAULT_LIMIT: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    since: Option<String>,
    limit: Option<usize>,
}

/// A cursor is the decimal `seq` of a change (what `next_cursor` gives); anything else is 400 `invalid_cursor`.
pub fn parse_cursor(cursor: &str) -> ApiResult<u64> {
    let invalid = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            format!(
                "cursor `{}` is not one this server gave (a `next_cursor`: a decimal number)",
                cursor.chars().take(40).collect::<String>()
            ),
        )
    };
    if cursor.is_empty() || cursor.len() > 19 || !cursor.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    cursor.parse::<u64>().ok().filter(|n| i64::try_from(*n).is_ok()).ok_or_else(invalid)
}

/// `GET /v1/sync`.
pub async fn feed(
    State(state): State<SharedState>,
    query: Result<Query<SyncQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let since = q.since.as_deref().map(parse_cursor).transpose()?.unwrap_or(0);
    let engine = state.engine()?;
    let model = engine.model.id.clone();
    let page = state.catalog(move |c| c.changes_since(since, limit, &model)).await?;
    let changes: Vec<Value> = page.changes.into_iter().map(change_json).collect();
    Ok(Json(json!({
        "model": {"id": engine.model.id, "dims": engine.model.dims},
        "changes": changes,
        "next_cursor": page.next_cursor.to_string(),
        "more": page.more,
    })))
}

fn change_json(change: Change) -> Value {
    match change {
        Change::Upsert { seq, image, created_ms, embedding } => json!({
            "seq": seq,
            "op": "upsert",
            "image": {
                "id": image.id,
                "sha256": image.sha256,
                "mime": image.mime,
                "width": image.width,
                "height": image.height,
                "bytes": image.bytes,
                "created_at": created_ms,
                "tags": image.tags,
                "caption": image.caption,
                "embedding": embedding,
                "thumbnail_url": format!("/v1/images/{}/thumbnail", image.id),
            },
        }),
        Change::Delete { seq, id } => json!({"seq": seq, "op": "delete", "id": id}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_decimal_seqs() {
        assert_eq!(parse_cursor("0").unwrap(), 0);
        assert_eq!(parse_cursor("18").unwrap(), 18);
        assert_eq!(parse_cursor("9223372036854775807").unwrap(), i64::MAX as u64);
        for bad in ["", "-1", "+1", "1.5", "0x10", "abc", " 1", "9223372036854775808", "99999999999999999999"] {
            let err = parse_cursor(bad).unwrap_err();
            assert_eq!((err.status, err.code), (StatusCode::BAD_REQUEST, "invalid_cursor"), "{bad:?}");
        }
    }
}
