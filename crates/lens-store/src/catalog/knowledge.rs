//! The knowledge base: named collections of text documents, each cut into chunks (the caller chunks), with
//! the chunks' embeddings by a text model and a keyword index over them. A document added again under its
//! id replaces the old one (its chunks and their vectors with it); deleting a collection deletes its
//! documents. Retrieval reads keyword matches (bm25) and the collection's chunk vectors; the ranking that
//! blends them is lens-core's.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::captions::fts_query;
use super::vectors::{decode_vector, encode_vector, validate_embedding};
use super::{Catalog, Visible};
use crate::error::{Result, StoreError};
use crate::time::{format_rfc3339_ms, now_ms};

/// A document to store with its chunks (and, with a text model, one embedding per chunk).
#[derive(Debug, Clone)]
pub struct NewDocument<'a> {
    pub id: &'a str,
    pub title: Option<&'a str>,
    pub text: &'a str,
    pub metadata: Option<&'a serde_json::Value>,
    pub chunks: &'a [String],
    /// One per chunk, or empty (no text model).
    pub embeddings: &'a [Vec<f32>],
}

/// A collection and its size: the API's own type.
pub use lens_core::api::CollectionInfo;

/// A stored chunk with its document.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRecord {
    pub key: i64,
    pub collection: String,
    pub document_id: String,
    pub title: Option<String>,
    /// Position of the chunk in its document, from 0.
    pub ordinal: u32,
    pub text: String,
    pub metadata: Option<serde_json::Value>,
}

