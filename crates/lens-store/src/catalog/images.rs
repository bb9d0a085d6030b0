//! Images: inserting (deduplicated by sha256, with their first embedding and, when asked, a
//! caption job and an analysis job), reading, listing newest first with opaque cursors, deleting, and their tags. Also
//! the image row mapping ([`RawImage`], [`query_image`]) that the captions and the change feed read
//! images through.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde::Serialize;

pub use lens_core::api::ImageAnalysis;

use super::jobs::{
    ANALYSIS_JOB, CAPTION_JOB, analysis_job_params, caption_job_params, insert_job, withdraw_image_jobs,
};
use super::vectors::{insert_vector, validate_embedding};
use super::{Catalog, Visible, bump_generation};
use crate::error::{Result, StoreError};
use crate::time::{format_rfc3339_ms, now_ms};

/// An image to insert.
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    /// Lowercase hex sha256 of the bytes (64 characters).
    pub sha256: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub source_url: Option<String>,
    /// Stored in this order, duplicates dropped.
    pub tags: Vec<String>,
    /// Dominant colours (JSON), when computed.
    pub colors: Option<serde_json::Value>,
    /// Format, size, orientation, EXIF (JSON), when read.
    pub metadata: Option<serde_json::Value>,
    /// When set, a [`CAPTION_JOB`] with these caption options (JSON) is queued in the same
    /// transaction: for a new image, and for an existing one with no caption and no pending job.
    pub caption_options: Option<serde_json::Value>,
    /// When set, an [`ANALYSIS_JOB`] with this prompt is queued in the same transaction: for a new
    /// image, and for an existing one whose analysis (if any) answered another prompt.
    pub analysis_prompt: Option<String>,
    /// The tenant the image is stored for (it then holds the image; an existing image is `created` for a
    /// tenant that did not hold it). `None`: stored without an owner (authentication off).
    pub owner: Option<String>,
    /// The ingest safety check's verdict (JSON), when one ran.
    pub moderation: Option<serde_json::Value>,
    /// Left out of search and of the sync feed (a flagged image kept for review).
    pub hidden: bool,
}

/// What [`Catalog::release_image`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Deleted {
    /// The image was not visible to the caller.
    NotFound,
    /// The caller let go of it; other tenants still hold it.
    Released,
    /// Nobody holds it any more: the row, its tags, vectors and image jobs are gone (the blob is the caller's).
    Removed(ImageRecord),
}

