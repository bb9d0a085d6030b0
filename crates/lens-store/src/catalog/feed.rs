//! What changed, for those that keep a copy: the change feed of browser sync ([`Change`],
//! numbered by the `seq` the schema's triggers assign) and the generation counter that tells a
//! saved index snapshot whether it is still current.

use rusqlite::params;

use super::Catalog;
use super::images::{IMAGE_COLUMN_COUNT, IMAGE_COLUMNS, ImageRecord, RawImage};
use super::vectors::decode_vector;
use crate::error::{Result, StoreError};

/// One entry of the change feed ([`Catalog::changes_since`]): the latest state of one image.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The image as it is now, with its embedding by the feed's model.
    Upsert {
        seq: u64,
        image: Box<ImageRecord>,
        /// `created_at` in ms since the Unix epoch.
        created_ms: i64,
        embedding: Vec<f32>,
    },
    /// The image with this public id was deleted.
    Delete { seq: u64, id: String },
}

impl Change {
    pub fn seq(&self) -> u64 {
        match self {
            Change::Upsert { seq, .. } | Change::Delete { seq, .. } => *seq,
        }
    }
}

/// One page of [`Catalog::changes_since`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePage {
    /// Ascending `seq`, each image at most once.
    pub changes: Vec<Change>,
    /// The `seq` of the last change returned; `since` when none was.
    pub next_cursor: u64,
    /// More changes follow `next_cursor` now.
    pub more: bool,
}

impl Catalog {
    /// The change feed of browser sync: the latest state of every image that changed after `since`
    /// (a `seq` from an earlier page, 0 for everything), at most `limit`, ascending `seq`. An image
    /// appears once, at its latest change, as an upsert with its embedding by `model` — or not at
    /// all while it has none for `model` (storing one is a change, so it shows up then); a deleted
    /// one, or one hidden from search, as a delete. Read in one transaction, and seqs are taken inside
    /// the writing transactions (which SQLite runs one at a time), so a seq a page returns is never
    /// followed by a smaller one committing later: walking the pages misses no change even while writes go on.
    pub fn changes_since(&self, since: u64, limit: usize, model: &str) -> Result<ChangePage> {
        let since_i =
            i64::try_from(since).map_err(|_| StoreError::InvalidInput(format!("cursor {since} too large")))?;
        let take = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut changes: Vec<Change> = Vec::new();
        {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS}, seq, dim, vector FROM images JOIN embeddings ON image_key = key AND model = ?2
                 WHERE seq > ?1 ORDER BY seq LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![since_i, model, take], |r| {
                let n = IMAGE_COLUMN_COUNT;
                Ok((RawImage::from_row(r)?, r.get::<_, i64>(n)?, r.get::<_, i64>(n + 1)?, r.get::<_, Vec<u8>>(n + 2)?))
            })?;
            for row in rows {
                let (raw, seq, dim, blob) = row?;
                let (image, created_ms) = raw.into_record()?;
                // A hidden image is not for copies: a copy that holds it lets it go.
                if image.hidden {
                    changes.push(Change::Delete { seq: seq_of(seq)?, id: image.id });
                    continue;
                }
                let embedding = decode_vector(image.key, model, dim, &blob)?;
                changes.push(Change::Upsert { seq: seq_of(seq)?, image: Box::new(image), created_ms, embedding });
            }
            let mut stmt =
                tx.prepare_cached("SELECT seq, id FROM sync_tombstones WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
            let rows = stmt.query_map(params![since_i, take], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (seq, id) = row?;
                changes.push(Change::Delete { seq: seq_of(seq)?, id });
            }
        }
        tx.commit()?;
        // Each query's first limit + 1 hold the union's first limit + 1.
        changes.sort_by_key(Change::seq);
        let more = changes.len() > limit;
        changes.truncate(limit);
        let next_cursor = changes.last().map_or(since, Change::seq);
        Ok(ChangePage { changes, next_cursor, more })
    }

    /// A counter bumped by every change to the stored embeddings (image insert or delete, a new
    /// model's embedding), so that a saved index snapshot can tell whether it is current.
    pub fn generation(&self) -> Result<u64> {
        let n: i64 = self.conn().query_row("SELECT value FROM meta WHERE name = 'generation'", [], |r| r.get(0))?;
        Ok(n as u64)
    }
}

