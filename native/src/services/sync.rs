//! The browser-sync change feed (`GET /v1/sync?since=&limit=`).
//!
//! Each change an image goes through (added, captioned, tags changed, embedded by a new model,
//! deleted) takes the next number of one persistent counter, in the transaction that makes it
//! (catalog schema 3). A page lists the images whose latest change is after `since`, each once, in
//! change order — an upsert with the server model's embedding and a thumbnail URL, or a delete —
//! and `next_cursor`, the `since` of the next page. A mirror that keeps its cursor gets every later
//! change exactly once per state; pages stay consistent while ingest runs.

use lens_core::api::{self, ErrorCode, RequestError};
use lens_store::{Change, StoreError};

use super::errors::{NotReady, coded_enum};
use super::lens::Lens;

/// Largest `limit`, and the default.
pub const MAX_LIMIT: usize = 500;
pub const DEFAULT_LIMIT: usize = 200;

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error(transparent)]
    NotReady(#[from] NotReady),
    #[error(transparent)]
    Store(#[from] StoreError),
}

coded_enum!(SyncError { wraps: [Invalid, NotReady, Store] });

/// A cursor is the decimal `seq` of a change (what `next_cursor` gives); anything else is `invalid_cursor`.
pub fn parse_cursor(cursor: &str) -> Result<u64, RequestError> {
    let invalid = || {
        RequestError::new(
            ErrorCode::InvalidCursor,
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

/// One page of the feed.
pub async fn page(lens: &Lens, query: api::SyncQuery) -> Result<api::SyncPage, SyncError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(RequestError::invalid(format!("limit must be between 1 and {MAX_LIMIT}")).into());
    }
    let since = query.since.as_deref().map(parse_cursor).transpose()?.unwrap_or(0);
    let ready = lens.ready()?;
    let model = ready.models.embedding_model().to_string();
    let page = lens.catalog(move |c| c.changes_since(since, limit, &model)).await?;
    Ok(api::SyncPage {
        model: api::SyncModel { id: ready.models.embedding_model().to_string(), dims: ready.models.dims() },
        changes: page.changes.into_iter().map(to_api).collect(),
        next_cursor: page.next_cursor.to_string(),
        more: page.more,
    })
}

fn to_api(change: Change) -> api::SyncChange {
    match change {
        Change::Upsert { seq, image, created_ms, embedding } => api::SyncChange::Upsert {
            seq,
            image: api::SyncImage {
                thumbnail_url: api::thumbnail_path(&image.id),
                id: image.id,
                sha256: image.sha256,
                mime: image.mime,
                width: image.width,
                height: image.height,
                bytes: image.bytes,
                created_at: created_ms,
                tags: image.tags,
                caption: image.caption,
                analysis: image.analysis.map(|a| a.text),
                embedding,
            },
        },
        Change::Delete { seq, id } => api::SyncChange::Delete { seq, id },
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
            assert_eq!(parse_cursor(bad).unwrap_err().code, ErrorCode::InvalidCursor, "{bad:?}");
        }
    }
}
