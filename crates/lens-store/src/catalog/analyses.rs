//! Image analyses: the chat model's answer to a prompt about an image, stored on the image with its
//! CLIP text embedding (like a caption), and those embeddings read back for search. Keyword search
//! over analyses is the captions part's [`Catalog::search_texts`]: one FTS table holds both texts.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::Catalog;
use super::images::{ImageRecord, query_image};
use super::vectors::{insert_vector, validate_embedding};
use crate::error::Result;
use crate::time::now_ms;

/// An analysis to store.
#[derive(Debug, Clone, Copy)]
pub struct NewAnalysis<'a> {
    pub text: &'a str,
    pub prompt: &'a str,
    /// The chat model that answered.
    pub model: &'a str,
}

impl Catalog {
    /// Sets the image's analysis and its embedding by CLIP model `clip_model` in one transaction (the
    /// old analysis' embeddings are dropped; the keyword index and the change feed follow through
    /// triggers); the record after the change, `None` when there is no such image (deleted meanwhile).
    pub fn store_analysis(
        &self,
        id: &str,
        analysis: NewAnalysis<'_>,
        clip_model: &str,
        embedding: &[f32],
    ) -> Result<Option<ImageRecord>> {
        validate_embedding(clip_model, embedding)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(key) =
            tx.query_row("SELECT key FROM images WHERE id = ?1", params![id], |r| r.get::<_, i64>(0)).optional()?
        else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE images SET analysis = ?1, analysis_prompt = ?2, analysis_model = ?3, analyzed_at = ?4
             WHERE key = ?5",
            params![analysis.text, analysis.prompt, analysis.model, now_ms(), key],
        )?;
        tx.execute("DELETE FROM analysis_embeddings WHERE image_key = ?1", params![key])?;
        insert_vector(&tx, "analysis_embeddings", key, clip_model, embedding)?;
        let record = query_image(&tx, "key = ?1", params![key])?;
        tx.commit()?;
        Ok(record)
    }

    /// Analysis embeddings by CLIP model `model` of these images; images without one are absent.
    pub fn analysis_embeddings(&self, keys: &[i64], model: &str) -> Result<HashMap<i64, Vec<f32>>> {
        self.vectors_by_keys("analysis_embeddings", keys, model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ANALYSIS_JOB;
    use crate::catalog::test_util::{new_image, walk};

    const MODEL: &str = "clip";

    fn analysis<'a>(text: &'a str, prompt: &'a str) -> NewAnalysis<'a> {
        NewAnalysis { text, prompt, model: "llava" }
    }

    /// A stored analysis is on the record, found by its words beside captions (one bm25 over both), its
    /// embedding is kept per CLIP model and replaced with it, it is a change of the feed, and a deleted
    /// image takes it (and its embedding) along.
    #[test]
    fn analyses_are_stored_searchable_and_in_the_feed() {
        let catalog = Catalog::open_in_memory().unwrap();
        let (a, _) = catalog.insert_image(&new_image(1), MODEL, &[1.0, 0.0]).unwrap();
        let (b, _) = catalog.insert_image(&new_image(2), MODEL, &[0.0, 1.0]).unwrap();
        assert!(catalog.set_caption(&b.id, Some("a red rocket")).unwrap());
        let head = walk(&catalog, 0, 10, MODEL).last().unwrap().0;

        let stored = catalog
            .store_analysis(&a.id, analysis("A rocket on a launch pad at dawn.", "Describe it."), MODEL, &[0.6, 0.8])
            .unwrap()
            .unwrap();
        let got = stored.analysis.clone().unwrap();
        assert_eq!(
            (got.text.as_str(), got.prompt.as_str(), got.model.as_str()),
            ("A rocket on a launch pad at dawn.", "Describe it.", "llava")
        );
        assert_eq!(catalog.image(&a.id).unwrap().unwrap(), stored);
        let found: Vec<i64> = catalog.search_texts("rocket", 10).unwrap().into_iter().map(|h| h.0).collect();
        assert_eq!(found.len(), 2, "the caption and the analysis: {found:?}");
        assert_eq!(catalog.search_texts("launch dawn", 10).unwrap()[0].0, a.key);
        assert_eq!(catalog.text_match_scores("pad", &[a.key, b.key]).unwrap().keys().collect::<Vec<_>>(), [&a.key]);
        assert_eq!(catalog.analysis_embeddings(&[a.key, b.key], MODEL).unwrap()[&a.key], vec![0.6, 0.8]);
        assert!(catalog.analysis_embeddings(&[a.key], "other").unwrap().is_empty());
        assert_eq!(walk(&catalog, head, 10, MODEL), vec![(head + 1, format!("+{}", a.id))]);

        // A new analysis replaces the text, its words and its embedding.
        catalog.store_analysis(&a.id, analysis("A quiet harbour.", "Where?"), MODEL, &[1.0, 0.0]).unwrap();
        assert!(catalog.search_texts("launch", 10).unwrap().is_empty());
        assert_eq!(catalog.search_texts("harbour", 10).unwrap()[0].0, a.key);
        assert_eq!(catalog.analysis_embeddings(&[a.key], MODEL).unwrap()[&a.key], vec![1.0, 0.0]);
        assert!(catalog.store_analysis("nope", analysis("x", "y"), MODEL, &[1.0, 0.0]).unwrap().is_none());

        catalog.delete_image(&a.id).unwrap();
        assert!(catalog.search_texts("harbour", 10).unwrap().is_empty());
        assert!(catalog.analysis_embeddings(&[a.key], MODEL).unwrap().is_empty());
    }

    /// Ingest queues an analysis job with the image, again for the same bytes only when the stored
    /// analysis answered another prompt; deleting the image withdraws it.
    #[test]
    fn ingest_queues_analysis_jobs_and_delete_withdraws_them() {
        let catalog = Catalog::open_in_memory().unwrap();
        let mut image = new_image(1);
        image.analysis_prompt = Some("Describe it.".into());
        let (record, _) = catalog.insert_image(&image, MODEL, &[1.0, 0.0]).unwrap();
        let job = catalog.claim_next(ANALYSIS_JOB, now_ms(), 1000).unwrap().unwrap();
        assert_eq!(job.params, serde_json::json!({"image": record.id, "prompt": "Describe it."}));
        catalog.store_analysis(&record.id, analysis("x", "Describe it."), MODEL, &[1.0, 0.0]).unwrap();
        catalog.complete_job(&job.id, job.attempts, crate::JobState::Succeeded, &serde_json::json!({})).unwrap();
        catalog.insert_image(&image, MODEL, &[1.0, 0.0]).unwrap();
        assert!(catalog.claim_next(ANALYSIS_JOB, now_ms(), 1000).unwrap().is_none(), "the same prompt: analysed");
        image.analysis_prompt = Some("Count the boats.".into());
        catalog.insert_image(&image, MODEL, &[1.0, 0.0]).unwrap();
        let queued = || {
            let counts = catalog.count_jobs(ANALYSIS_JOB).unwrap();
            counts.iter().find(|(state, _)| *state == crate::JobState::Queued).map_or(0, |c| c.1)
        };
        assert_eq!(queued(), 1, "another prompt: queued again");
        catalog.delete_image(&record.id).unwrap();
        assert_eq!(queued(), 0, "withdrawn with the image");
    }
}
