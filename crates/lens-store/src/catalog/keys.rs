//! API keys: created with a random secret that is shown once and stored only as its sha256, listed,
//! revoked, and looked up by the secret a request presents. A key acts for a tenant (whose images,
//! jobs, chats and collections it sees) with a scope (`read`, `write`, `admin`).

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Catalog;
use crate::error::{Result, StoreError};
use crate::time::{format_rfc3339_ms, now_ms};

/// What a key may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Search, list and read.
    Read,
    /// Also upload, delete, caption, chat, analyse, start ingest jobs.
    Write,
    /// Also every tenant's data, index rebuilds, the sync feed and metrics.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// A key to create.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub name: &'a str,
    /// Whose data the key sees; keys of one tenant share it.
    pub tenant: &'a str,
    pub scope: Scope,
    /// Requests per second this key may make; `None`: the server's default.
    pub rate: Option<f64>,
}

/// A stored key (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub scope: Scope,
    pub rate: Option<f64>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// The prefix of every secret, so that a leaked one is recognisable (secret scanners, logs).
pub const SECRET_PREFIX: &str = "lens_";

/// The sha256 (hex) a secret is stored and looked up by. The secrets are 256 random bits, so a fast
/// hash is enough: there is nothing to guess a password from.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

const KEY_COLUMNS: &str = "id, name, tenant, scope, rate, created_at, revoked_at";

fn raw_key(r: &Row<'_>) -> rusqlite::Result<(String, String, String, String, Option<f64>, i64, Option<i64>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn to_record(row: (String, String, String, String, Option<f64>, i64, Option<i64>)) -> Result<KeyRecord> {
    let (id, name, tenant, scope, rate, created, revoked) = row;
    let scope = Scope::parse(&scope).ok_or_else(|| StoreError::Corrupt(format!("key {id}: scope {scope:?}")))?;
    Ok(KeyRecord {
        id,
        name,
        tenant,
        scope,
        rate,
        created_at: format_rfc3339_ms(created),
        revoked_at: revoked.map(format_rfc3339_ms),
    })
}

/// Names and tenants: printable, short.
fn check_label(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 64 || value.chars().any(|c| c.is_control()) {
        return Err(StoreError::InvalidInput(format!("{what} must be 1 to 64 bytes without control characters")));
    }
    Ok(())
}

impl Catalog {
    /// Creates a key; returns it and its secret (the only time the secret exists outside the caller).
    pub fn create_key(&self, key: &NewKey<'_>) -> Result<(KeyRecord, String)> {
        check_label("a key's name", key.name)?;
        check_label("a tenant", key.tenant)?;
        if let Some(rate) = key.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(StoreError::InvalidInput(format!("rate must be above 0 requests/s, not {rate}")));
        }
        let secret = format!("{SECRET_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
        let id = format!("key_{}", hex::encode(rand::random::<[u8; 8]>()));
        let conn = self.conn();
        conn.execute(
            "INSERT INTO api_keys (id, name, tenant, scope, secret_sha256, rate, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![id, key.name, key.tenant, key.scope.as_str(), secret_hash(&secret), key.rate, now_ms()],
        )?;
        let record = conn.query_row(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"), [&id], raw_key)?;
        Ok((to_record(record)?, secret))
    }

    /// Every key, revoked ones too, oldest first.
    pub fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"))?;
        let rows = stmt.query_map([], raw_key)?;
        rows.map(|r| to_record(r?)).collect()
    }

    /// Revokes a key (kept, so the list shows when); `false` when there is no such key or it was revoked.
    pub fn revoke_key(&self, id: &str) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now_ms()],
        )?;
        Ok(n > 0)
    }

    /// The live (not revoked) key with this secret.
    pub fn key_by_secret(&self, secret: &str) -> Result<Option<KeyRecord>> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE secret_sha256 = ?1 AND revoked_at IS NULL"),
                [secret_hash(secret)],
                raw_key,
            )
            .optional()?;
        row.map(to_record).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_by_its_secret_until_revoked_and_only_its_hash_is_stored() {
        let catalog = Catalog::open_in_memory().unwrap();
        let (key, secret) =
            catalog.create_key(&NewKey { name: "ci", tenant: "acme", scope: Scope::Write, rate: Some(5.0) }).unwrap();
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == SECRET_PREFIX.len() + 64);
        assert_eq!((key.tenant.as_str(), key.scope, key.rate), ("acme", Scope::Write, Some(5.0)));
        assert_eq!(catalog.key_by_secret(&secret).unwrap().as_ref(), Some(&key));
        assert_eq!(catalog.key_by_secret(&format!("{secret}x")).unwrap(), None);
        let stored: String = catalog.conn().query_row("SELECT secret_sha256 FROM api_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, secret_hash(&secret));
        assert!(!stored.contains(&secret[SECRET_PREFIX.len()..]));

        assert!(catalog.revoke_key(&key.id).unwrap());
        assert!(!catalog.revoke_key(&key.id).unwrap(), "already revoked");
        assert_eq!(catalog.key_by_secret(&secret).unwrap(), None);
        let listed = catalog.list_keys().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].revoked_at.is_some());
    }

    #[test]
    fn bad_names_rates_and_two_keys_get_two_secrets() {
        let catalog = Catalog::open_in_memory().unwrap();
        let new = |name, rate| NewKey { name, tenant: "t", scope: Scope::Read, rate };
        assert!(catalog.create_key(&new("", None)).is_err());
        assert!(catalog.create_key(&new("a\nb", None)).is_err());
        assert!(catalog.create_key(&new("a", Some(0.0))).is_err());
        assert!(catalog.create_key(&new("a", Some(f64::NAN))).is_err());
        let (a, sa) = catalog.create_key(&new("a", None)).unwrap();
        let (b, sb) = catalog.create_key(&new("a", None)).unwrap();
        assert_ne!(a.id, b.id);
        assert_ne!(sa, sb);
        assert_eq!(Scope::parse("admin"), Some(Scope::Admin));
        assert!(Scope::Read < Scope::Write && Scope::Write < Scope::Admin);
    }
}
