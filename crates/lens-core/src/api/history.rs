//! History: the chats and analyses a server answered, kept with the request's `user` (listed, read and
//! deleted through `/v1/chats`). A request with `"store": false`, or a server with `--chat-history off`,
//! keeps nothing.

use serde::{Deserialize, Serialize};

use super::Usage;

/// One answered request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredChat {
    /// The answer's id (`chatcmpl-…`).
    pub id: String,
    /// `chat` (`/v1/chat/completions`) or `analysis` (`/v1/analyze`).
    pub kind: String,
    /// The request's `user`.
    pub user: Option<String>,
    pub model: String,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
    /// The conversation as sent, images as references: `data:` URLs are replaced by their size and sha256.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub messages: serde_json::Value,
    /// The assistant's answer.
    pub answer: String,
    pub finish_reason: String,
    pub usage: Usage,
}

/// `GET /v1/chats`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatList {
    pub chats: Vec<StoredChat>,
    /// The `cursor` of the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// `GET /v1/chats` and `DELETE /v1/chats` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ChatsQuery {
    /// Only this user's (`DELETE` needs it).
    pub user: Option<String>,
    /// `chat` or `analysis`.
    pub kind: Option<String>,
    /// 1 to 200 (default 20).
    pub limit: Option<usize>,
    /// A `next_cursor` of an earlier page.
    pub cursor: Option<String>,
}

/// `DELETE /v1/chats?user=…`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeletedChats {
    pub deleted: u64,
}
