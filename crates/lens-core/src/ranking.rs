//! Ranking as pure code: search options and their checks, the rounds a filtered vector search takes,
//! and the hybrid score that blends CLIP similarity with matches of an image's texts (its caption and
//! its analysis). The server, the edge and the browser rank with these functions and differ only in
//! where hits and records come from.
//!
//! Hybrid text search, with the text weight `w` in 0..=1:
//!
//! ```text
//! score         = (1 - w) * vector_score + w * caption_score      (images with a caption or an analysis)
//!               = vector_score                                    (images with neither yet)
//! vector_score  = cos(query embedding, image embedding)
//! caption_score = (keyword + semantic) / 2
//! keyword       = bm25 / max bm25 over the candidates   (the best keyword match is 1, no match 0)
//! semantic      = max(0, cos(query embedding, text embedding)), the best of the image's texts
//!                 (0 until embedded)
//! candidates    = vector top N ∪ text keyword top N,   N = max(4k, 50)
//! ```
//!
//! so an image found only through the words of its caption or analysis is still a candidate; `w = 0`
//! is the plain vector search. A threshold applies to `score`. With a tag filter, both searches fetch
//! candidates in growing rounds until `k` of them carry the tag or the index is exhausted, so the
//! filter never hides a match.

use crate::api::RequestError;
use crate::limits::check_tag_filter;
use crate::vector::cosine;

/// Results when a request does not say.
pub const DEFAULT_K: usize = 10;

/// A vector id and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub id: u64,
    pub score: f32,
}

/// A checked search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOptions {
    /// Results wanted.
    pub k: usize,
    /// Lowest score returned.
    pub threshold: Option<f32>,
    /// Only records carrying this tag.
    pub tag: Option<String>,
    /// A vector id never returned (the image a near-duplicate search starts from).
    pub exclude: Option<u64>,
}

impl SearchOptions {
    /// `k` (default [`DEFAULT_K`]) in `1..=max_k`, `threshold` in -1..=1, a short tag.
    pub fn new(
        k: Option<usize>,
        threshold: Option<f32>,
        tag: Option<String>,
        max_k: usize,
    ) -> Result<Self, RequestError> {
        let k = k.unwrap_or(DEFAULT_K);
        if k == 0 || k > max_k {
            return Err(RequestError::invalid(format!("k must be between 1 and {max_k}")));
        }
        if let Some(t) = threshold
            && !(-1.0..=1.0).contains(&t)
        {
            return Err(RequestError::invalid("threshold is a cosine similarity, between -1 and 1"));
        }
        check_tag_filter(tag.as_deref())?;
        Ok(Self { k, threshold, tag, exclude: None })
    }
}

/// Checks a hybrid weight given with a request (`text` says whether the query is a text).
pub fn check_hybrid_weight(weight: Option<f32>, text: bool) -> Result<(), RequestError> {
    if let Some(w) = weight {
        if !(0.0..=1.0).contains(&w) {
            return Err(RequestError::invalid("hybrid_weight must be between 0 and 1"));
        }
        if !text {
            return Err(RequestError::invalid("hybrid_weight applies to text queries only"));
        }
    }
    Ok(())
}

/// The outcome of one round of a filtered search.
#[derive(Debug, Clone, PartialEq)]
pub enum Round<T> {
    /// The answer.
    Done(T),
    /// Fewer than `k` candidates passed the filters and more may exist: ask again with the larger
    /// request the rounds now give.
    More,
}

/// The rounds of a vector search: ask the index for [`request`](Self::request) hits, keep those
/// above the threshold ([`admit`](Self::admit)), look their records up, and [`select`](Self::select)
/// the first `k` that pass the filters.
#[derive(Debug, Clone)]
pub struct VectorRounds {
    k: usize,
    threshold: Option<f32>,
    want: usize,
    total: usize,
}

impl VectorRounds {
    /// `total`: vectors in the index.
    pub fn new(options: &SearchOptions, total: usize) -> Self {
        let want = if options.tag.is_some() { (options.k * 4).max(64) } else { options.k }
            + usize::from(options.exclude.is_some());
        Self { k: options.k, threshold: options.threshold, want, total }
    }

    /// Hits to ask the index for this round (at least 1).
    pub fn request(&self) -> usize {
        self.want.min(self.total.max(1))
    }

