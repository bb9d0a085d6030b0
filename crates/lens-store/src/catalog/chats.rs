//! The history of answered chats and analyses: stored once answered, listed newest first (all, or one
//! user's, one kind's) with opaque cursors, read and deleted one by one or a user's all at once. Oldest
//! entries are dropped past a bound, so the history cannot fill the disk.

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::images::{decode_cursor, encode_cursor};
use super::{Catalog, Visible};
use crate::error::{Result, StoreError};
use crate::time::{format_rfc3339_ms, now_ms};

pub use lens_core::api::StoredChat as ChatRecord;

/// A chat or analysis to keep.
#[derive(Debug, Clone)]
pub struct NewChat<'a> {
    pub id: &'a str,
    /// `chat` or `analysis`.
    pub kind: &'a str,
    pub user: Option<&'a str>,
    /// The tenant of the key that asked (see [`Visible`]).
    pub tenant: Option<&'a str>,
    pub model: &'a str,
    pub messages: &'a serde_json::Value,
    pub answer: &'a str,
    pub finish_reason: &'a str,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// One page of [`Catalog::list_chats`].
#[derive(Debug, Clone)]
pub struct ChatPage {
    pub chats: Vec<ChatRecord>,
    pub next_cursor: Option<String>,
}

const CHAT_COLUMNS: &str =
    "rowid, id, kind, user, model, messages, answer, finish_reason, prompt_tokens, completion_tokens, created_at";

impl Catalog {
    /// Keeps `chat`, then drops the oldest entries past `max_entries`.
    pub fn store_chat(&self, chat: &NewChat<'_>, max_entries: u64) -> Result<()> {
        if !matches!(chat.kind, "chat" | "analysis") {
            return Err(StoreError::InvalidInput(format!("chat kind {:?}", chat.kind)));
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR REPLACE INTO chats (id, kind, user, model, messages, answer, finish_reason, prompt_tokens,
                                           completion_tokens, created_at, tenant)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                chat.id,
                chat.kind,
                chat.user,
                chat.model,
                chat.messages.to_string(),
                chat.answer,
                chat.finish_reason,
                chat.prompt_tokens as i64,
                chat.completion_tokens as i64,
                now_ms(),
                chat.tenant,
            ],
        )?;
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM chats", [], |r| r.get(0))?;
        let over = count - i64::try_from(max_entries).unwrap_or(i64::MAX);
        if over > 0 {
            tx.execute(
                "DELETE FROM chats WHERE rowid IN (SELECT rowid FROM chats ORDER BY created_at, rowid LIMIT ?1)",
                params![over],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Newest first, `limit` per page, optionally one user's and one kind's, those `visible` sees; `cursor` is
    /// the previous page's `next_cursor`.
    pub fn list_chats(
        &self,
        user: Option<&str>,
        kind: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
        visible: Visible<'_>,
    ) -> Result<ChatPage> {
        let mut sql = format!("SELECT {CHAT_COLUMNS} FROM chats WHERE {}", visible.tenant_is("tenant"));
        let mut args: Vec<rusqlite::types::Value> = visible.args();
        if let Some(cursor) = cursor {
            let (ms, rowid) = decode_cursor(cursor)?;
            sql.push_str(" AND (created_at, rowid) < (?, ?)");
            args.extend([ms.into(), rowid.into()]);
        }
        if let Some(user) = user {
            sql.push_str(" AND user = ?");
            args.push(user.to_string().into());
        }
        if let Some(kind) = kind {
            sql.push_str(" AND kind = ?");
            args.push(kind.to_string().into());
        }
        sql.push_str(" ORDER BY created_at DESC, rowid DESC LIMIT ?");
        args.push(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX).into());
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), raw_chat)?;
        let mut chats = Vec::new();
        let mut last = None;
        let mut more = false;
        for row in rows {
            if chats.len() == limit {
                more = true;
                break;
            }
            let (rowid, ms, record) = row?;
            last = Some((ms, rowid));
            chats.push(record?);
        }
        let next_cursor = if more { last.map(|(ms, rowid)| encode_cursor(ms, rowid)) } else { None };
        Ok(ChatPage { chats, next_cursor })
    }

    /// The chat with this id, when `visible` sees it.
    pub fn chat(&self, id: &str, visible: Visible<'_>) -> Result<Option<ChatRecord>> {
        let conn = self.conn();
        let sql = format!("SELECT {CHAT_COLUMNS} FROM chats WHERE id = ? AND {}", visible.tenant_is("tenant"));
        let row = conn.query_row(&sql, rusqlite::params_from_iter(visible.args_after(&[id])), raw_chat).optional()?;
        row.map(|(_, _, record)| record).transpose()
    }

    /// Deletes one chat `visible` sees; `false` when there was none.
    pub fn delete_chat(&self, id: &str, visible: Visible<'_>) -> Result<bool> {
        let sql = format!("DELETE FROM chats WHERE id = ? AND {}", visible.tenant_is("tenant"));
        Ok(self.conn().execute(&sql, rusqlite::params_from_iter(visible.args_after(&[id])))? > 0)
    }

    /// Deletes every chat of `user` that `visible` sees; how many.
    pub fn delete_user_chats(&self, user: &str, visible: Visible<'_>) -> Result<u64> {
        let sql = format!("DELETE FROM chats WHERE user = ? AND {}", visible.tenant_is("tenant"));
        Ok(self.conn().execute(&sql, rusqlite::params_from_iter(visible.args_after(&[user])))? as u64)
    }
}

