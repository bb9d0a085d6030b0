//! Search by text, by an uploaded image, by URL and by a stored image; k, threshold and tag; near-
//! duplicates; embeddings. Scores are checked against embeddings computed apart ([`Reference`]).

use serde_json::{Value, json};

use crate::api::{Reference, SCORE_TOLERANCE, dot, floats};
use crate::common::app::TestApp;
use crate::common::files::{FileServer, image_bytes};

const NAMES: [&str; 5] = ["coffee.jpg", "rocket.jpg", "chelsea_rgba.png", "astronaut.png", "camera_grey.png"];

/// The five photos, the last one tagged `grey`; their ids in `NAMES` order.
async fn photos(app: &TestApp) -> Vec<String> {
    let mut ids = Vec::new();
    for name in NAMES {
        let tags = (name == "camera_grey.png").then_some("grey");
        let (status, image) = app.upload("/v1/images", &[(name, image_bytes(name))], tags).await;
        assert_eq!(status, 201, "{image}");
        ids.push(image["id"].as_str().unwrap().to_string());
    }
    ids
}

/// (id, cosine with `query`) of the photos, best first.
fn expected(reference: &Reference, ids: &[String], query: &str) -> Vec<(String, f64)> {
    let text = reference.text(query);
    let mut scored: Vec<(String, f64)> =
        NAMES.iter().zip(ids).map(|(name, id)| (id.clone(), dot(&text, &reference.image(name)))).collect();
    scored.sort_by(|x, y| y.1.total_cmp(&x.1));
    scored
}

fn plain() -> impl FnOnce(&mut lens::config::ServeSettings) {
    // No caption model: text search is the plain vector search.
    |_| {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_search_ranks_by_cosine_with_the_query() {
    let app = TestApp::with(plain()).await;
    let ids = photos(&app).await;
    let expected = expected(&Reference::new(), &ids, "a photo of a rocket");
    let (status, found) = app.post_json("/v1/search", &json!({"text": "a photo of a rocket", "k": 5})).await;
    assert_eq!(status, 200, "{found}");
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for (result, (id, score)) in results.iter().zip(&expected) {
        assert_eq!(result["id"], id.as_str(), "rank order: {found}");
        assert!((result["score"].as_f64().unwrap() - score).abs() < SCORE_TOLERANCE, "{result} vs {score}");
        assert_eq!(result["vector_score"], result["score"]);
        assert!(result["caption_score"].is_null());
        assert!(result["url"].as_str().unwrap().ends_with("/blob"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_threshold_and_tag_narrow_the_results() {
    let app = TestApp::with(plain()).await;
    let ids = photos(&app).await;
    let query = "a photo of a rocket";
    let expected = expected(&Reference::new(), &ids, query);
    let (_, top2) = app.post_json("/v1/search", &json!({"text": query, "k": 2})).await;
    assert_eq!(crate::api::ids(&top2), expected[..2].iter().map(|e| e.0.clone()).collect::<Vec<_>>());
    let cut = (expected[1].1 + expected[2].1) / 2.0;
    let (_, above) = app.post_json("/v1/search", &json!({"text": query, "k": 5, "threshold": cut})).await;
    assert_eq!(crate::api::ids(&above).len(), 2, "threshold {cut}: {above}");
    let (_, grey) = app.post_json("/v1/search", &json!({"text": query, "k": 5, "tag": "grey"})).await;
    assert_eq!(crate::api::ids(&grey), [ids[4].clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_image_finds_its_stored_copy_first() {
    let app = TestApp::with(plain()).await;
    let ids = photos(&app).await;
    let (status, found) = app.upload("/v1/search/image", &[("q.jpg", image_bytes("rocket.jpg"))], None).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["results"][0]["id"], ids[1].as_str());
    assert!((found["results"][0]["score"].as_f64().unwrap() - 1.0).abs() < SCORE_TOLERANCE);
    let (_, one) = app.upload_form("/v1/search/image", &[("q.jpg", image_bytes("rocket.jpg"))], &[("k", "1")]).await;
    assert_eq!(crate::api::ids(&one), [ids[1].clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_url_and_a_stored_id_are_queries_too() {
    let files = FileServer::start();
    let app = TestApp::with(|s| s.fetch.allow_private_urls = Some(true)).await;
    let ids = photos(&app).await;
    let (status, by_url) =
        app.post_json("/v1/search", &json!({"image_url": files.url("/img/chelsea_rgba.png"), "k": 1})).await;
    assert_eq!(status, 200, "{by_url}");
    assert_eq!(crate::api::ids(&by_url), [ids[2].clone()]);
    let (_, by_id) = app.post_json("/v1/search", &json!({"image_id": ids[3], "k": 3})).await;
    assert_eq!(by_id["results"][0]["id"], ids[3].as_str(), "the image itself scores 1 and is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_list_other_images_within_the_threshold() {
    let app = TestApp::with(plain()).await;
    let ids = photos(&app).await;
    let (status, dups) = app.get(&format!("/v1/images/{}/duplicates?threshold=-1&k=10", ids[0])).await;
    assert_eq!(status, 200, "{dups}");
    assert_eq!(dups["id"], ids[0].as_str());
    let found = crate::api::ids(&json!({"results": dups["duplicates"]}));
    assert_eq!(found.len(), 4);
    assert!(!found.contains(&ids[0]));
    for r in dups["duplicates"].as_array().unwrap() {
        let (_, d) = app.get(&format!("/v1/images/{}/duplicates?threshold={}&k=10", ids[0], r["score"])).await;
        assert!(d["duplicates"].as_array().unwrap().iter().all(|x| x["score"].as_f64() >= r["score"].as_f64()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_of_texts_and_stored_images_match_the_model() {
    let app = TestApp::with(plain()).await;
    let ids = photos(&app).await;
    let reference = Reference::new();
    let (status, emb) = app.post_json("/v1/embeddings", &json!({"input": ["a cat", {"image_id": ids[0]}]})).await;
    assert_eq!(status, 200, "{emb}");
    assert_eq!((emb["object"].as_str(), emb["data"][1]["index"].as_u64()), (Some("list"), Some(1)));
    assert!((dot(&floats(&emb["data"][0]["embedding"]), &reference.text("a cat")) - 1.0).abs() < SCORE_TOLERANCE);
    assert!((dot(&floats(&emb["data"][1]["embedding"]), &reference.image(NAMES[0])) - 1.0).abs() < SCORE_TOLERANCE);
    let (_, models) = app.get("/v1/models").await;
    let (status, named) =
        app.post_json("/v1/embeddings", &json!({"input": "a cat", "model": models["data"][0]["id"]})).await;
    assert_eq!(status, 200, "the loaded model may be named: {named}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_batched_and_answer_as_alone() {
    let app = std::sync::Arc::new(TestApp::with(plain()).await);
    let alone = app.post_json("/v1/embeddings", &json!({"input": "a cat"})).await.1["data"][0]["embedding"].clone();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move { app.post_json("/v1/embeddings", &json!({"input": "a cat"})).await.1 })
        })
        .collect();
    for task in tasks {
        let together: Value = task.await.unwrap();
        let (a, b) = (floats(&alone), floats(&together["data"][0]["embedding"]));
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
    }
}
