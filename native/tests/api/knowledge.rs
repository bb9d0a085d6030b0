//! The knowledge base: the Python Language Reference (79 topics, JSON Lines) uploaded, chunked and embedded
//! by the tiny MiniLM; searches find the topic that holds each answer; JSON and CSV uploads; replace and
//! delete; bad uploads refused and nothing stored; a chat request's `lens` field gives the model the
//! passages (its answer equals the LLaVA pipeline's with that system turn) and returns them as sources.

use burn::backend::NdArray;
use lens_core::api::Passage;
use lens_models::bert::SentenceEmbedder;
use lens_models::chat_template::{ChatMessage, Content, Part};
use lens_models::generation::GenerationConfig;
use lens_models::llava::LlavaPipeline;
use serde_json::{Value, json};

use super::chat::{chat_app, chat_model_id, sse_data};
use crate::common::app::TestApp;
use crate::common::assert_error;
use crate::common::files::{corpus, llava_dir, text_model};

/// Each query and the topic that answers it: the keyword half of the ranking carries retrieval here (the
/// tiny embedder's weights are random), as it would with any embedder for words this specific. Each answer
/// must be among the 3 passages a chat would get, and at least 5 of the 6 first.
const QUERIES: [(&str, &str); 6] = [
    ("What does the nonlocal statement do to variables of an enclosing scope?", "nonlocal"),
    ("How do lambda expressions create anonymous functions?", "lambda"),
    ("Is the pass statement a null operation?", "pass"),
    ("Does an augmented assignment statement evaluate its target only once?", "augassign"),
    ("What does the yield expression do in a generator function?", "yield"),
    ("When does the else clause of a while loop run?", "while"),
];

async fn knowledge_app() -> TestApp {
    TestApp::with(|s| s.knowledge.text_model = Some(text_model())).await
}

async fn upload(app: &TestApp, collection: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let answer = app.post_raw(&format!("/v1/collections/{collection}/documents"), content_type, body).await;
    (answer.status, answer.json())
}

fn documents(results: &Value) -> Vec<String> {
    results["results"].as_array().unwrap().iter().map(|r| r["document_id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_corpus_is_searchable_by_keywords_and_embeddings() {
    let app = knowledge_app().await;
    let (status, added) = upload(&app, "python", "application/x-ndjson", corpus()).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["ids"].as_array().unwrap().len(), 79);
    let chunks = added["chunks"].as_u64().unwrap();
    assert!(chunks > 79, "long topics are cut into several chunks: {chunks}");
    let (_, models) = app.get("/v1/models").await;
    let card = models["data"].as_array().unwrap().iter().find(|m| m["task"] == "text_embedding").expect("a text model");
    assert_eq!(added["embedder"], card["id"]);
    let (_, list) = app.get("/v1/collections").await;
    assert_eq!(list["collections"][0]["documents"], 79);
    assert_eq!(list["collections"][0]["chunks"], chunks);

    let mut first = 0;
    for (query, topic) in QUERIES {
        let (status, found) = app.post_json("/v1/collections/python/search", &json!({"query": query, "k": 3})).await;
        assert_eq!(status, 200, "{found}");
        let rank = documents(&found).iter().position(|d| d == topic);
        eprintln!("{query:?} -> {:?} (`{topic}` at {rank:?})", documents(&found));
        assert!(rank.is_some(), "{query}: `{topic}` not in the top 3: {found}");
        first += usize::from(rank == Some(0));
        let best = &found["results"][0];
        assert!(best["keyword_score"].as_f64().unwrap() > 0.0 && best["semantic_score"].is_number(), "{best}");
        assert_eq!(best["metadata"]["source"].as_str().unwrap().split(' ').next(), Some("CPython"));
    }
    assert!(first >= 5, "{first} of {} answers ranked first", QUERIES.len());

    // The semantic half is the sentence embedder's cosine, computed here apart.
    let (_, found) = app.post_json("/v1/collections/python/search", &json!({"query": QUERIES[0].0, "k": 5})).await;
    let embedder = SentenceEmbedder::<NdArray<f32>>::from_dir(text_model(), &Default::default()).unwrap();
    for result in found["results"].as_array().unwrap() {
        let v = embedder.embed(&[QUERIES[0].0, result["text"].as_str().unwrap()]).unwrap();
        let cosine: f32 = v[0].iter().zip(&v[1]).map(|(a, b)| a * b).sum();
        let expected = cosine.max(0.0) as f64;
        assert!((result["semantic_score"].as_f64().unwrap() - expected).abs() < 1e-5, "{result} vs {expected}");
    }
}

#[tokio::test]
async fn documents_upload_as_json_or_csv_replace_and_delete() {
    let app = knowledge_app().await;
    let json_docs = json!({"documents": [
        {"id": "aspirin", "title": "Aspirin", "text": "Aspirin reduces fever and relieves mild pain.", "metadata": {"source": "notes"}},
        {"text": "Insulin lowers blood glucose."}]});
    let (status, added) = upload(&app, "medical", "application/json", json_docs.to_string().into_bytes()).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["ids"][0], "aspirin");
    let generated = added["ids"][1].as_str().unwrap().to_string();
    assert_eq!(generated.len(), 32, "an id from the text's sha256");
    let csv = "id,title,text,source\nheparin,Heparin,\"Heparin, an anticoagulant, prevents clots.\",nih\n";
    let (status, _) = upload(&app, "medical", "text/csv", csv.as_bytes().to_vec()).await;
    assert_eq!(status, 201);
    let (_, found) = app.post_json("/v1/collections/medical/search", &json!({"query": "anticoagulant clots"})).await;
    assert_eq!(documents(&found)[0], "heparin");
    assert_eq!(found["results"][0]["metadata"], json!({"source": "nih"}));
    assert_eq!(found["results"][0]["title"], "Heparin");

    // The same id replaces the document.
    let again = json!([{"id": "aspirin", "text": "Aspirin is a salicylate."}]);
    upload(&app, "medical", "application/json", again.to_string().into_bytes()).await;
    let (_, found) = app.post_json("/v1/collections/medical/search", &json!({"query": "fever"})).await;
    let aspirin = found["results"].as_array().unwrap().iter().find(|r| r["document_id"] == "aspirin").unwrap();
    assert_eq!(
        (aspirin["text"].as_str(), aspirin["keyword_score"].as_f64()),
        (Some("Aspirin is a salicylate."), Some(0.0))
    );
    assert_eq!(app.get("/v1/collections/medical").await.1["documents"], 3);

    assert_eq!(app.delete("/v1/collections/medical/documents/heparin").await, 204);
    assert_eq!(app.delete("/v1/collections/medical/documents/heparin").await, 404);
    assert_eq!(app.delete("/v1/collections/medical").await, 204);
    assert_error(&app.get("/v1/collections/medical").await, 404, "not_found");
    assert_error(&app.post_json("/v1/collections/medical/search", &json!({"query": "x"})).await, 404, "not_found");
}

