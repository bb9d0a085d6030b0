//! Checks on what clients send that every target makes the same way (server, edge, browser): tags,
//! ids, query texts. Each refusal is a [`RequestError`] with the code and message the API answers.

use crate::api::{ErrorCode, RequestError};
use crate::ids::MAX_ID_LEN;

/// Tags per image.
pub const MAX_TAGS: usize = 32;
/// Characters per tag.
pub const MAX_TAG_CHARS: usize = 64;
/// Bytes of a comma-separated `tags` form field (every tag at its longest in UTF-8, plus commas).
pub const MAX_TAGS_FIELD_BYTES: usize = MAX_TAGS * (MAX_TAG_CHARS * 4 + 1);
/// Bytes of a tag used as a search or list filter.
pub const MAX_TAG_FILTER_BYTES: usize = 256;

/// Tags as stored: trimmed, empty ones dropped, duplicates dropped (first kept), order kept.
///
/// # Errors
/// A tag over [`MAX_TAG_CHARS`] characters or with control characters; more than [`MAX_TAGS`] tags.
pub fn clean_tags(tags: impl IntoIterator<Item = String>) -> Result<Vec<String>, RequestError> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim().to_string();
        if tag.is_empty() {
            continue;
        }
        if tag.chars().count() > MAX_TAG_CHARS || tag.chars().any(char::is_control) {
            return Err(RequestError::invalid(format!(
                "tag `{}` is longer than {MAX_TAG_CHARS} characters or has control characters",
                tag.chars().take(80).collect::<String>()
            )));
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > MAX_TAGS {
        return Err(RequestError::invalid(format!("{} tags, at most {MAX_TAGS}", out.len())));
    }
    Ok(out)
}

/// Ids in paths are short; anything longer is refused before it is looked up. `what` names the
/// resource (`image`, `job`).
pub fn check_id(id: &str, what: &str) -> Result<(), RequestError> {
    if id.len() > MAX_ID_LEN {
        return Err(RequestError::invalid(format!("{what} id too long")));
    }
    Ok(())
}

/// A query text: at most `max_bytes`, not blank.
pub fn check_query_text(text: &str, max_bytes: usize) -> Result<(), RequestError> {
    if text.len() > max_bytes {
        return Err(RequestError::too_large(format!("text is {} bytes, over the limit of {max_bytes}", text.len())));
    }
    if text.trim().is_empty() {
        return Err(RequestError::invalid("text is empty"));
    }
    Ok(())
}

/// A tag used as a filter.
pub fn check_tag_filter(tag: Option<&str>) -> Result<(), RequestError> {
    if tag.is_some_and(|t| t.len() > MAX_TAG_FILTER_BYTES) {
        return Err(RequestError::invalid("tag too long"));
    }
    Ok(())
}

/// A file of `bytes` bytes against the per-file limit.
pub fn check_file_size(bytes: usize, limit: usize) -> Result<(), RequestError> {
    if bytes > limit {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!("file is {bytes} bytes, over the limit of {limit}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn tags_are_trimmed_deduplicated_and_bounded() {
        let tags = clean_tags(["  a ", "b", "a", "", " "].map(String::from)).unwrap();
        assert_eq!(tags, ["a", "b"]);
        let long = "x".repeat(MAX_TAG_CHARS + 1);
        assert_eq!(clean_tags([long]).unwrap_err().code, ErrorCode::InvalidRequest);
        assert!(clean_tags(["a\u{7}".to_string()]).is_err());
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| i.to_string()).collect();
        assert_eq!(clean_tags(many).unwrap_err().message, format!("{} tags, at most {MAX_TAGS}", MAX_TAGS + 1));
    }

    #[test]
    fn texts_and_ids_have_limits() {
        assert_eq!(check_query_text("abc", 2).unwrap_err().code, ErrorCode::TooLarge);
        assert_eq!(check_query_text("  ", 10).unwrap_err().message, "text is empty");
        assert!(check_query_text("a cat", 10).is_ok());
        assert!(check_id(&"a".repeat(MAX_ID_LEN), "image").is_ok());
        assert_eq!(check_id(&"a".repeat(MAX_ID_LEN + 1), "job").unwrap_err().message, "job id too long");
        assert!(check_tag_filter(Some(&"t".repeat(257))).is_err());
        assert_eq!(check_file_size(11, 10).unwrap_err().code, ErrorCode::TooLarge);
    }
}