    /// This round's hits (best first) at or above the threshold.
    pub fn admit(&self, hits: Vec<Scored>) -> Vec<Scored> {
        match self.threshold {
            Some(t) => hits.into_iter().filter(|h| h.score >= t).collect(),
            None => hits,
        }
    }

    /// The first `k` admitted hits that `keep` accepts (a record exists and passes the filters):
    /// `Done` when `k` were found or the index has nothing more to give, else `More`.
    pub fn select(&mut self, admitted: Vec<Scored>, mut keep: impl FnMut(u64) -> bool) -> Round<Vec<Scored>> {
        let exhausted = admitted.len() < self.want.min(self.total);
        let mut results = Vec::with_capacity(self.k);
        for hit in admitted {
            if !keep(hit.id) {
                continue;
            }
            results.push(hit);
            if results.len() == self.k {
                break;
            }
        }
        if results.len() == self.k || exhausted || self.want >= self.total {
            return Round::Done(results);
        }
        self.want = (self.want * 4).min(self.total);
        Round::More
    }
}

/// A hybrid candidate before scoring.
#[derive(Debug, Clone, PartialEq)]
pub struct HybridCandidate {
    pub id: u64,
    pub vector_score: f32,
    /// The texts' keyword score (bm25, higher is better; 0 without a match).
    pub keyword: f64,
    /// The best [`semantic_score`] of the texts' embeddings, once embedded.
    pub semantic: Option<f32>,
    /// The image has a caption or an analysis.
    pub has_text: bool,
}

impl HybridCandidate {
    /// A candidate from what the stores know of it: the index's score when the vector search found
    /// it, else the cosine of `query` and its image embedding; `None` without either (not searchable
    /// by this model).
    pub fn new(
        id: u64,
        query: &[f32],
        index_score: Option<f32>,
        image_embedding: Option<&[f32]>,
        text_embeddings: &[&[f32]],
        keyword: f64,
        has_text: bool,
    ) -> Option<Self> {
        let vector_score = match (index_score, image_embedding) {
            (Some(score), _) => score,
            (None, Some(embedding)) => cosine(query, embedding),
            (None, None) => return None,
        };
        let semantic = text_embeddings.iter().map(|e| semantic_score(query, e)).reduce(f32::max);
        Some(Self { id, vector_score, keyword, semantic, has_text })
    }
}

/// How well a text's embedding (a caption's, an analysis') matches the query: their cosine, floored at 0.
pub fn semantic_score(query: &[f32], text_embedding: &[f32]) -> f32 {
    cosine(query, text_embedding).max(0.0)
}

/// How well a text matches a query: `(keyword + semantic) / 2`, the keyword score (bm25) relative to the best
/// among the candidates, the semantic score 0 until embedded. In 0..=1.
pub fn text_score(keyword: f64, best_keyword: f64, semantic: Option<f32>) -> f32 {
    (keyword_score(keyword, best_keyword) + semantic.unwrap_or(0.0)) / 2.0
}

/// A bm25 keyword score relative to the best among the candidates: the best is 1, no match 0.
pub fn keyword_score(keyword: f64, best_keyword: f64) -> f32 {
    if best_keyword > 0.0 { (keyword / best_keyword) as f32 } else { 0.0 }
}

/// A passage of text found by its keywords (bm25, 0 without a match), its embedding, or both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextCandidate {
    pub id: u64,
    pub keyword: f64,
    /// [`semantic_score`] of the passage's embedding; `None` without a text model.
    pub semantic: Option<f32>,
}

/// A ranked passage: its [`text_score`] and the two halves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextScore {
    pub id: u64,
    pub score: f32,
    pub keyword_score: f32,
    pub semantic_score: Option<f32>,
}

/// Ranks passages by [`text_score`] — the caption half of hybrid image search, for text alone (the
/// knowledge base) — and returns the best `k`, ties broken by the smaller id.
pub fn rank_texts(candidates: &[TextCandidate], k: usize) -> Vec<TextScore> {
    let best = candidates.iter().map(|c| c.keyword).fold(0.0, f64::max);
    let mut scored: Vec<TextScore> = candidates
        .iter()
        .map(|c| TextScore {
            id: c.id,
            score: text_score(c.keyword, best, c.semantic),
            keyword_score: keyword_score(c.keyword, best),
            semantic_score: c.semantic,
        })
        .collect();
    scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    scored.truncate(k);
    scored
}

/// A ranked hybrid result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HybridScore {
    pub id: u64,
    pub score: f32,
    pub vector_score: f32,
    pub caption_score: Option<f32>,
}

