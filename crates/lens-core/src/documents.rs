//! Text documents for the knowledge base, as pure code: uploads parsed from JSON, JSON Lines or CSV into
//! [`Document`]s within limits, collection names checked, and texts cut into overlapping chunks of words
//! (the unit that is embedded, keyword-indexed and retrieved).

use serde::Deserialize;

use crate::api::RequestError;

/// Most documents in one upload.
pub const MAX_DOCUMENTS: usize = 10_000;
/// Longest document text, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Longest document id or title, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;
/// Longest collection name.
pub const MAX_COLLECTION_NAME: usize = 64;

/// A document as uploaded.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// The client's id (unique in its collection; the same id again replaces the document); absent: the
    /// first 32 hex characters of the text's SHA-256.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    pub text: String,
    /// Anything else the client keeps with it (CSV: the other columns).
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// How an upload is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentFormat {
    /// `{"documents": [...]}` or a bare array of documents.
    Json,
    /// One document object per line.
    JsonLines,
    /// A header row naming `text` (required), `id`, `title`; other columns become metadata.
    Csv,
}

impl DocumentFormat {
    /// The format a `Content-Type` names (`application/json`, `application/x-ndjson` / `application/jsonl`,
    /// `text/csv`).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Some(DocumentFormat::Json),
            "application/x-ndjson" | "application/jsonl" | "application/jsonlines" | "application/x-jsonlines" => {
                Some(DocumentFormat::JsonLines)
            }
            "text/csv" => Some(DocumentFormat::Csv),
            _ => None,
        }
    }
}

/// The documents of an upload, each checked ([`check_document`]); an error names the document (1-based).
pub fn parse_documents(bytes: &[u8], format: DocumentFormat) -> Result<Vec<Document>, RequestError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| RequestError::invalid(format!("the upload is not UTF-8: {e}")))?;
    let documents = match format {
        DocumentFormat::Json => {
            let expected = "JSON documents: expected {\"documents\": [{\"text\", \"id\"?, \"title\"?, \"metadata\"?}]}";
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| RequestError::invalid(format!("{expected} ({e})")))?;
            let list = match value {
                serde_json::Value::Object(mut o) if o.len() == 1 && o.contains_key("documents") => {
                    o.remove("documents").expect("checked")
                }
                list @ serde_json::Value::Array(_) => list,
                _ => return Err(RequestError::invalid(expected)),
            };
            serde_json::from_value(list).map_err(|e| RequestError::invalid(format!("JSON documents: {e}")))?
        }
        DocumentFormat::JsonLines => {
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                out.push(
                    serde_json::from_str(line).map_err(|e| RequestError::invalid(format!("line {}: {e}", i + 1)))?,
                );
                if out.len() > MAX_DOCUMENTS {
                    break;
                }
            }
            out
        }
        DocumentFormat::Csv => csv_documents(text)?,
    };
    if documents.is_empty() {
        return Err(RequestError::invalid("no documents in the upload"));
    }
    if documents.len() > MAX_DOCUMENTS {
        return Err(RequestError::too_large(format!("more than {MAX_DOCUMENTS} documents in one upload")));
    }
    for (i, d) in documents.iter().enumerate() {
        check_document(d).map_err(|e| RequestError::new(e.code, format!("document {}: {}", i + 1, e.message)))?;
    }
    Ok(documents)
}

/// A document's limits: text 1 byte to [`MAX_DOCUMENT_BYTES`] with a word in it, id of letters, digits and
/// `-_.:`, id and title at most [`MAX_FIELD_BYTES`].
pub fn check_document(d: &Document) -> Result<(), RequestError> {
    if d.text.trim().is_empty() {
        return Err(RequestError::invalid("`text` is empty"));
    }
    if d.text.len() > MAX_DOCUMENT_BYTES {
        return Err(RequestError::too_large(format!("`text` is over {MAX_DOCUMENT_BYTES} bytes")));
    }
    if let Some(id) = &d.id
        && (id.is_empty()
            || id.len() > MAX_FIELD_BYTES
            || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
    {
        return Err(RequestError::invalid(format!(
            "`id` must be 1 to {MAX_FIELD_BYTES} letters, digits, `-`, `_`, `.`, `:`"
        )));
    }
    if d.title.as_ref().is_some_and(|t| t.len() > MAX_FIELD_BYTES) {
        return Err(RequestError::invalid(format!("`title` is over {MAX_FIELD_BYTES} bytes")));
    }
    Ok(())
}

/// A collection name: 1 to [`MAX_COLLECTION_NAME`] lowercase letters, digits, `-`, `_`.
pub fn check_collection_name(name: &str) -> Result<(), RequestError> {
    if name.is_empty()
        || name.len() > MAX_COLLECTION_NAME
        || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(RequestError::invalid(format!(
            "collection name must be 1 to {MAX_COLLECTION_NAME} lowercase letters, digits, `-`, `_`"
        )));
    }
    Ok(())
}

/// `text` as overlapping chunks of at most `words` words, each starting `words - overlap` words after the
/// previous one (whitespace kept inside a chunk, trimmed at its ends). A text of at most `words` words is
/// one chunk.
pub fn chunk_text(text: &str, words: usize, overlap: usize) -> Vec<String> {
    let words = words.max(1);
    let step = words.saturating_sub(overlap).max(1);
    // Byte ranges of the words.
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    let mut chunks = Vec::new();
    let mut first = 0;
    while first < spans.len() {
        let last = (first + words).min(spans.len()) - 1;
        chunks.push(text[spans[first].0..spans[last].1].to_string());
        if last + 1 == spans.len() {
            break;
        }
        first += step;
    }
    chunks
}

