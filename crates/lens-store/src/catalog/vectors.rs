//! Image embeddings: one vector per image and model, stored as little-endian `f32` blobs. The
//! vector index is only a cache of these, rebuilt with [`Catalog::for_each_embedding`]. Also the
//! blob encoding and validation that caption embeddings share.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

use super::Catalog;
use crate::error::{Result, StoreError};

impl Catalog {
    /// The embedding of image `key` for `model`.
    pub fn embedding(&self, key: i64, model: &str) -> Result<Option<Vec<f32>>> {
        let row = self
            .conn()
            .query_row(
                "SELECT dim, vector FROM embeddings WHERE image_key = ?1 AND model = ?2",
                params![key, model],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()?;
        row.map(|(dim, blob)| decode_vector(key, model, dim, &blob)).transpose()
    }

    /// How many embeddings are stored for `model`.
    pub fn count_embeddings(&self, model: &str) -> Result<u64> {
        let n: i64 =
            self.conn().query_row("SELECT COUNT(*) FROM embeddings WHERE model = ?1", params![model], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Calls `f(key, embedding)` for every embedding stored for `model`, in key order, reading
    /// 1024 rows at a time (the lock is not held while `f` runs, so `f` may use the catalog).
    /// Returns the count. Not a snapshot: read [`Catalog::generation`] before and after to know
    /// whether writes happened meanwhile.
    pub fn for_each_embedding(&self, model: &str, f: &mut dyn FnMut(i64, Vec<f32>)) -> Result<u64> {
        const CHUNK: usize = 1024;
        let mut after = i64::MIN;
        let mut count = 0u64;
        loop {
            let rows: Vec<(i64, i64, Vec<u8>)> = {
                let conn = self.conn();
                let mut stmt = conn.prepare_cached(
                    "SELECT image_key, dim, vector FROM embeddings
                     WHERE model = ?1 AND image_key > ?2 ORDER BY image_key LIMIT ?3",
                )?;
                stmt.query_map(params![model, after, CHUNK as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let n = rows.len();
            for (key, dim, blob) in rows {
                f(key, decode_vector(key, model, dim, &blob)?);
                count += 1;
                after = key;
            }
            if n < CHUNK {
                return Ok(count);
            }
        }
    }

    /// Image embeddings by `model` of these images; images without one are absent.
    pub fn embeddings(&self, keys: &[i64], model: &str) -> Result<HashMap<i64, Vec<f32>>> {
        self.vectors_by_keys("embeddings", keys, model)
    }

    pub(super) fn vectors_by_keys(&self, table: &str, keys: &[i64], model: &str) -> Result<HashMap<i64, Vec<f32>>> {
        let conn = self.conn();
        let mut out = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT image_key, dim, vector FROM {table} WHERE model = ? AND image_key IN ({marks})");
            let mut stmt = conn.prepare(&sql)?;
            let args = std::iter::once(rusqlite::types::Value::from(model.to_string()))
                .chain(chunk.iter().map(|k| rusqlite::types::Value::from(*k)));
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?))
            })?;
            for row in rows {
                let (key, dim, blob) = row?;
                out.insert(key, decode_vector(key, model, dim, &blob)?);
            }
        }
        Ok(out)
    }
}

/// Into `embeddings` or `caption_embeddings` (replacing an older vector of the same model).
pub(super) fn insert_vector(tx: &Transaction<'_>, table: &str, key: i64, model: &str, v: &[f32]) -> Result<()> {
    tx.execute(
        &format!("INSERT OR REPLACE INTO {table} (image_key, model, dim, vector) VALUES (?1, ?2, ?3, ?4)"),
        params![key, model, v.len() as i64, encode_vector(v)],
    )?;
    Ok(())
}

/// A vector as stored: its values as little-endian f32.
pub(super) fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn decode_vector(key: i64, model: &str, dim: i64, blob: &[u8]) -> Result<Vec<f32>> {
    if dim <= 0 || blob.len() as u64 != dim as u64 * 4 {
        return Err(StoreError::Corrupt(format!(
            "embedding of image key {key} for model {model:?}: {} bytes, expected dim {dim} x 4",
            blob.len()
        )));
    }
    Ok(blob.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

pub(super) fn validate_embedding(model: &str, v: &[f32]) -> Result<()> {
    if model.is_empty() {
        return Err(StoreError::InvalidInput("embedding model name is empty".into()));
    }
    if v.is_empty() {
        return Err(StoreError::InvalidInput(format!("empty embedding for model {model:?}")));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(StoreError::InvalidInput(format!("embedding for model {model:?} has a non-finite value at {i}")));
    }
    Ok(())
}