/// An image in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageRecord {
    /// INTEGER PRIMARY KEY; the vector index id. Never reused after a delete.
    #[serde(skip)]
    pub key: i64,
    /// Public id: the first 32 hex characters of sha256 (same bytes, same id).
    pub id: String,
    pub sha256: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub source_url: Option<String>,
    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T16:00:00.123Z`.
    pub created_at: String,
    pub tags: Vec<String>,
    pub caption: Option<String>,
    /// Dominant colours, when computed at ingest.
    pub colors: Option<serde_json::Value>,
    /// Format, size, orientation, EXIF, when read at ingest.
    pub metadata: Option<serde_json::Value>,
    /// The chat model's analysis, once one was stored.
    pub analysis: Option<ImageAnalysis>,
    /// The ingest safety check's verdict, when one ran.
    pub moderation: Option<serde_json::Value>,
    /// Left out of search and of the sync feed.
    pub hidden: bool,
}

/// One page of [`Catalog::list_images`].
#[derive(Debug, Clone, Serialize)]
pub struct ImagePage {
    pub images: Vec<ImageRecord>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl Catalog {
    /// One transaction. If an image with the same sha256 exists, returns it with `created = false`
    /// (and stores `embedding` for `model` if it had none for that model). Otherwise inserts the
    /// image and its embedding, `created = true`. The generation is bumped whenever an embedding
    /// is stored (so also for a new model's embedding of an existing image).
    pub fn insert_image(&self, image: &NewImage, model: &str, embedding: &[f32]) -> Result<(ImageRecord, bool)> {
        let mut done = self.insert_images(&[(image, embedding)], model)?;
        Ok(done.pop().expect("one result per image"))
    }

    /// [`insert_image`](Self::insert_image) for many images in one transaction (one fsync): bulk
    /// imports and seeding. All or nothing: any invalid image fails the whole call.
    pub fn insert_images(&self, images: &[(&NewImage, &[f32])], model: &str) -> Result<Vec<(ImageRecord, bool)>> {
        let images: Vec<(&NewImage, Option<&[f32]>)> = images.iter().map(|&(image, e)| (image, Some(e))).collect();
        self.insert_upload(&images, model)
    }

    /// One upload request, all or nothing in one transaction (a crash or an error stores none of it):
    /// [`insert_images`](Self::insert_images), where an entry without an embedding is bytes the request
    /// found already stored (by sha256): the image's owner now holds it and the jobs it asks for are
    /// queued. Such an entry fails the whole call (`Conflict`) when the image is gone meanwhile.
    pub fn insert_upload(
        &self,
        images: &[(&NewImage, Option<&[f32]>)],
        model: &str,
    ) -> Result<Vec<(ImageRecord, bool)>> {
        for (image, embedding) in images {
            validate_sha256(&image.sha256)?;
            if let Some(embedding) = embedding {
                validate_embedding(model, embedding)?;
            }
            i64::try_from(image.bytes)
                .map_err(|_| StoreError::InvalidInput(format!("image size {} too large", image.bytes)))?;
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(images.len());
        for (image, embedding) in images {
            out.push(insert_one(&tx, image, model, *embedding)?);
        }
        tx.commit()?;
        Ok(out)
    }

    /// The image with public id `id`.
    pub fn image(&self, id: &str) -> Result<Option<ImageRecord>> {
        query_image(&self.conn(), "id = ?1", params![id])
    }

    /// The image with public id `id` when `visible` sees it.
    pub fn visible_image(&self, id: &str, visible: Visible<'_>) -> Result<Option<ImageRecord>> {
        query_visible_image(&self.conn(), id, visible)
    }

    pub fn image_by_sha256(&self, sha256: &str) -> Result<Option<ImageRecord>> {
        query_image(&self.conn(), "sha256 = ?1", params![sha256])
    }

    /// Which of these sha256s have an image row (the orphan-blob sweep asks, a page of blobs at a time).
    pub fn stored_sha256s(&self, sha256s: &[String]) -> Result<HashSet<String>> {
        let conn = self.conn();
        let mut stored = HashSet::new();
        for chunk in sha256s.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut stmt = conn.prepare(&format!("SELECT sha256 FROM images WHERE sha256 IN ({marks})"))?;
            let rows = stmt.query_map(rusqlite::params_from_iter(chunk), |r| r.get::<_, String>(0))?;
            for row in rows {
                stored.insert(row?);
            }
        }
        Ok(stored)
    }

    /// The images with these keys that search may show (not [`hidden`](ImageRecord::hidden)), in any order;
    /// missing keys are skipped.
    pub fn images_by_keys(&self, keys: &[i64]) -> Result<Vec<ImageRecord>> {
        self.visible_images_by_keys(keys, Visible::All)
    }

    /// [`images_by_keys`](Self::images_by_keys), only those `visible` sees.
    pub fn visible_images_by_keys(&self, keys: &[i64], visible: Visible<'_>) -> Result<Vec<ImageRecord>> {
        let conn = self.conn();
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE key IN ({marks}) AND hidden = 0 AND {}",
                visible.condition("images.key")
            );
            let mut args: Vec<rusqlite::types::Value> = chunk.iter().map(|&k| k.into()).collect();
            args.extend(visible.args());
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), RawImage::from_row)?;
            for row in rows {
                out.push(row?.into_record()?.0);
            }
        }
        Ok(out)
    }

    /// Newest first (created_at desc, key desc), `limit` per page. `cursor` is the `next_cursor`
    /// of the previous page (opaque; stable under inserts: new images land before page one).
    /// `tag`: only images with exactly this tag; only those `visible` sees.
    pub fn list_images(
        &self,
        limit: usize,
        cursor: Option<&str>,
        tag: Option<&str>,
        visible: Visible<'_>,
    ) -> Result<ImagePage> {
        let after = cursor.map(decode_cursor).transpose()?;
        if limit == 0 {
            return Ok(ImagePage { images: Vec::new(), next_cursor: cursor.map(str::to_string) });
        }
        let mut sql = format!("SELECT {IMAGE_COLUMNS} FROM images i WHERE {}", visible.condition("i.key"));
        let mut args: Vec<rusqlite::types::Value> = visible.args();
        if let Some((ms, key)) = after {
            sql.push_str(" AND (i.created_at, i.key) < (?, ?)");
            args.push(ms.into());
            args.push(key.into());
        }
        if let Some(tag) = tag {
            sql.push_str(" AND EXISTS (SELECT 1 FROM image_tags t WHERE t.tag = ? AND t.image_key = i.key)");
            args.push(tag.to_string().into());
        }
        sql.push_str(" ORDER BY i.created_at DESC, i.key DESC LIMIT ?");
        args.push(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX).into());
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), RawImage::from_row)?;
        let mut images = Vec::with_capacity(limit.min(1000));
        let mut last = None;
        let mut more = false;
        for row in rows {
            if images.len() == limit {
                more = true;
                break;
            }
            let (record, ms) = row?.into_record()?;
            last = Some((ms, record.key));
            images.push(record);
        }
        let next_cursor = if more { last.map(|(ms, key)| encode_cursor(ms, key)) } else { None };
        Ok(ImagePage { images, next_cursor })
    }

    pub fn count_images(&self) -> Result<u64> {
        self.count_visible_images(Visible::All)
    }

    /// `tenant` holds the image with this key from now on; whether it did not before.
    pub fn hold_image(&self, key: i64, tenant: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM images WHERE key = ?1)", params![key], |r| r.get(0))?;
        if !exists {
            return Err(StoreError::NotFound(format!("image key {key}")));
        }
        let newly = insert_owner(&tx, Some(tenant), key)?;
        tx.commit()?;
        Ok(newly)
    }

    /// The images `visible` sees.
    pub fn count_visible_images(&self, visible: Visible<'_>) -> Result<u64> {
        let sql = format!("SELECT COUNT(*) FROM images WHERE {}", visible.condition("images.key"));
        let n: i64 = self.conn().query_row(&sql, rusqlite::params_from_iter(visible.args()), |r| r.get(0))?;
        Ok(n as u64)
    }

    /// A delete by one tenant (`Visible::To`): it lets go of the image, which is removed when no tenant holds
    /// it any more. `Visible::All` removes it whoever holds it. Bumps the generation when removed.
    pub fn release_image(&self, id: &str, visible: Visible<'_>) -> Result<Deleted> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(record) = query_visible_image(&tx, id, visible)? else {
            return Ok(Deleted::NotFound);
        };
        if let Visible::To(tenant) = visible {
            tx.execute("DELETE FROM image_owners WHERE tenant = ?1 AND image_key = ?2", params![tenant, record.key])?;
            let held: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM image_owners WHERE image_key = ?1)",
                params![record.key],
                |r| r.get(0),
            )?;
            if held {
                tx.commit()?;
                return Ok(Deleted::Released);
            }
        }
        tx.execute("DELETE FROM images WHERE key = ?1", params![record.key])?;
        withdraw_image_jobs(&tx, &record.id, "the image was deleted")?;
        bump_generation(&tx)?;
        tx.commit()?;
        Ok(Deleted::Removed(record))
    }

    /// Deletes the image, its tags and its embeddings, whoever holds it; returns the deleted record. Bumps
    /// the generation.
    pub fn delete_image(&self, id: &str) -> Result<Option<ImageRecord>> {
        match self.release_image(id, Visible::All)? {
            Deleted::Removed(record) => Ok(Some(record)),
            Deleted::NotFound | Deleted::Released => Ok(None),
        }
    }

    /// Replaces the tags (order kept, duplicates dropped); `false` when there is no such image.
    pub fn set_tags(&self, id: &str, tags: &[String]) -> Result<bool> {
        let tags = normalize_tags(tags);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(key) =
            tx.query_row("SELECT key FROM images WHERE id = ?1", params![id], |r| r.get::<_, i64>(0)).optional()?
        else {
            return Ok(false);
        };
        tx.execute(
            "UPDATE images SET tags = ?1 WHERE key = ?2",
            params![serde_json::to_string(&tags).expect("strings serialize"), key],
        )?;
        tx.execute("DELETE FROM image_tags WHERE image_key = ?1", params![key])?;
        insert_tag_rows(&tx, key, &tags)?;
        tx.commit()?;
        Ok(true)
    }
}

// --- rows -----------------------------------------------------------------------------------------

pub(super) const IMAGE_COLUMNS: &str = "key, id, sha256, mime, width, height, bytes, source_url, created_at, tags, \
     caption, colors, metadata, analysis, analysis_prompt, analysis_model, analyzed_at, moderation, hidden";
/// The columns of [`IMAGE_COLUMNS`]: a query that selects more finds them from this index on.
pub(super) const IMAGE_COLUMN_COUNT: usize = 19;

pub(super) struct RawImage {
    key: i64,
    id: String,
    sha256: String,
    mime: String,
    width: u32,
    height: u32,
    bytes: i64,
    source_url: Option<String>,
    created_ms: i64,
    tags: String,
    caption: Option<String>,
    colors: Option<String>,
    metadata: Option<String>,
    analysis: Option<String>,
    analysis_prompt: Option<String>,
    analysis_model: Option<String>,
    analyzed_ms: Option<i64>,
    moderation: Option<String>,
    hidden: bool,
}

impl RawImage {
    pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawImage {
            key: r.get(0)?,
            id: r.get(1)?,
            sha256: r.get(2)?,
            mime: r.get(3)?,
            width: r.get(4)?,
            height: r.get(5)?,
            bytes: r.get(6)?,
            source_url: r.get(7)?,
            created_ms: r.get(8)?,
            tags: r.get(9)?,
            caption: r.get(10)?,
            colors: r.get(11)?,
            metadata: r.get(12)?,
            analysis: r.get(13)?,
            analysis_prompt: r.get(14)?,
            analysis_model: r.get(15)?,
            analyzed_ms: r.get(16)?,
            moderation: r.get(17)?,
            hidden: r.get(18)?,
        })
    }

    /// The record and its creation time in ms.
    pub(super) fn into_record(self) -> Result<(ImageRecord, i64)> {
        let tags = serde_json::from_str(&self.tags).map_err(|e| {
            StoreError::Corrupt(format!("image {}: tags {:?} are not a JSON string array: {e}", self.id, self.tags))
        })?;
        let json = |what: &str, text: Option<&str>| -> Result<Option<serde_json::Value>> {
            text.map(|t| {
                serde_json::from_str(t)
                    .map_err(|e| StoreError::Corrupt(format!("image {}: {what} is not JSON: {e}", self.id)))
            })
            .transpose()
        };
        let colors = json("colors", self.colors.as_deref())?;
        let metadata = json("metadata", self.metadata.as_deref())?;
        let moderation = json("moderation", self.moderation.as_deref())?;
        let analysis = self.analysis.map(|text| ImageAnalysis {
            text,
            prompt: self.analysis_prompt.unwrap_or_default(),
            model: self.analysis_model.unwrap_or_default(),
            created_at: format_rfc3339_ms(self.analyzed_ms.unwrap_or(0)),
        });
        let record = ImageRecord {
            key: self.key,
            id: self.id,
            sha256: self.sha256,
            mime: self.mime,
            width: self.width,
            height: self.height,
            bytes: u64::try_from(self.bytes)
                .map_err(|_| StoreError::Corrupt(format!("image key {}: negative size {}", self.key, self.bytes)))?,
            source_url: self.source_url,
            created_at: format_rfc3339_ms(self.created_ms),
            tags,
            caption: self.caption,
            colors,
            metadata,
            analysis,
            moderation,
            hidden: self.hidden,
        };
        Ok((record, self.created_ms))
    }
}

pub(super) fn query_image(
    conn: &Connection,
    condition: &str,
    args: impl rusqlite::Params,
) -> Result<Option<ImageRecord>> {
    let raw = conn
        .query_row(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE {condition}"), args, RawImage::from_row)
        .optional()?;
    Ok(raw.map(RawImage::into_record).transpose()?.map(|(record, _)| record))
}

// --- helpers --------------------------------------------------------------------------------------

/// The image with public id `id` when `visible` sees it.
fn query_visible_image(conn: &Connection, id: &str, visible: Visible<'_>) -> Result<Option<ImageRecord>> {
    let condition = format!("id = ? AND {}", visible.condition("images.key"));
    query_image(conn, &condition, rusqlite::params_from_iter(visible.args_after(&[id])))
}

/// Records that `owner` holds the image; whether it did not before (`false` without an owner).
fn insert_owner(tx: &Transaction<'_>, owner: Option<&str>, key: i64) -> Result<bool> {
    let Some(owner) = owner else { return Ok(false) };
    Ok(tx.execute("INSERT OR IGNORE INTO image_owners (tenant, image_key) VALUES (?1, ?2)", params![owner, key])? > 0)
}

/// One image of [`Catalog::insert_images`], inside its transaction (inputs already validated).
fn insert_one(
    tx: &Transaction<'_>,
    image: &NewImage,
    model: &str,
    embedding: Option<&[f32]>,
) -> Result<(ImageRecord, bool)> {
    let bytes = image.bytes;
    if let Some(existing) = query_image(tx, "sha256 = ?1", params![image.sha256])? {
        if let Some(embedding) = embedding {
            let has: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM embeddings WHERE image_key = ?1 AND model = ?2)",
                params![existing.key, model],
                |r| r.get(0),
            )?;
            if !has {
                insert_vector(tx, "embeddings", existing.key, model, embedding)?;
                bump_generation(tx)?;
            }
        }
        if let Some(options) = &image.caption_options
            && existing.caption.is_none()
        {
            insert_job(tx, CAPTION_JOB, Some(&existing.id), 1, &caption_job_params(&existing.id, options))?;
        }
        if let Some(prompt) = &image.analysis_prompt
            && existing.analysis.as_ref().is_none_or(|a| &a.prompt != prompt)
        {
            insert_job(tx, ANALYSIS_JOB, Some(&existing.id), 1, &analysis_job_params(&existing.id, prompt))?;
        }
        let newly_held = insert_owner(tx, image.owner.as_deref(), existing.key)?;
        return Ok((existing, newly_held));
    }
    let Some(embedding) = embedding else {
        return Err(StoreError::Conflict(format!(
            "image {} was deleted while this request uploaded it again: retry",
            image.sha256
        )));
    };
    let created_ms = now_ms();
    let tags = normalize_tags(&image.tags);
    // The public id rule every target shares: same bytes, same id.
    let id = lens_core::ids::public_id(&image.sha256).to_string();
    let json = |v: &Option<serde_json::Value>| v.as_ref().map(serde_json::Value::to_string);
    tx.execute(
        "INSERT INTO images (id, sha256, mime, width, height, bytes, source_url, created_at, tags, colors, metadata,
                             moderation, hidden)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            id,
            image.sha256,
            image.mime,
            image.width,
            image.height,
            bytes as i64,
            image.source_url,
            created_ms,
            serde_json::to_string(&tags).expect("strings serialize"),
            json(&image.colors),
            json(&image.metadata),
            json(&image.moderation),
            image.hidden,
        ],
    )?;
    let key = tx.last_insert_rowid();
    insert_owner(tx, image.owner.as_deref(), key)?;
    insert_tag_rows(tx, key, &tags)?;
    insert_vector(tx, "embeddings", key, model, embedding)?;
    bump_generation(tx)?;
    if let Some(options) = &image.caption_options {
        insert_job(tx, CAPTION_JOB, Some(&id), 1, &caption_job_params(&id, options))?;
    }
    if let Some(prompt) = &image.analysis_prompt {
        insert_job(tx, ANALYSIS_JOB, Some(&id), 1, &analysis_job_params(&id, prompt))?;
    }
    let record = ImageRecord {
        key,
        id,
        sha256: image.sha256.clone(),
        mime: image.mime.clone(),
        width: image.width,
        height: image.height,
        bytes: image.bytes,
        source_url: image.source_url.clone(),
        created_at: format_rfc3339_ms(created_ms),
        tags,
        caption: None,
        colors: image.colors.clone(),
        metadata: image.metadata.clone(),
        analysis: None,
        moderation: image.moderation.clone(),
        hidden: image.hidden,
    };
    Ok((record, true))
}

fn insert_tag_rows(tx: &Transaction<'_>, key: i64, tags: &[String]) -> Result<()> {
    let mut stmt = tx.prepare_cached("INSERT INTO image_tags (tag, image_key) VALUES (?1, ?2)")?;
    for tag in tags {
        stmt.execute(params![tag, key])?;
    }
    Ok(())
}

/// Order kept, exact duplicates dropped.
fn normalize_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        if !out.contains(tag) {
            out.push(tag.clone());
        }
    }
    out
}

pub(super) fn validate_sha256(sha256: &str) -> Result<()> {
    if lens_core::ids::is_sha256_hex(sha256) {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!("sha256 {sha256:?} is not 64 lowercase hex characters")))
    }
}

/// 32 hex characters: created_at ms and key (a rowid), big-endian: the cursor of lists newest first.
pub(super) fn encode_cursor(ms: i64, key: i64) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&ms.to_be_bytes());
    b[8..].copy_from_slice(&key.to_be_bytes());
    hex::encode(b)
}

pub(super) fn decode_cursor(cursor: &str) -> Result<(i64, i64)> {
    let bad = || StoreError::InvalidInput(format!("malformed cursor {cursor:?}"));
    let b = hex::decode(cursor).map_err(|_| bad())?;
    let b: [u8; 16] = b.try_into().map_err(|_| bad())?;
    let ms = i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
    let key = i64::from_be_bytes(b[8..].try_into().expect("8 bytes"));
    Ok((ms, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        for (ms, key) in [(0, 0), (1_795_449_600_123, 42), (-5, i64::MAX)] {
            assert_eq!(decode_cursor(&encode_cursor(ms, key)).unwrap(), (ms, key));
        }
        assert!(matches!(decode_cursor("zz"), Err(StoreError::InvalidInput(_))));
        assert!(matches!(decode_cursor("00ff"), Err(StoreError::InvalidInput(_))));
    }
}
