//! Helpers shared by the unit tests of several catalog files (the change feed is tested both on
//! its own and after a migration).

use super::{Catalog, Change, NewImage};

pub(super) fn new_image(n: u8) -> NewImage {
    NewImage {
        sha256: format!("{:02x}", n).repeat(32),
        mime: "image/png".into(),
        width: 2,
        height: 1,
        bytes: 10,
        ..Default::default()
    }
}

/// (seq, "+id" for an upsert or "-id" for a delete) of every change after `since`, walked `limit` at a time.
pub(super) fn walk(catalog: &Catalog, since: u64, limit: usize, model: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut cursor = since;
    loop {
        let page = catalog.changes_since(cursor, limit, model).unwrap();
        assert!(page.changes.len() <= limit);
        for change in &page.changes {
            out.push(match change {
                Change::Upsert { seq, image, .. } => (*seq, format!("+{}", image.id)),
                Change::Delete { seq, id } => (*seq, format!("-{id}")),
            });
        }
        assert!(page.next_cursor >= cursor);
        cursor = page.next_cursor;
        if !page.more {
            return out;
        }
    }
}