/// (rowid, created ms, the record) of a row of [`CHAT_COLUMNS`].
fn raw_chat(r: &Row<'_>) -> rusqlite::Result<(i64, i64, Result<ChatRecord>)> {
    let id: String = r.get(1)?;
    let messages: String = r.get(5)?;
    let created_ms: i64 = r.get(10)?;
    let prompt_tokens: i64 = r.get(8)?;
    let completion_tokens: i64 = r.get(9)?;
    let messages = serde_json::from_str(&messages)
        .map_err(|e| StoreError::Corrupt(format!("chat {id}: messages are not JSON: {e}")));
    let record = messages.map(|messages| ChatRecord {
        kind: r.get(2).unwrap_or_default(),
        user: r.get(3).unwrap_or_default(),
        model: r.get(4).unwrap_or_default(),
        answer: r.get(6).unwrap_or_default(),
        finish_reason: r.get(7).unwrap_or_default(),
        usage: lens_core::api::Usage::new(prompt_tokens.max(0) as usize, completion_tokens.max(0) as usize),
        created_at: format_rfc3339_ms(created_ms),
        messages,
        id: id.clone(),
    });
    Ok((r.get(0)?, created_ms, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat<'a>(id: &'a str, user: Option<&'a str>, kind: &'a str, messages: &'a serde_json::Value) -> NewChat<'a> {
        NewChat {
            id,
            kind,
            user,
            tenant: None,
            model: "llava",
            messages,
            answer: "A rocket.",
            finish_reason: "stop",
            prompt_tokens: 12,
            completion_tokens: 3,
        }
    }

    /// Kept chats come back whole, newest first, a page at a time, by user and kind; deleting one or a
    /// user's all leaves the others; past the bound the oldest go.
    #[test]
    fn the_history_lists_reads_deletes_and_stays_bounded() {
        let catalog = Catalog::open_in_memory().unwrap();
        let messages = serde_json::json!([{"role": "user", "content": "Hi"}]);
        for (i, (user, kind)) in
            [(Some("ann"), "chat"), (Some("bob"), "chat"), (Some("ann"), "analysis"), (None, "chat")].iter().enumerate()
        {
            catalog.store_chat(&chat(&format!("chatcmpl-{i}"), *user, kind, &messages), 100).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let one = catalog.chat("chatcmpl-0", Visible::All).unwrap().unwrap();
        assert_eq!((one.user.as_deref(), one.kind.as_str(), one.answer.as_str()), (Some("ann"), "chat", "A rocket."));
        assert_eq!((one.messages.clone(), one.usage.total_tokens), (messages.clone(), 15));
        let ids = |page: &ChatPage| page.chats.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        let first = catalog.list_chats(None, None, 3, None, Visible::All).unwrap();
        assert_eq!(ids(&first), ["chatcmpl-3", "chatcmpl-2", "chatcmpl-1"]);
        let rest = catalog.list_chats(None, None, 3, first.next_cursor.as_deref(), Visible::All).unwrap();
        assert_eq!((ids(&rest), rest.next_cursor), (vec!["chatcmpl-0".to_string()], None));
        assert_eq!(
            ids(&catalog.list_chats(Some("ann"), None, 10, None, Visible::All).unwrap()),
            ["chatcmpl-2", "chatcmpl-0"]
        );
        assert_eq!(
            ids(&catalog.list_chats(Some("ann"), Some("analysis"), 10, None, Visible::All).unwrap()),
            ["chatcmpl-2"]
        );
        assert!(
            catalog.list_chats(None, None, 1, Some("zz"), Visible::All).is_err(),
            "a cursor this server did not give"
        );

        assert!(catalog.delete_chat("chatcmpl-1", Visible::All).unwrap());
        assert!(!catalog.delete_chat("chatcmpl-1", Visible::All).unwrap());
        assert_eq!(catalog.delete_user_chats("ann", Visible::All).unwrap(), 2);
        assert_eq!(ids(&catalog.list_chats(None, None, 10, None, Visible::All).unwrap()), ["chatcmpl-3"]);
        for i in 10..13 {
            catalog.store_chat(&chat(&format!("chatcmpl-{i}"), None, "chat", &messages), 2).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(
            ids(&catalog.list_chats(None, None, 10, None, Visible::All).unwrap()),
            ["chatcmpl-12", "chatcmpl-11"]
        );
        assert!(catalog.store_chat(&chat("x", None, "other", &messages), 2).is_err());
    }

    /// A tenant's chats are seen, listed and deleted only by that tenant (and `Visible::All`).
    #[test]
    fn chats_belong_to_their_tenant() {
        let catalog = Catalog::open_in_memory().unwrap();
        let messages = serde_json::json!([]);
        catalog
            .store_chat(&NewChat { tenant: Some("a"), ..chat("chatcmpl-a", Some("u"), "chat", &messages) }, 10)
            .unwrap();
        catalog
            .store_chat(&NewChat { tenant: Some("b"), ..chat("chatcmpl-b", Some("u"), "chat", &messages) }, 10)
            .unwrap();
        let (a, b) = (Visible::To("a"), Visible::To("b"));
        assert!(catalog.chat("chatcmpl-a", a).unwrap().is_some());
        assert!(catalog.chat("chatcmpl-a", b).unwrap().is_none());
        let listed = catalog.list_chats(Some("u"), None, 10, None, b).unwrap();
        assert_eq!(listed.chats.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["chatcmpl-b"]);
        assert!(!catalog.delete_chat("chatcmpl-a", b).unwrap());
        assert_eq!(catalog.delete_user_chats("u", b).unwrap(), 1);
        assert!(catalog.chat("chatcmpl-a", Visible::All).unwrap().is_some());
    }
}
