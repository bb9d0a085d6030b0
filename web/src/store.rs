//! The local index's persistence: IndexedDB database `lens`, so images survive a reload.
//!
//! Store `images` (key: sha256) holds one record per image: the item's metadata (JSON), the model id
//! the embedding came from, the embedding (`Float32Array`), the thumbnail (JPEG Blob) and the original
//! file (Blob, kept so it can be sent to a sync server later; absent for images pulled from one).
//! Store `settings` holds small strings (sync server, cursor). Each operation is one transaction that
//! is awaited to its commit.

use js_sys::{Float32Array, Object, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Blob, IdbDatabase, IdbFactory, IdbObjectStoreParameters, IdbOpenDbRequest, IdbTransactionMode};

use crate::js::{describe, exception_name, global, idb_commit, idb_request};
use crate::protocol::Item;

const VERSION: u32 = 1;
const IMAGES: &str = "images";
const SETTINGS: &str = "settings";

/// Why a write failed: the quota is full (the user can free space), or anything else.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    Quota(String),
    Other(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Quota(m) => write!(f, "storage is full ({m}): delete some images or free space for this site"),
            StoreError::Other(m) => write!(f, "storage: {m}"),
        }
    }
}

fn classify(e: JsValue) -> StoreError {
    match exception_name(&e).as_deref() {
        Some("QuotaExceededError") => StoreError::Quota(describe(&e)),
        _ => StoreError::Other(describe(&e)),
    }
}

/// One stored image.
#[derive(Debug, Clone)]
pub struct Record {
    pub item: Item,
    /// `source.id` of the artifact that made the embedding.
    pub model: String,
    pub embedding: Vec<f32>,
    pub thumb: Blob,
    pub original: Option<Blob>,
}

/// An open `lens` database.
#[derive(Debug)]
pub struct Store {
    db: IdbDatabase,
}

impl Store {
    /// Opens (creating or upgrading) the database `name`.
    pub async fn open(name: &str) -> Result<Store, String> {
        let factory: IdbFactory = global("indexedDB")?;
        let request: IdbOpenDbRequest = factory.open_with_u32(name, VERSION).map_err(|e| describe(&e))?;
        let on_upgrade = Closure::once_into_js(move |event: web_sys::Event| {
            let Some(req) = event.target().and_then(|t| t.dyn_into::<IdbOpenDbRequest>().ok()) else { return };
            let Ok(db) = req.result().and_then(|r| r.dyn_into::<IdbDatabase>()) else { return };
            let names = db.object_store_names();
            if !names.contains(IMAGES) {
                let params = IdbObjectStoreParameters::new();
                params.set_key_path(&JsValue::from_str("sha256"));
                let _ = db.create_object_store_with_optional_parameters(IMAGES, &params);
            }
            if !names.contains(SETTINGS) {
                let _ = db.create_object_store(SETTINGS);
            }
        });
        request.set_onupgradeneeded(Some(on_upgrade.unchecked_ref()));
        let db = idb_request(&request).await.map_err(|e| format!("cannot open the local index: {}", describe(&e)))?;
        Ok(Store { db: db.unchecked_into() })
    }

    /// Closes the connection (a later `open` sees every committed write).
    pub fn close(self) {
        self.db.close();
    }

    fn tx(
        &self,
        store: &str,
        mode: IdbTransactionMode,
    ) -> Result<(web_sys::IdbTransaction, web_sys::IdbObjectStore), StoreError> {
        let tx = self.db.transaction_with_str_and_mode(store, mode).map_err(classify)?;
        let os = tx.object_store(store).map_err(classify)?;
        Ok((tx, os))
    }

    /// Writes (or replaces) the record of one image; returns once it is committed.
    pub async fn put(&self, record: &Record) -> Result<(), StoreError> {
        let value = Object::new();
        let set = |k: &str, v: &JsValue| Reflect::set(&value, &JsValue::from_str(k), v).map(|_| ());
        let item = serde_json::to_string(&record.item).map_err(|e| StoreError::Other(e.to_string()))?;
        set("sha256", &JsValue::from_str(&record.item.sha256))
            .and(set("item", &JsValue::from_str(&item)))
            .and(set("model", &JsValue::from_str(&record.model)))
            .and(set("embedding", &Float32Array::from(record.embedding.as_slice())))
            .and(set("thumb", &record.thumb))
            .and(set("original", record.original.as_ref().map(JsValue::from).as_ref().unwrap_or(&JsValue::UNDEFINED)))
            .map_err(classify)?;
        let (tx, os) = self.tx(IMAGES, IdbTransactionMode::Readwrite)?;
        let request = os.put(&value).map_err(classify)?;
        idb_request(&request).await.map_err(classify)?;
        idb_commit(&tx).await.map_err(classify)
    }

    /// Every stored image (unordered). Records that do not parse are skipped.
    pub async fn all(&self) -> Result<Vec<Record>, StoreError> {
        let (_tx, os) = self.tx(IMAGES, IdbTransactionMode::Readonly)?;
        let request = os.get_all().map_err(classify)?;
        let values: js_sys::Array = idb_request(&request).await.map_err(classify)?.unchecked_into();
        Ok(values.iter().filter_map(|v| parse_record(&v)).collect())
    }

    /// One stored image.
    pub async fn get(&self, sha256: &str) -> Result<Option<Record>, StoreError> {
        let (_tx, os) = self.tx(IMAGES, IdbTransactionMode::Readonly)?;
        let request = os.get(&JsValue::from_str(sha256)).map_err(classify)?;
        let value = idb_request(&request).await.map_err(classify)?;
        Ok(parse_record(&value))
    }

    /// Removes one image (nothing happens when it is not there).
    pub async fn delete(&self, sha256: &str) -> Result<(), StoreError> {
        let (tx, os) = self.tx(IMAGES, IdbTransactionMode::Readwrite)?;
        let request = os.delete(&JsValue::from_str(sha256)).map_err(classify)?;
        idb_request(&request).await.map_err(classify)?;
        idb_commit(&tx).await.map_err(classify)
    }

    pub async fn set_setting(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        let (tx, os) = self.tx(SETTINGS, IdbTransactionMode::Readwrite)?;
        let request = match value {
            Some(v) => os.put_with_key(&JsValue::from_str(v), &JsValue::from_str(key)),
            None => os.delete(&JsValue::from_str(key)),
        }
        .map_err(classify)?;
        idb_request(&request).await.map_err(classify)?;
        idb_commit(&tx).await.map_err(classify)
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let (_tx, os) = self.tx(SETTINGS, IdbTransactionMode::Readonly)?;
        let request = os.get(&JsValue::from_str(key)).map_err(classify)?;
        Ok(idb_request(&request).await.map_err(classify)?.as_string())
    }
}

fn parse_record(v: &JsValue) -> Option<Record> {
    let get = |k: &str| Reflect::get(v, &JsValue::from_str(k)).ok();
    let item: Item = serde_json::from_str(&get("item")?.as_string()?).ok()?;
    Some(Record {
        item,
        model: get("model")?.as_string()?,
        embedding: get("embedding")?.dyn_into::<Float32Array>().ok()?.to_vec(),
        thumb: get("thumb")?.dyn_into::<Blob>().ok()?,
        original: get("original").and_then(|o| o.dyn_into::<Blob>().ok()),
    })
}
