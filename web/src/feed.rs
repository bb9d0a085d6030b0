//! The `lens serve` sync feed (`GET /v1/sync?since=<cursor>`; its wire types are lens-core's
//! [`lens_core::api`], the ones the server writes) and the rule that merges it into the local index:
//! images are the same image when their sha256 is.

pub use lens_core::api::{SyncChange as Change, SyncImage as FeedImage, SyncPage};

use crate::protocol::Item;

/// What to do with one upsert, given the local copy (if any).
#[derive(Debug, Clone, PartialEq)]
pub enum Merge {
    /// New here: fetch the thumbnail and insert with the server's embedding.
    Insert(Item),
    /// Already here (added locally, or pulled before): record the server id and caption only.
    Update { sha256: String, server_id: String, caption: Option<String> },
}

/// Merges one server image into the local view; `now_ms` stamps new items.
pub fn merge(local: Option<&Item>, image: &FeedImage, now_ms: f64) -> Merge {
    match local {
        Some(item) => Merge::Update {
            sha256: item.sha256.clone(),
            server_id: image.id.clone(),
            caption: image.caption.clone().or_else(|| item.caption.clone()),
        },
        None => Merge::Insert(Item {
            sha256: image.sha256.clone(),
            name: format!("server:{}", &image.id),
            mime: image.mime.clone(),
            width: image.width,
            height: image.height,
            bytes: image.bytes,
            added_at: now_ms,
            caption: image.caption.clone(),
            server_id: Some(image.id.clone()),
        }),
    }
}

/// Refuses to mix embeddings of two models: the server's model must be the artifact's.
pub fn check_model(server_model: &str, local_model: &str) -> Result<(), String> {
    if server_model == local_model {
        Ok(())
    } else {
        Err(format!(
            "the server embeds with model `{server_model}` but this page runs `{local_model}`: their \
             vectors cannot be compared, so nothing was synced (start `lens serve` with the model the \
             artifact was quantized from)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"{"model":{"id":"clip-tiny@sha256:ab","dims":2},"changes":[
        {"seq":1,"op":"upsert","image":{"id":"i1","sha256":"s1","mime":"image/png","width":4,"height":3,
         "bytes":99,"created_at":1795392000000,"tags":[],"caption":null,"embedding":[0.6,0.8],
         "thumbnail_url":"/v1/images/i1/thumbnail"}},
        {"seq":2,"op":"delete","id":"i0"}],"next_cursor":"2","more":false}"#;

    #[test]
    fn the_feed_parses_and_merges_by_sha256() {
        let page: SyncPage = serde_json::from_str(PAGE).unwrap();
        assert_eq!(page.model.dims, 2);
        assert_eq!(page.next_cursor, "2");
        let Change::Upsert { image, .. } = &page.changes[0] else { panic!("upsert first") };
        assert!(matches!(&page.changes[1], Change::Delete { id, .. } if id == "i0"));

        let Merge::Insert(item) = merge(None, image, 5.0) else { panic!("new image") };
        assert_eq!((item.sha256.as_str(), item.server_id.as_deref()), ("s1", Some("i1")));

        let mut local = item.clone();
        local.server_id = None;
        local.caption = Some("mine".into());
        let with_caption = FeedImage { caption: Some("a cat".into()), ..image.clone() };
        assert_eq!(
            merge(Some(&local), &with_caption, 9.0),
            Merge::Update { sha256: "s1".into(), server_id: "i1".into(), caption: Some("a cat".into()) }
        );
        assert!(matches!(merge(Some(&local), image, 9.0), Merge::Update { caption: Some(c), .. } if c == "mine"));
    }

    #[test]
    fn another_model_is_refused() {
        assert!(check_model("a", "a").is_ok());
        assert!(check_model("a", "b").unwrap_err().contains("cannot be compared"));
    }
}
