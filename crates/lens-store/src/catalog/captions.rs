//! Captions: setting them (with their embedding by a CLIP model), reading caption embeddings,
//! the cache of generated captions keyed by image bytes, model and options, and keyword search over
//! an image's texts, its caption and its analysis (SQLite FTS5; the index follows `images.caption` and
//! `images.analysis` through triggers). [`fts_query`] is the one place user text becomes an FTS query,
//! so that no input is an FTS syntax error.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::Catalog;
use super::images::{ImageRecord, query_image, validate_sha256};
use super::vectors::{insert_vector, validate_embedding};
use crate::error::Result;
use crate::time::now_ms;

/// Most terms of a caption search query; the rest are ignored.
pub const MAX_QUERY_TERMS: usize = 32;
/// Longest term of a caption search query, in characters; longer ones are cut.
pub const MAX_TERM_CHARS: usize = 64;

impl Catalog {
    /// Sets (or with `None` clears) the caption; `false` when there is no such image. Caption
    /// embeddings of the old caption are dropped; the keyword index follows (triggers).
    pub fn set_caption(&self, id: &str, caption: Option<&str>) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done = write_caption(&tx, id, caption)?.is_some();
        tx.commit()?;
        Ok(done)
    }

    /// Sets the caption and its embedding by CLIP model `model` in one transaction; the image's
    /// record after the change, `None` when there is no such image (deleted meanwhile).
    pub fn store_caption(
        &self,
        id: &str,
        caption: &str,
        model: &str,
        embedding: &[f32],
    ) -> Result<Option<ImageRecord>> {
        Ok(self.store_captions(&[(id, caption, embedding)], model)?.and_then(|mut v| v.pop()))
    }

    /// [`store_caption`](Self::store_caption) for several images `(id, caption, embedding)`, all
    /// in one transaction: the records after the change, in order, or `None` — and nothing stored —
    /// when any image does not exist.
    pub fn store_captions(&self, items: &[(&str, &str, &[f32])], model: &str) -> Result<Option<Vec<ImageRecord>>> {
        for (_, _, embedding) in items {
            validate_embedding(model, embedding)?;
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(items.len());
        for (id, caption, embedding) in items {
            let Some(key) = write_caption(&tx, id, Some(caption))? else {
                return Ok(None); // dropped: rolled back
            };
            insert_vector(&tx, "caption_embeddings", key, model, embedding)?;
            out.extend(query_image(&tx, "key = ?1", params![key])?);
        }
        tx.commit()?;
        Ok(Some(out))
    }

    /// The embedding of image `key`'s caption by CLIP model `model`.
    pub fn caption_embedding(&self, key: i64, model: &str) -> Result<Option<Vec<f32>>> {
        Ok(self.vectors_by_keys("caption_embeddings", &[key], model)?.remove(&key))
    }

    /// Caption embeddings by `model` of these images; images without one are absent.
    pub fn caption_embeddings(&self, keys: &[i64], model: &str) -> Result<HashMap<i64, Vec<f32>>> {
        self.vectors_by_keys("caption_embeddings", keys, model)
    }

    /// Keyword search over images' texts, caption and analysis together (SQLite FTS5, Porter-stemmed,
    /// case and accent blind; one bm25 over both columns). `query`
    /// is any user text: it is cut into terms (runs of letters and digits, at most
    /// [`MAX_QUERY_TERMS`]), each quoted, joined with OR — so it can never be an FTS syntax error or
    /// an operator. Returns `(image key, score)`, best first, where score = -bm25 (> 0; higher is a
    /// better match: more of the rarer terms, in shorter texts). No terms: empty.
    pub fn search_texts(&self, query: &str, limit: usize) -> Result<Vec<(i64, f64)>> {
        let Some(fts) = fts_query(query) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT rowid, bm25(image_texts_fts) FROM image_texts_fts WHERE image_texts_fts MATCH ?1
             ORDER BY bm25(image_texts_fts), rowid LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![fts, limit], |r| Ok((r.get::<_, i64>(0)?, -r.get::<_, f64>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The [`search_texts`](Self::search_texts) scores of these images (those whose texts match
    /// `query`; the others are absent).
    pub fn text_match_scores(&self, query: &str, keys: &[i64]) -> Result<HashMap<i64, f64>> {
        let Some(fts) = fts_query(query) else {
            return Ok(HashMap::new());
        };
        let conn = self.conn();
        let mut out = HashMap::new();
        for chunk in keys.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "SELECT rowid, bm25(image_texts_fts) FROM image_texts_fts WHERE image_texts_fts MATCH ? AND rowid IN ({marks})"
            );
            let mut stmt = conn.prepare(&sql)?;
            let args = std::iter::once(rusqlite::types::Value::from(fts.clone()))
                .chain(chunk.iter().map(|k| rusqlite::types::Value::from(*k)));
            let rows =
                stmt.query_map(rusqlite::params_from_iter(args), |r| Ok((r.get::<_, i64>(0)?, -r.get::<_, f64>(1)?)))?;
            for row in rows {
                let (key, score) = row?;
                out.insert(key, score);
            }
        }
        Ok(out)
    }

    // --- caption cache --------------------------------------------------------------------------

    /// The cached caption of the bytes `sha256` by caption model `model` with `options` (canonical JSON).
    pub fn cached_caption(&self, sha256: &str, model: &str, options: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT caption FROM caption_cache WHERE sha256 = ?1 AND model = ?2 AND options = ?3",
                params![sha256, model, options],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Caches captions `(sha256, model, options, caption)` in one transaction, then drops the
    /// oldest entries past `max_entries`.
    pub fn cache_captions(&self, entries: &[(&str, &str, &str, &str)], max_entries: u64) -> Result<()> {
        for (sha256, ..) in entries {
            validate_sha256(sha256)?;
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        for (sha256, model, options, caption) in entries {
            tx.execute(
                "INSERT INTO caption_cache (sha256, model, options, caption, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (sha256, model, options) DO UPDATE SET caption = excluded.caption,
                                                                    created_at = excluded.created_at",
                params![sha256, model, options, caption, now],
            )?;
        }
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM caption_cache", [], |r| r.get(0))?;
        let over = count - i64::try_from(max_entries).unwrap_or(i64::MAX);
        if over > 0 {
            tx.execute(
                "DELETE FROM caption_cache WHERE rowid IN
                   (SELECT rowid FROM caption_cache ORDER BY created_at, rowid LIMIT ?1)",
                params![over],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Entries in the caption cache.
    pub fn count_cached_captions(&self) -> Result<u64> {
        let n: i64 = self.conn().query_row("SELECT COUNT(*) FROM caption_cache", [], |r| r.get(0))?;
        Ok(n as u64)
    }
}

/// Writes `images.caption` (the FTS triggers follow) and drops the old caption's embeddings;
/// the image key, `None` when there is no such image.
fn write_caption(tx: &Transaction<'_>, id: &str, caption: Option<&str>) -> Result<Option<i64>> {
    let Some(key) =
        tx.query_row("SELECT key FROM images WHERE id = ?1", params![id], |r| r.get::<_, i64>(0)).optional()?
    else {
        return Ok(None);
    };
    tx.execute("UPDATE images SET caption = ?1 WHERE key = ?2", params![caption, key])?;
    tx.execute("DELETE FROM caption_embeddings WHERE image_key = ?1", params![key])?;
    Ok(Some(key))
}

/// User text as an FTS5 query that can only match terms: runs of letters and digits (at most
/// [`MAX_QUERY_TERMS`] of at most [`MAX_TERM_CHARS`] characters, duplicates dropped), each a quoted
/// string, joined with OR. Quotes, `*`, `^`, `:`, parentheses, `AND`/`OR`/`NOT`/`NEAR` as words —
/// all become plain terms or separators. `None` when no term is left.
pub fn fts_query(text: &str) -> Option<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let term: String = word.chars().take(MAX_TERM_CHARS).flat_map(char::to_lowercase).collect();
        if !terms.contains(&term) {
            terms.push(term);
        }
        if terms.len() == MAX_QUERY_TERMS {
            break;
        }
    }
    if terms.is_empty() {
        return None;
    }
    // Terms hold no `"` (not alphanumeric); quoting makes each a string, never an operator.
    Some(terms.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(" OR "))
}