/// Scores `candidates` with caption weight `weight` (see the module docs), drops those under
/// `threshold`, and returns the best `k`, ties broken by the smaller id.
pub fn rank_hybrid(
    candidates: Vec<HybridCandidate>,
    weight: f32,
    threshold: Option<f32>,
    k: usize,
) -> Vec<HybridScore> {
    let best_keyword = candidates.iter().map(|c| c.keyword).fold(0.0, f64::max);
    let mut scored: Vec<HybridScore> = candidates
        .into_iter()
        .map(|c| {
            let caption_score = c.has_text.then(|| text_score(c.keyword, best_keyword, c.semantic));
            let score = match caption_score {
                Some(cs) => (1.0 - weight) * c.vector_score + weight * cs,
                None => c.vector_score,
            };
            HybridScore { id: c.id, score, vector_score: c.vector_score, caption_score }
        })
        .filter(|s| threshold.is_none_or(|t| s.score >= t))
        .collect();
    scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    scored.truncate(k);
    scored
}

/// The rounds of a hybrid search: ask the index and the keyword search for
/// [`request`](Self::request) candidates each, rank them, and [`finish`](Self::finish).
#[derive(Debug, Clone)]
pub struct HybridRounds {
    k: usize,
    filtered: bool,
    n: usize,
    total: usize,
}

impl HybridRounds {
    pub fn new(options: &SearchOptions, total: usize) -> Self {
        Self { k: options.k, filtered: options.tag.is_some(), n: (options.k * 4).max(50), total }
    }

    /// Candidates to ask each search for this round.
    pub fn request(&self) -> usize {
        self.n
    }

    /// Hits to ask the vector index for (at least 1, at most its size).
    pub fn index_request(&self) -> usize {
        self.n.min(self.total.max(1))
    }