fn seq_of(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative change number {n}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::test_util::{new_image, walk};
    use crate::time::format_rfc3339_ms;

    /// Every change a mirror needs gets a new, larger seq; only the latest state per image is listed;
    /// an image without an embedding by the feed's model waits until it has one; deletes are tombstones
    /// that a re-insert of the same bytes replaces.
    #[test]
    fn change_feed_lists_the_latest_state_per_image() {
        let catalog = Catalog::open_in_memory().unwrap();
        let page = catalog.changes_since(0, 10, "m").unwrap();
        assert_eq!((page.changes.len(), page.next_cursor, page.more), (0, 0, false));
        let id = |n: u8| format!("{:02x}", n).repeat(16);
        for n in 1..=3 {
            catalog.insert_image(&new_image(n), "m", &[n as f32, 0.5]).unwrap();
        }
        let first = walk(&catalog, 0, 10, "m");
        assert_eq!(first.iter().map(|c| c.1.clone()).collect::<Vec<_>>(), [1, 2, 3].map(|n| format!("+{}", id(n))));
        assert!(first.windows(2).all(|w| w[0].0 < w[1].0));
        let Change::Upsert { image, embedding, created_ms, .. } = &catalog.changes_since(0, 1, "m").unwrap().changes[0]
        else {
            panic!("an upsert")
        };
        assert_eq!((image.id.clone(), embedding.clone()), (id(1), vec![1.0, 0.5]));
        assert_eq!(format_rfc3339_ms(*created_ms), image.created_at);
        // Limit 1 walks the same changes, each once.
        assert_eq!(walk(&catalog, 0, 1, "m"), first);
        let head = first.last().unwrap().0;
        assert!(catalog.changes_since(head, 10, "m").unwrap().changes.is_empty());
        assert_eq!(catalog.changes_since(head + 100, 10, "m").unwrap().next_cursor, head + 100, "ahead: empty page");

        // Caption, tags, delete: each moves the image to the head of the feed, once.
        assert!(catalog.set_caption(&id(1), Some("a dog")).unwrap());
        assert!(catalog.set_tags(&id(2), &["x".into()]).unwrap());
        catalog.delete_image(&id(3)).unwrap();
        let after = walk(&catalog, head, 1, "m");
        assert_eq!(
            after.iter().map(|c| c.1.clone()).collect::<Vec<_>>(),
            [format!("+{}", id(1)), format!("+{}", id(2)), format!("-{}", id(3))]
        );
        let all = walk(&catalog, 0, 2, "m");
        assert_eq!(all, after, "from the start: the latest state only");
        let Change::Upsert { image, .. } = &catalog.changes_since(0, 1, "m").unwrap().changes[0] else { panic!() };
        assert_eq!((image.caption.as_deref(), image.tags.len()), (Some("a dog"), 0));
        // Setting the same caption again is no change.
        let head = all.last().unwrap().0;
        catalog.set_caption(&id(1), Some("a dog")).unwrap();
        assert!(catalog.changes_since(head, 10, "m").unwrap().changes.is_empty());

        // Another model: nothing until its embedding is stored, which is a change.
        assert!(walk(&catalog, 0, 10, "n").iter().all(|c| c.1.starts_with('-')));
        catalog.insert_image(&new_image(2), "n", &[0.0, 1.0]).unwrap();
        let n = walk(&catalog, head, 10, "n");
        assert_eq!(n.iter().map(|c| c.1.clone()).collect::<Vec<_>>(), [format!("+{}", id(2))]);
        // The same bytes again after a delete: the tombstone gives way to the upsert.
        catalog.insert_image(&new_image(3), "m", &[3.0, 0.5]).unwrap();
        let all = walk(&catalog, 0, 10, "m");
        assert_eq!(
            all.iter().map(|c| c.1.clone()).collect::<Vec<_>>(),
            [format!("+{}", id(1)), format!("+{}", id(2)), format!("+{}", id(3))]
        );
    }
}
