//! Chat templates rendered by minijinja against transformers' own renderer (`render_jinja_template`,
//! transformers 5.23.0), on templates in the style of the published LLaMA-2, LLaMA-3, LLaMA-3.1 and LLaVA-1.5
//! ones and conversations with unicode, system turns, images and out-of-order roles
//! (`models/generate_chat_template_fixtures.py` → `models/fixtures/chat_templates.json`). Exact text equality;
//! where the reference raised, the same message.

use lens_models::chat_template::{ChatMessage, ChatTemplate, TemplateTokens};
use serde_json::Value;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const FIXTURE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/chat_templates.json"));

fn template(spec: &Value) -> ChatTemplate {
    let token = |k: &str| spec[k].as_str().map(str::to_string);
    let tokens = TemplateTokens { bos_token: token("bos_token"), eos_token: token("eos_token"), ..Default::default() };
    ChatTemplate::new(spec["source"].as_str().unwrap(), tokens).unwrap()
}

#[test]
fn renders_as_transformers_renders() {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    let mut errors = 0;
    for (i, case) in cases.iter().enumerate() {
        let template = template(&fixture["templates"][case["template"].as_str().unwrap()]);
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let rendered = template.render(&messages, case["add_generation_prompt"].as_bool().unwrap());
        match (case.get("expected"), rendered) {
            (Some(expected), Ok(text)) => assert_eq!(text, expected.as_str().unwrap(), "case {i}: {case}"),
            (None, Err(e)) => {
                errors += 1;
                let message = case["error"].as_str().unwrap();
                assert!(e.to_string().contains(message), "case {i}: `{e}` lacks `{message}`");
            }
            (expected, got) => panic!("case {i}: expected {expected:?}, got {got:?}"),
        }
    }
    assert!(errors > 0, "the fixture has cases the template refuses");
}

#[test]
fn templates_come_from_the_checkpoint_files_in_transformers_order() {
    let config = br#"{"bos_token": {"content": "<s>"}, "eos_token": "</s>", "chat_template": "C{{ bos_token }}"}"#;
    let render = |t: Option<ChatTemplate>| t.unwrap().render(&[], false).unwrap();
    assert_eq!(render(ChatTemplate::from_checkpoint(None, None, Some(config)).unwrap()), "C<s>");
    let json = br#"{"chat_template": "J{{ eos_token }}"}"#;
    assert_eq!(render(ChatTemplate::from_checkpoint(None, Some(json), Some(config)).unwrap()), "J</s>");
    assert_eq!(render(ChatTemplate::from_checkpoint(Some(b"F"), Some(json), Some(config)).unwrap()), "F");
    let named = br#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#;
    assert_eq!(render(ChatTemplate::from_checkpoint(None, None, Some(named)).unwrap()), "D");
    assert!(ChatTemplate::from_checkpoint(None, None, Some(b"{}")).unwrap().is_none());
    assert!(ChatTemplate::from_checkpoint(None, None, None).unwrap().is_none());
}

#[test]
fn bad_templates_and_runaway_loops_are_errors() {
    let syntax = ChatTemplate::new("{% for m in messages %}", TemplateTokens::default()).unwrap_err();
    assert!(syntax.to_string().contains("chat_template"), "{syntax}");
    let endless = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
    let err = ChatTemplate::new(endless, TemplateTokens::default()).unwrap().render(&[], true).unwrap_err();
    assert!(err.to_string().contains("fuel") || err.to_string().contains("range"), "{err}");
}