    /// Whether `ranked` (this round's results; the keyword search gave `keyword_hits`) is the
    /// answer; if not, the next round asks for more.
    pub fn finish(&mut self, ranked: usize, keyword_hits: usize) -> bool {
        let exhausted = self.n >= self.total && keyword_hits < self.n;
        if ranked == self.k || !self.filtered || exhausted {
            return true;
        }
        self.n = self.n.saturating_mul(4);
        false
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn hits(scores: &[(u64, f32)]) -> Vec<Scored> {
        scores.iter().map(|&(id, score)| Scored { id, score }).collect()
    }

    #[test]
    fn options_are_checked() {
        assert_eq!(SearchOptions::new(None, None, None, 100).unwrap().k, DEFAULT_K);
        assert_eq!(SearchOptions::new(Some(0), None, None, 100).unwrap_err().message, "k must be between 1 and 100");
        assert!(SearchOptions::new(Some(101), None, None, 100).is_err());
        assert!(SearchOptions::new(None, Some(1.5), None, 100).is_err());
        assert!(SearchOptions::new(None, None, Some("t".repeat(300)), 100).is_err());
        assert!(check_hybrid_weight(Some(0.5), true).is_ok());
        assert!(check_hybrid_weight(Some(1.5), true).is_err());
        assert_eq!(
            check_hybrid_weight(Some(0.5), false).unwrap_err().message,
            "hybrid_weight applies to text queries only"
        );
    }

    #[test]
    fn an_unfiltered_search_takes_one_round() {
        let options = SearchOptions::new(Some(2), Some(0.5), None, 10).unwrap();
        let mut rounds = VectorRounds::new(&options, 100);
        assert_eq!(rounds.request(), 2);
        let admitted = rounds.admit(hits(&[(1, 0.9), (2, 0.4)]));
        assert_eq!(admitted.len(), 1, "under the threshold");
        assert_eq!(rounds.select(admitted, |_| true), Round::Done(hits(&[(1, 0.9)])));
    }

    #[test]
    fn a_tag_filter_grows_the_request_until_k_match_or_the_index_ends() {
        let options = SearchOptions::new(Some(2), None, Some("cat".into()), 10).unwrap();
        let mut rounds = VectorRounds::new(&options, 1000);
        assert_eq!(rounds.request(), 64);
        let first: Vec<Scored> = (0..64).map(|i| Scored { id: i, score: 1.0 - i as f32 / 1000.0 }).collect();
        assert_eq!(rounds.select(first, |id| id == 3), Round::More);
        assert_eq!(rounds.request(), 256);
        let second: Vec<Scored> = (0..256).map(|i| Scored { id: i, score: 1.0 - i as f32 / 1000.0 }).collect();
        let Round::Done(found) = rounds.select(second, |id| id == 3 || id == 200) else { panic!("two match") };
        assert_eq!(found.iter().map(|h| h.id).collect::<Vec<_>>(), [3, 200]);
        // A small index: the first round already holds everything.
        let mut small = VectorRounds::new(&options, 5);
        assert_eq!(small.request(), 5);
        assert_eq!(small.select(hits(&[(0, 0.9), (1, 0.8)]), |_| false), Round::Done(vec![]));
    }

    #[test]
    fn an_excluded_image_costs_one_more_hit() {
        let mut options = SearchOptions::new(Some(3), None, None, 10).unwrap();
        options.exclude = Some(7);
        assert_eq!(VectorRounds::new(&options, 100).request(), 4);
    }

    #[test]
    fn hybrid_scores_blend_vector_and_text() {
        let query = [1.0, 0.0];
        // a: a caption far from the query and an analysis on it; the better text counts.
        let a = HybridCandidate::new(1, &query, Some(0.8), None, &[&[0.0, 1.0], &[1.0, 0.0]], 4.0, true).unwrap();
        let b = HybridCandidate::new(2, &query, None, Some(&[0.6, 0.8]), &[], 2.0, true).unwrap();
        let c = HybridCandidate::new(3, &query, Some(0.7), None, &[], 0.0, false).unwrap();
        assert!(HybridCandidate::new(4, &query, None, None, &[], 1.0, true).is_none(), "no embedding");
        assert_eq!(a.semantic, Some(1.0));
        assert!((b.vector_score - 0.6).abs() < 1e-6);
        let ranked = rank_hybrid(vec![a, b, c], 0.5, None, 3);
        // a: caption (1 + 1) / 2 = 1 -> 0.9; b: (0.5 + 0) / 2 = 0.25 -> 0.425; c: 0.7 (no caption).
        let ids: Vec<u64> = ranked.iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 3, 2]);
        assert!((ranked[0].score - 0.9).abs() < 1e-6 && ranked[0].caption_score == Some(1.0));
        assert_eq!(ranked[1].caption_score, None);
        assert_eq!(rank_hybrid(ranked_input(), 0.0, Some(0.75), 10).len(), 1, "threshold on the score");
    }

    #[test]
    fn passages_rank_by_keywords_and_meaning() {
        let candidates = [
            TextCandidate { id: 1, keyword: 4.0, semantic: Some(0.2) },
            TextCandidate { id: 2, keyword: 0.0, semantic: Some(0.9) },
            TextCandidate { id: 3, keyword: 2.0, semantic: Some(0.8) },
        ];
        // 1: (1 + 0.2) / 2 = 0.6; 2: 0.45; 3: (0.5 + 0.8) / 2 = 0.65.
        let ranked = rank_texts(&candidates, 2);
        assert_eq!(ranked.iter().map(|s| s.id).collect::<Vec<_>>(), [3, 1]);
        assert!((ranked[0].score - 0.65).abs() < 1e-6 && (ranked[0].keyword_score - 0.5).abs() < 1e-6);
        let keywords_only = [TextCandidate { id: 5, keyword: 1.0, semantic: None }];
        assert_eq!(rank_texts(&keywords_only, 3)[0].score, 0.5);
    }

    fn ranked_input() -> Vec<HybridCandidate> {
        vec![
            HybridCandidate { id: 1, vector_score: 0.8, keyword: 0.0, semantic: None, has_text: true },
            HybridCandidate { id: 2, vector_score: 0.7, keyword: 0.0, semantic: None, has_text: false },
        ]
    }

    #[test]
    fn hybrid_rounds_stop_without_a_filter_or_when_exhausted() {
        let plain = SearchOptions::new(Some(5), None, None, 10).unwrap();
        let mut rounds = HybridRounds::new(&plain, 1000);
        assert_eq!(rounds.request(), 50);
        assert!(rounds.finish(2, 50));
        let tagged = SearchOptions::new(Some(5), None, Some("t".into()), 10).unwrap();
        let mut rounds = HybridRounds::new(&tagged, 1000);
        assert!(!rounds.finish(2, 50));
        assert_eq!(rounds.request(), 200);
        let mut small = HybridRounds::new(&tagged, 10);
        assert_eq!(small.index_request(), 10);
        assert!(small.finish(2, 3), "the index and the keyword search are exhausted");
    }
}
