//! The ingest safety check (`--moderation-label`): CLIP zero-shot classification of each new image's
//! embedding, which ingest computes anyway, against the configured labels. The refused labels and the
//! neutral ones compete in one softmax of `exp(logit_scale) · cos(image, label)` — `transformers`'
//! `logits_per_image` — and an image whose probability for a refused label reaches the threshold is
//! refused (422 `content_rejected`) or kept hidden from search and sync, with its scores, as configured.
//! The labels' text embeddings are computed once, at the first check.

use lens_core::api;

use super::lens::Lens;
use crate::config::ModerationConfig;
use crate::runtime::ModelError;

/// The verdict on each of `embeddings` (L2-normalised image embeddings); `None` without a check configured.
pub async fn judge(lens: &Lens, embeddings: &[&[f32]]) -> Result<Option<Vec<api::Moderation>>, ModelError> {
    let Some(config) = &lens.config.moderation else { return Ok(None) };
    let embedder = lens.ready().map_err(|_| ModelError::Stopped)?.models.embedder();
    // Checked when the server starts (an ONNX export carries no logit scale).
    let scale = embedder
        .logit_scale()
        .ok_or_else(|| ModelError::Panicked("moderation needs the model's logit scale".into()))?;
    let labels = lens
        .moderation_labels
        .get_or_try_init(|| async {
            let texts: Vec<String> = config.labels.iter().chain(&config.neutral_labels).cloned().collect();
            embedder.embed_texts_waiting(texts).await
        })
        .await?;
    Ok(Some(embeddings.iter().map(|image| verdict(config, scale, labels, image)).collect()))
}

/// The probabilities of the refused labels for one image, and whether one reaches the threshold.
fn verdict(config: &ModerationConfig, scale: f32, labels: &[Vec<f32>], image: &[f32]) -> api::Moderation {
    let logits: Vec<f32> = labels.iter().map(|label| scale * lens_core::vector::dot(image, label)).collect();
    let probabilities = lens_core::vector::softmax(&logits);
    let scores: Vec<api::LabelScore> = config
        .labels
        .iter()
        .zip(&probabilities)
        .map(|(label, &score)| api::LabelScore { label: label.clone(), score })
        .collect();
    let flagged = scores.iter().any(|s| s.score >= config.threshold);
    api::Moderation { flagged, scores, threshold: config.threshold }
}

/// Why `moderation` refuses an image, for the client: the label that scored highest.
pub fn refusal(moderation: &api::Moderation) -> String {
    let top = moderation.scores.iter().max_by(|a, b| a.score.total_cmp(&b.score));
    match top {
        Some(top) => format!(
            "the image was refused by this server's content check: `{}` scored {:.3} (threshold {})",
            top.label, top.score, moderation.threshold
        ),
        None => "the image was refused by this server's content check".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModerationAction;

    fn config(threshold: f32) -> ModerationConfig {
        ModerationConfig {
            labels: vec!["bad".into(), "worse".into()],
            neutral_labels: vec!["fine".into()],
            threshold,
            action: ModerationAction::Reject,
        }
    }

    #[test]
    fn softmax_over_all_labels_and_the_threshold_on_refused_ones() {
        let labels = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![-1.0, 0.0]];
        let image = [1.0, 0.0];
        // Logits 10, 0, -10: "bad" ~ 0.99995.
        let v = verdict(&config(0.9), 10.0, &labels, &image);
        assert!(v.flagged);
        assert_eq!(v.scores.len(), 2, "only the refused labels are reported");
        assert!((v.scores[0].score - 0.99995).abs() < 1e-4, "{v:?}");
        assert!(refusal(&v).contains("`bad` scored 1.000"), "{}", refusal(&v));
        // The neutral label wins: nothing is flagged.
        let v = verdict(&config(0.5), 10.0, &labels, &[-1.0, 0.0]);
        assert!(!v.flagged, "{v:?}");
        let sum: f32 = v.scores.iter().map(|s| s.score).sum();
        assert!(sum < 1e-3, "{v:?}");
    }
}