#[tokio::test]
async fn bad_uploads_and_searches_are_refused_and_store_nothing() {
    let app = knowledge_app().await;
    for (collection, content_type, body, status, needle) in [
        ("Medical", "application/json", r#"[{"text": "x"}]"#, 400, "collection name"),
        ("ok", "text/plain", "x", 415, "text/csv"),
        ("ok", "application/json", r#"[{"text": "fine"}, {"text": ""}]"#, 400, "document 2"),
        ("ok", "application/json", r#"[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]"#, 400, "twice"),
        ("ok", "application/x-ndjson", "{\"text\": \"x\"}\n{oops", 400, "line 2"),
        ("ok", "text/csv", "title,body\nx,y\n", 400, "`text` column"),
        ("ok", "application/json", "[]", 400, "no documents"),
    ] {
        let (got, body) = upload(&app, collection, content_type, body.as_bytes().to_vec()).await;
        assert_eq!(got, status, "{needle}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{needle}: {body}");
    }
    assert!(app.get("/v1/collections").await.1["collections"].as_array().unwrap().is_empty(), "nothing stored");
    upload(&app, "ok", "application/json", br#"[{"text": "fine words"}]"#.to_vec()).await;
    for (request, code) in [
        (json!({"query": ""}), "invalid_request"),
        (json!({"query": "x", "k": 0}), "invalid_request"),
        (json!({"query": "x", "k": 51}), "invalid_request"),
        (json!({"query": "x".repeat(3000)}), "too_large"),
    ] {
        let result = app.post_json("/v1/collections/ok/search", &request).await;
        assert_eq!(result.1["error"]["code"], code, "{request}: {}", result.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_with_lens_gets_the_passages_and_returns_them_as_sources() {
    let dir = llava_dir();
    // Short chunks: two passages, the question and the answer fit the tiny LLaVA's 256 positions.
    let app = chat_app(&dir, |s| {
        s.knowledge.text_model = Some(text_model());
        s.knowledge.chunk_words = Some(30);
        s.knowledge.chunk_overlap = Some(5);
    })
    .await;
    let model = chat_model_id(&app).await;
    upload(&app, "python", "application/x-ndjson", corpus()).await;
    let (question, topic) = QUERIES[1];
    let body = json!({
        "model": model, "temperature": 0, "max_tokens": 8,
        "messages": [{"role": "user", "content": question}],
        "lens": {"collections": ["python"], "top_k": 2},
    });
    let (status, answer) = app.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let sources: Vec<Passage> = serde_json::from_value(answer["lens"]["sources"].clone()).unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0].document_id, topic);

    // The model saw the passages in a system turn: its answer is the pipeline's with that turn.
    let pipeline = LlavaPipeline::<NdArray<f32>>::from_dir(dir.path(), &Default::default()).unwrap();
    let system = lens::services::knowledge::passages_prompt(&sources);
    // As the chat runtime hands LLaVA its turns: content as parts.
    let turn = |role: &str, text: String| ChatMessage {
        role: role.into(),
        content: Content::Parts(vec![Part::Text { text }]),
    };
    let ids = pipeline.encode_chat(&[turn("system", system), turn("user", question.to_string())], 0);
    let config = GenerationConfig { max_new_tokens: 8, ..Default::default() };
    let expected = pipeline
        .generate_stream(&ids.unwrap(), &[], &config, &[], &mut |_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], expected.text.as_str());
    assert_eq!(answer["usage"]["prompt_tokens"], expected.prompt_tokens);

    // Streamed: the first chunk carries the sources.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let raw = app.post_raw("/v1/chat/completions", "application/json", streamed.to_string().into_bytes()).await;
    let first: Value = serde_json::from_str(&sse_data(&raw.body)[0]).unwrap();
    assert_eq!(first["lens"]["sources"], answer["lens"]["sources"]);

    for (lens, status, code) in [
        (json!({"collections": ["nope"]}), 404, "not_found"),
        (json!({"collections": []}), 400, "invalid_request"),
        (json!({"collections": ["python"], "top_k": 0}), 400, "invalid_request"),
    ] {
        let mut bad = body.clone();
        bad["lens"] = lens;
        assert_error(&app.post_json("/v1/chat/completions", &bad).await, status, code);
    }
}