/// CSV (RFC 4180: quoted fields, `""` inside quotes, newlines inside quotes) with a header row.
fn csv_documents(text: &str) -> Result<Vec<Document>, RequestError> {
    let rows = csv_rows(text.strip_prefix('\u{feff}').unwrap_or(text))?;
    let mut rows = rows.into_iter();
    let header = rows.next().ok_or_else(|| RequestError::invalid("CSV without a header row"))?;
    let column = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let text_column = column("text").ok_or_else(|| RequestError::invalid("CSV header has no `text` column"))?;
    let (id_column, title_column) = (column("id"), column("title"));
    let mut out = Vec::new();
    for (n, row) in rows.enumerate() {
        if row.len() == 1 && row[0].is_empty() {
            continue;
        }
        if row.len() != header.len() {
            return Err(RequestError::invalid(format!(
                "CSV row {}: {} fields, the header has {}",
                n + 2,
                row.len(),
                header.len()
            )));
        }
        let mut metadata = serde_json::Map::new();
        for (i, value) in row.iter().enumerate() {
            if i != text_column && Some(i) != id_column && Some(i) != title_column {
                metadata.insert(header[i].trim().to_string(), serde_json::Value::String(value.clone()));
            }
        }
        let non_empty = |i: Option<usize>| i.map(|i| row[i].clone()).filter(|v| !v.is_empty());
        out.push(Document {
            id: non_empty(id_column),
            title: non_empty(title_column),
            text: row[text_column].clone(),
            metadata: (!metadata.is_empty()).then_some(metadata),
        });
        if out.len() > MAX_DOCUMENTS {
            break;
        }
    }
    Ok(out)
}

fn csv_rows(text: &str) -> Result<Vec<Vec<String>>, RequestError> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut line = 1;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                line += 1;
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(RequestError::invalid(format!("CSV: a quoted field is not closed (line {line})")));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_parse_in_three_formats() {
        let json = br#"{"documents": [{"id": "a1", "title": "Aspirin", "text": "Aspirin reduces fever."}]}"#;
        let docs = parse_documents(json, DocumentFormat::Json).unwrap();
        assert_eq!((docs[0].id.as_deref(), docs[0].title.as_deref()), (Some("a1"), Some("Aspirin")));
        assert_eq!(parse_documents(br#"[{"text": "x y"}]"#, DocumentFormat::Json).unwrap()[0].text, "x y");
        let lines = b"{\"text\": \"one\"}\n\n{\"text\": \"two\", \"metadata\": {\"n\": 2}}\n";
        let docs = parse_documents(lines, DocumentFormat::JsonLines).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].metadata.as_ref().unwrap()["n"], 2);
        let csv = "id,title,text,source\r\nd1,Insulin,\"Insulin, a hormone, \"\"lowers\"\" glucose.\nSecond line.\",nih\nd2,,Plain text.,\n";
        let docs = parse_documents(csv.as_bytes(), DocumentFormat::Csv).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].text, "Insulin, a hormone, \"lowers\" glucose.\nSecond line.");
        assert_eq!(docs[0].metadata.as_ref().unwrap()["source"], "nih");
        assert_eq!((docs[1].id.as_deref(), docs[1].title.as_deref()), (Some("d2"), None));
        assert_eq!(DocumentFormat::from_content_type("text/csv; charset=utf-8"), Some(DocumentFormat::Csv));
        assert_eq!(DocumentFormat::from_content_type("application/x-ndjson"), Some(DocumentFormat::JsonLines));
    }

    #[test]
    fn bad_uploads_name_what_is_wrong() {
        for (bytes, format, needle) in [
            (&b"{}"[..], DocumentFormat::Json, "expected"),
            (b"[]", DocumentFormat::Json, "no documents"),
            (br#"[{"text": " "}]"#, DocumentFormat::Json, "document 1: `text` is empty"),
            (br#"[{"text": "x", "id": "a b"}]"#, DocumentFormat::Json, "`id`"),
            (br#"[{"text": "x", "extra": 1}]"#, DocumentFormat::Json, "unknown field"),
            (b"{\"text\": \"x\"}\nnot json", DocumentFormat::JsonLines, "line 2"),
            (b"id,body\n1,x\n", DocumentFormat::Csv, "no `text` column"),
            (b"id,text\n1,\"open\n", DocumentFormat::Csv, "not closed"),
            (b"id,text\n1,a,b\n", DocumentFormat::Csv, "3 fields"),
            (b"\xff\xfe", DocumentFormat::Json, "UTF-8"),
        ] {
            let err = parse_documents(bytes, format).unwrap_err().message;
            assert!(err.contains(needle), "{needle}: {err}");
        }
        assert!(check_collection_name("medical-2026_v1").is_ok());
        for bad in ["", "Medical", "a/b", &"x".repeat(65)] {
            assert!(check_collection_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunks_overlap_and_cover_the_text() {
        let text = "one two  three\nfour five six seven";
        assert_eq!(chunk_text(text, 3, 1), ["one two  three", "three\nfour five", "five six seven"]);
        assert_eq!(chunk_text(text, 10, 2), [text]);
        assert_eq!(chunk_text("  a b  ", 1, 0), ["a", "b"]);
        assert!(chunk_text("   ", 4, 1).is_empty());
        assert_eq!(chunk_text("a b c", 2, 5), ["a b", "b c"], "an overlap past the chunk steps one word");
    }
}
