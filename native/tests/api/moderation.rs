//! The ingest safety check (`--moderation-label`): CLIP zero-shot scores against `transformers`' own
//! `logits_per_image` for the fixture images, a label that must trigger and one that must not, both
//! actions (reject: 422 `content_rejected`, nothing stored; hide: stored with its scores, out of search and
//! sync).

use serde_json::{Value, json};

use crate::common::app::TestApp;
use crate::common::files::{fixture_model, image_bytes};

/// The reference's texts used as labels: the refused one, then the neutral ones.
const REFUSED: usize = 3; // "A ROCKET launching, with smoke & fire!!"
const NEUTRAL: [usize; 2] = [0, 1]; // "a photo of a cat", "a photo of a dog"

/// Scores match the reference's softmax within this (f32 embeddings computed apart).
const TOLERANCE: f32 = 1e-4;

/// `transformers`' probability of the refused label for each fixture image (softmax of
/// `logits_per_image` over the three labels), the texts, and the image names.
fn reference() -> (Vec<f32>, Vec<String>, Vec<String>) {
    let dir = fixture_model();
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let weights = lens_models::weights::Weights::from_buffers(vec![("reference".into(), bytes)]).unwrap();
    let shape = weights.shape("logits_per_image").unwrap().to_vec();
    let logits = weights.f32_values("logits_per_image", &shape).unwrap();
    let probabilities = logits
        .chunks(shape[1])
        .map(|row| {
            let picked: Vec<f32> = [REFUSED, NEUTRAL[0], NEUTRAL[1]].iter().map(|&j| row[j]).collect();
            lens_core::vector::softmax(&picked)[0]
        })
        .collect();
    let strings = |v: &Value| v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    (probabilities, strings(&meta["texts"]), strings(&meta["images"]))
}

fn settings(texts: &[String], threshold: f32, action: &str) -> impl FnOnce(&mut lens::config::ServeSettings) {
    let (refused, neutral) = (texts[REFUSED].clone(), NEUTRAL.map(|j| texts[j].clone()).to_vec());
    let hide = action == "hide";
    move |s| {
        s.index.kind = Some(lens::config::IndexKind::Exact);
        s.moderation.labels = Some(vec![refused]);
        s.moderation.neutral_labels = Some(neutral);
        s.moderation.threshold = Some(threshold);
        s.moderation.action =
            Some(if hide { lens::config::ModerationAction::Hide } else { lens::config::ModerationAction::Reject });
    }
}

/// The threshold halfway between the lowest-scoring image and the next: that image must not trigger, the
/// others must.
fn split(probabilities: &[f32]) -> (f32, usize) {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    let (low, next) = (probabilities[order[0]], probabilities[order[1]]);
    assert!(next - low > 0.02, "the fixture leaves room between {low} and {next}");
    ((low + next) / 2.0, order[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_over_the_threshold_are_refused_with_the_reference_scores() {
    let (probabilities, texts, images) = reference();
    let (threshold, passing) = split(&probabilities);
    let app = TestApp::with(settings(&texts, threshold, "reject")).await;
    for (i, name) in images.iter().enumerate() {
        let (status, body) = app.upload("/v1/images", &[(name, image_bytes(name))], None).await;
        if i == passing {
            assert_eq!(status, 201, "{name}: {body}");
            let score = body["moderation"]["scores"][0]["score"].as_f64().unwrap() as f32;
            assert!((score - probabilities[i]).abs() < TOLERANCE, "{name}: {score} vs {}", probabilities[i]);
            assert_eq!(body["moderation"]["flagged"], false);
            assert_eq!(body["moderation"]["scores"][0]["label"], texts[REFUSED].as_str());
        } else {
            assert_eq!((status, body["error"]["code"].as_str()), (422, Some("content_rejected")), "{name}: {body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(&texts[REFUSED]), "{message}");
            assert!(message.contains(&format!("{:.3}", probabilities[i])), "{message} vs {}", probabilities[i]);
        }
    }
    // One refused file in a request of several: nothing of it is stored.
    let refused = &images[(passing + 1) % images.len()];
    let files = [("ok.png", crate::common::files::synthetic_png(7)), (refused.as_str(), image_bytes(refused))];
    let (status, body) = app.upload("/v1/images", &files, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("content_rejected")), "{body}");
    let (_, listed) = app.get("/v1/images").await;
    assert_eq!(listed["total"], 1, "only the passing image is stored: {listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_images_are_stored_with_their_scores_but_not_searched_or_synced() {
    let (probabilities, texts, images) = reference();
    let (threshold, passing) = split(&probabilities);
    let app = TestApp::with(settings(&texts, threshold, "hide")).await;
    let mut ids = Vec::new();
    for name in &images {
        let (status, body) = app.upload("/v1/images", &[(name, image_bytes(name))], None).await;
        assert_eq!(status, 201, "{name}: {body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    for (i, id) in ids.iter().enumerate() {
        let (_, image) = app.get(&format!("/v1/images/{id}")).await;
        assert_eq!(image["moderation"]["flagged"], i != passing, "{image}");
        let score = image["moderation"]["scores"][0]["score"].as_f64().unwrap() as f32;
        assert!((score - probabilities[i]).abs() < TOLERANCE, "{score} vs {}", probabilities[i]);
    }
    let (_, listed) = app.get("/v1/images").await;
    assert_eq!(listed["total"], images.len(), "kept for review: {listed}");
    // Searches show only the image that passed, whatever the query.
    for query in [json!({"text": "a rocket", "k": 10}), json!({"image_id": ids[passing], "k": 10})] {
        let (status, found) = app.post_json("/v1/search", &query).await;
        assert_eq!(status, 200, "{found}");
        let found: Vec<&str> = found["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(found, [ids[passing].as_str()], "{query}");
    }
    // The sync feed gives copies (browser, edge) only the image that passed.
    let (_, page) = app.get("/v1/sync?limit=100").await;
    for change in page["changes"].as_array().unwrap() {
        let id = change["image"]["id"].as_str().or(change["id"].as_str()).unwrap();
        let expected = if id == ids[passing] { "upsert" } else { "delete" };
        assert_eq!(change["op"], expected, "{change}");
    }
}

/// Labels without a refused one, a threshold out of range: the server does not start.
#[test]
fn bad_moderation_settings_are_refused_at_start() {
    let resolve = |configure: &dyn Fn(&mut lens::config::ServeSettings)| {
        let mut s = lens::config::ServeSettings::default();
        s.models.model = Some(fixture_model());
        configure(&mut s);
        s.resolve(None).map(|c| c.moderation.is_some()).map_err(|e| e.to_string())
    };
    assert_eq!(resolve(&|_| {}), Ok(false));
    let err = resolve(&|s| s.moderation.threshold = Some(0.5)).unwrap_err();
    assert!(err.contains("need --moderation-label"), "{err}");
    let err = resolve(&|s| {
        s.moderation.labels = Some(vec!["a weapon".into()]);
        s.moderation.threshold = Some(1.5);
    })
    .unwrap_err();
    assert!(err.contains("--moderation-threshold"), "{err}");
    assert_eq!(resolve(&|s| s.moderation.labels = Some(vec!["a weapon".into()])), Ok(true));
}