impl Catalog {
    /// Stores `documents` in `collection` (created when new, for `owner`) in one transaction: all or nothing.
    /// Each replaces a document of the same id. `model` names the text model of the embeddings. With an
    /// owner, a collection of that name that is not the owner's is [`StoreError::Conflict`] (names are global).
    pub fn add_documents(
        &self,
        collection: &str,
        documents: &[NewDocument<'_>],
        model: Option<&str>,
        owner: Option<&str>,
    ) -> Result<u64> {
        for d in documents {
            if !d.embeddings.is_empty() {
                if d.embeddings.len() != d.chunks.len() {
                    return Err(StoreError::InvalidInput(format!("document {}: one embedding per chunk", d.id)));
                }
                let model = model.ok_or_else(|| StoreError::InvalidInput("embeddings without a model".into()))?;
                for e in d.embeddings {
                    validate_embedding(model, e)?;
                }
            }
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        tx.execute(
            "INSERT OR IGNORE INTO collections (name, created_at, tenant) VALUES (?1, ?2, ?3)",
            params![collection, now, owner],
        )?;
        if owner.is_some() {
            let holder: Option<String> =
                tx.query_row("SELECT tenant FROM collections WHERE name = ?1", params![collection], |r| r.get(0))?;
            if holder.as_deref() != owner {
                return Err(StoreError::Conflict(format!("the collection name {collection:?} is taken")));
            }
        }
        let mut chunks = 0;
        for d in documents {
            tx.execute("DELETE FROM documents WHERE collection = ?1 AND id = ?2", params![collection, d.id])?;
            tx.execute(
                "INSERT INTO documents (collection, id, title, text, metadata, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![collection, d.id, d.title, d.text, d.metadata.map(|m| m.to_string()), now],
            )?;
            let document_key = tx.last_insert_rowid();
            for (ordinal, text) in d.chunks.iter().enumerate() {
                tx.execute(
                    "INSERT INTO chunks (document_key, ordinal, text) VALUES (?1, ?2, ?3)",
                    params![document_key, ordinal as i64, text],
                )?;
                let chunk_key = tx.last_insert_rowid();
                if let (Some(e), Some(model)) = (d.embeddings.get(ordinal), model) {
                    tx.execute(
                        "INSERT INTO chunk_embeddings (chunk_key, model, dim, vector) VALUES (?1, ?2, ?3, ?4)",
                        params![chunk_key, model, e.len() as i64, encode_vector(e)],
                    )?;
                }
                chunks += 1;
            }
        }
        tx.commit()?;
        Ok(chunks)
    }

    /// Every collection `visible` sees, by name, with its counts.
    pub fn list_collections(&self, visible: Visible<'_>) -> Result<Vec<CollectionInfo>> {
        self.collections_where(None, visible)
    }

    /// One collection's counts; `None` when `visible` sees none by that name.
    pub fn collection(&self, name: &str, visible: Visible<'_>) -> Result<Option<CollectionInfo>> {
        Ok(self.collections_where(Some(name), visible)?.pop())
    }

    /// Whether `visible` sees a collection by that name (no counting: search asks this on every query).
    pub fn has_collection(&self, name: &str, visible: Visible<'_>) -> Result<bool> {
        let sql = format!("SELECT 1 FROM collections WHERE name = ? AND {}", visible.tenant_is("tenant"));
        let args = visible.args_after(&[name]);
        let found = self.conn().query_row(&sql, rusqlite::params_from_iter(args), |_| Ok(())).optional()?;
        Ok(found.is_some())
    }

    /// Every collection, or the one named `name`, with its counts.
    fn collections_where(&self, name: Option<&str>, visible: Visible<'_>) -> Result<Vec<CollectionInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT c.name, c.created_at,
                    (SELECT COUNT(*) FROM documents d WHERE d.collection = c.name),
                    (SELECT COUNT(*) FROM chunks k JOIN documents d ON d.key = k.document_key WHERE d.collection = c.name)
             FROM collections c WHERE (?1 IS NULL OR c.name = ?1) AND {} ORDER BY c.name",
            visible.tenant_is("c.tenant").replace('?', "?2")
        ))?;
        let mut args: Vec<rusqlite::types::Value> = vec![name.map(str::to_string).into()];
        args.extend(visible.args());
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
            Ok(CollectionInfo {
                name: r.get(0)?,
                created_at: format_rfc3339_ms(r.get(1)?),
                documents: r.get::<_, i64>(2)? as u64,
                chunks: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes a collection `visible` sees, with its documents; `false` when there was none.
    pub fn delete_collection(&self, name: &str, visible: Visible<'_>) -> Result<bool> {
        let sql = format!("DELETE FROM collections WHERE name = ? AND {}", visible.tenant_is("tenant"));
        Ok(self.conn().execute(&sql, rusqlite::params_from_iter(visible.args_after(&[name])))? > 0)
    }

    /// Deletes one document of a collection `visible` sees; `false` when there was none.
    pub fn delete_document(&self, collection: &str, id: &str, visible: Visible<'_>) -> Result<bool> {
        let sql = format!(
            "DELETE FROM documents WHERE collection = ? AND id = ?
               AND EXISTS (SELECT 1 FROM collections c WHERE c.name = documents.collection AND {})",
            visible.tenant_is("c.tenant")
        );
        Ok(self.conn().execute(&sql, rusqlite::params_from_iter(visible.args_after(&[collection, id])))? > 0)
    }

    /// Keyword search over a collection's chunks (the same query rules as [`Catalog::search_texts`]):
    /// `(chunk key, -bm25)`, best first.
    pub fn search_chunks(&self, collection: &str, query: &str, limit: usize) -> Result<Vec<(i64, f64)>> {
        let Some(fts) = fts_query(query) else { return Ok(Vec::new()) };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT chunks_fts.rowid, bm25(chunks_fts) FROM chunks_fts
               JOIN chunks k ON k.key = chunks_fts.rowid JOIN documents d ON d.key = k.document_key
             WHERE chunks_fts MATCH ?1 AND d.collection = ?2
             ORDER BY bm25(chunks_fts), chunks_fts.rowid LIMIT ?3",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows =
            stmt.query_map(params![fts, collection, limit], |r| Ok((r.get::<_, i64>(0)?, -r.get::<_, f64>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every chunk vector of a collection by text model `model`: `(chunk key, vector)`.
    pub fn chunk_embeddings(&self, collection: &str, model: &str) -> Result<Vec<(i64, Vec<f32>)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT e.chunk_key, e.dim, e.vector FROM chunk_embeddings e
               JOIN chunks k ON k.key = e.chunk_key JOIN documents d ON d.key = k.document_key
             WHERE d.collection = ?1 AND e.model = ?2",
        )?;
        let rows = stmt.query_map(params![collection, model], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, dim, blob) = row?;
            out.push((key, decode_vector(key, model, dim, &blob)?));
        }
        Ok(out)
    }

    /// The chunks with these keys and their documents, in the order asked; missing keys are skipped.
    pub fn chunks_by_keys(&self, keys: &[i64]) -> Result<Vec<ChunkRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT k.key, d.collection, d.id, d.title, k.ordinal, k.text, d.metadata
             FROM chunks k JOIN documents d ON d.key = k.document_key WHERE k.key = ?1",
        )?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let row = stmt
                .query_row(params![key], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                    ))
                })
                .optional()?;
            if let Some((key, collection, document_id, title, ordinal, text, metadata)) = row {
                let metadata = metadata
                    .map(|m| serde_json::from_str(&m))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("document {document_id}: metadata is not JSON: {e}")))?;
                out.push(ChunkRecord { key, collection, document_id, title, ordinal: ordinal as u32, text, metadata });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc<'a>(id: &'a str, text: &'a str, chunks: &'a [String], embeddings: &'a [Vec<f32>]) -> NewDocument<'a> {
        NewDocument { id, title: Some("T"), text, metadata: None, chunks, embeddings }
    }

    /// Documents are stored with their chunks and vectors, found by keywords within their collection only,
    /// replaced under the same id, and deleted alone or with their collection (keywords and vectors too).
    #[test]
    fn collections_hold_chunked_documents_found_by_keywords_and_vectors() {
        let catalog = Catalog::open_in_memory().unwrap();
        let aspirin = vec!["Aspirin reduces fever.".to_string(), "It thins the blood.".to_string()];
        let insulin = vec!["Insulin lowers blood glucose.".to_string()];
        let vectors = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        assert_eq!(
            catalog
                .add_documents(
                    "medical",
                    &[doc("a", "…", &aspirin, &vectors), doc("i", "…", &insulin, &vectors[..1])],
                    Some("m"),
                    None
                )
                .unwrap(),
            3
        );
        catalog.add_documents("other", &[doc("x", "…", &insulin, &[])], None, None).unwrap();
        let found = catalog.search_chunks("medical", "blood", 10).unwrap();
        assert_eq!(found.len(), 2, "both blood chunks of `medical`, not `other`'s");
        let records = catalog.chunks_by_keys(&found.iter().map(|f| f.0).collect::<Vec<_>>()).unwrap();
        assert!(records.iter().all(|r| r.collection == "medical" && r.title.as_deref() == Some("T")));
        assert_eq!(catalog.chunk_embeddings("medical", "m").unwrap().len(), 3);
        assert!(catalog.chunk_embeddings("other", "m").unwrap().is_empty());
        let info = catalog.collection("medical", Visible::All).unwrap().unwrap();
        assert_eq!((info.documents, info.chunks), (2, 3));
        assert_eq!(catalog.collection("other", Visible::All).unwrap().map(|c| (c.documents, c.chunks)), Some((1, 1)));
        assert!(
            catalog.has_collection("medical", Visible::All).unwrap()
                && !catalog.has_collection("nope", Visible::All).unwrap()
        );

        // The same id replaces: old chunks, words and vectors go.
        let new = vec!["Aspirin is an NSAID.".to_string()];
        catalog.add_documents("medical", &[doc("a", "…", &new, &vectors[..1])], Some("m"), None).unwrap();
        assert!(catalog.search_chunks("medical", "fever", 10).unwrap().is_empty());
        assert_eq!(catalog.search_chunks("medical", "nsaid", 10).unwrap().len(), 1);
        assert_eq!(catalog.chunk_embeddings("medical", "m").unwrap().len(), 2);

        assert!(catalog.delete_document("medical", "i", Visible::All).unwrap());
        assert!(!catalog.delete_document("medical", "i", Visible::All).unwrap());
        assert!(catalog.delete_collection("medical", Visible::All).unwrap());
        assert!(!catalog.has_collection("medical", Visible::All).unwrap());
        assert!(catalog.search_chunks("medical", "nsaid", 10).unwrap().is_empty());
        assert_eq!(
            catalog.list_collections(Visible::All).unwrap().iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["other"]
        );
        // One embedding per chunk, or none.
        assert!(catalog.add_documents("m2", &[doc("a", "…", &aspirin, &vectors[..1])], Some("m"), None).is_err());
        assert!(catalog.collection("m2", Visible::All).unwrap().is_none(), "a refused upload creates nothing");
    }

    /// A tenant's collection is seen and changed only by that tenant; its name is refused to another.
    #[test]
    fn collections_belong_to_their_tenant() {
        let catalog = Catalog::open_in_memory().unwrap();
        let chunks = vec!["Aspirin reduces fever.".to_string()];
        catalog.add_documents("notes", &[doc("a", "…", &chunks, &[])], None, Some("ann")).unwrap();
        let (ann, bob) = (Visible::To("ann"), Visible::To("bob"));
        assert!(matches!(
            catalog.add_documents("notes", &[doc("b", "…", &chunks, &[])], None, Some("bob")),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(catalog.collection("notes", ann).unwrap().map(|c| c.documents), Some(1), "bob's add was undone");
        assert!(catalog.collection("notes", bob).unwrap().is_none() && !catalog.has_collection("notes", bob).unwrap());
        assert!(catalog.list_collections(bob).unwrap().is_empty());
        assert!(
            !catalog.delete_document("notes", "a", bob).unwrap() && !catalog.delete_collection("notes", bob).unwrap()
        );
        assert_eq!(catalog.list_collections(Visible::All).unwrap().len(), 1);
        assert!(
            catalog.delete_document("notes", "a", ann).unwrap() && catalog.delete_collection("notes", ann).unwrap()
        );
    }
}
