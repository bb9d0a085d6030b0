//! `lens generate` as a user runs it: the tiny LLaMA fixtures (models/fixtures/llama-tiny, llama3-tiny) give the
//! token ids transformers' `generate()` gave (reference.json), the text streams to stdout, `--json` reports
//! the completion, the chat template is applied, sampling is repeatable by seed, and bad input is one line
//! on stderr with a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::files::llava_dir;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures").join(name)
}

fn lens(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lens")).args(args).output().unwrap()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "lens failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// The reference's greedy case `capital_greedy_30` of llama-tiny: its prompt text, and the ids generated after it.
fn capital_case() -> (String, Vec<u32>, usize) {
    let meta: Value = serde_json::from_slice(&std::fs::read(fixture("llama-tiny/reference.json")).unwrap()).unwrap();
    let case = &meta["generation"]["capital_greedy_30"];
    let prompt_ids = ids(&case["input_ids"][0]);
    let mut generated = ids(&case["output_ids"][0])[prompt_ids.len()..].to_vec();
    let eos = ids(&case["eos_token_ids"]);
    if let Some(end) = generated.iter().position(|t| eos.contains(t)) {
        generated.truncate(end + 1);
    }
    let pipeline = lens_models::llama::LlamaPipeline::<burn::backend::NdArray<f32>>::from_dir(
        fixture("llama-tiny"),
        &Default::default(),
    )
    .unwrap();
    let text = pipeline.tokenizer.decode(&prompt_ids, true).unwrap();
    assert_eq!(pipeline.encode(&text).unwrap(), prompt_ids, "the prompt text encodes to the reference's ids");
    (text, generated, prompt_ids.len())
}

#[test]
fn raw_prompt_gives_the_reference_ids_streamed_and_as_json() {
    let (prompt, expected, prompt_tokens) = capital_case();
    let model = fixture("llama-tiny").display().to_string();
    let args = ["generate", "--model", &model, "--raw", "--prompt", &prompt, "--max-new-tokens", "30"];
    let out = json(&lens(&[&args[..], &["--json"]].concat()));
    assert_eq!(ids(&out["token_ids"]), expected);
    assert_eq!(out["prompt_tokens"], prompt_tokens);
    let finish = if expected.last() == Some(&2) { "stop" } else { "length" };
    assert_eq!(out["finish_reason"], finish);
    let streamed = lens(&args);
    assert!(streamed.status.success(), "{}", String::from_utf8_lossy(&streamed.stderr));
    assert_eq!(String::from_utf8(streamed.stdout).unwrap(), format!("{}\n", out["text"].as_str().unwrap()));
}

#[test]
fn the_chat_template_shapes_the_prompt() {
    // llama-tiny with the LLaMA-2 chat template of the chat-template fixtures as chat_template.jinja.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("llama-tiny")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let templates: Value = serde_json::from_slice(&std::fs::read(fixture("chat_templates.json")).unwrap()).unwrap();
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        templates["templates"]["llama2"]["source"].as_str().unwrap(),
    )
    .unwrap();
    let model = dir.path().display().to_string();
    let out = json(&lens(&[
        "generate",
        "--model",
        &model,
        "--system",
        "Be brief.",
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "5",
        "--json",
    ]));
    let rendered = "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST]";
    let pipeline =
        lens_models::llama::LlamaPipeline::<burn::backend::NdArray<f32>>::from_dir(dir.path(), &Default::default())
            .unwrap();
    let expected = pipeline.tokenizer.encode_with(rendered, false).unwrap();
    assert_eq!(expected[0], 1, "BOS comes from the template, once");
    assert_eq!(out["prompt_tokens"], expected.len());
    let config = lens_models::generation::GenerationConfig { max_new_tokens: 5, ..Default::default() };
    let ids_after = pipeline.generate_ids(&expected, &config).unwrap();
    assert_eq!(ids(&out["token_ids"])[..], ids_after[expected.len()..]);

    // Without a template the error says what to do.
    let err = lens(&["generate", "--model", &fixture("llama-tiny").display().to_string(), "--prompt", "Hi"]);
    assert!(!err.status.success());
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(stderr.contains("no chat template") && stderr.lines().count() == 1, "{stderr}");
}

#[test]
fn sampling_repeats_by_seed_and_stop_strings_cut() {
    let model = fixture("llama3-tiny").display().to_string();
    let run = |seed: &str| {
        json(&lens(&[
            "generate",
            "--model",
            &model,
            "--raw",
            "--prompt",
            "The cat",
            "--max-new-tokens",
            "24",
            "--temperature",
            "1.5",
            "--top-p",
            "0.95",
            "--seed",
            seed,
            "--json",
        ]))
    };
    let (a, b, c) = (run("7"), run("7"), run("8"));
    assert_eq!(a, b, "same seed, same text");
    assert_ne!(a["token_ids"], c["token_ids"], "another seed, other text");

    let greedy = |extra: &[&str]| {
        json(&lens(
            &[
                &["generate", "--model", &model, "--raw", "--prompt", "The cat", "--max-new-tokens", "24", "--json"],
                extra,
            ]
            .concat(),
        ))
    };
    let whole = greedy(&[]);
    let text = whole["text"].as_str().unwrap();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    assert!(chars.len() > 6, "{text:?}");
    let stop = &text[chars[4].0..chars[6].0];
    let cut = greedy(&["--stop", stop]);
    assert_eq!(cut["text"].as_str().unwrap(), &text[..text.find(stop).unwrap()]);
    assert_eq!(cut["finish_reason"], "stop");
}

#[test]
fn bad_requests_are_one_line_errors() {
    let model = fixture("llama-tiny").display().to_string();
    let long = "x".repeat(20_000);
    for (args, needle) in [
        (vec!["--raw", "--prompt", "Hi", "--max-new-tokens", "0"], "--max-new-tokens"),
        (vec!["--raw", "--prompt", "Hi", "--max-new-tokens", "100"], "context"),
        (vec!["--raw", "--prompt", "Hi", "--temperature", "0"], "temperature"),
        (vec!["--raw", "--prompt", &long], "limit"),
        (vec!["--raw", "--prompt", "Hi", "--max-new-tokens", "5", "--stop", ""], "stop string"),
    ] {
        let out = lens(&[&["generate", "--model", &model][..], &args].concat());
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle) && stderr.trim().lines().count() == 1, "{args:?}: {stderr}");
    }
    let out = lens(&["generate", "--model", "/nonexistent/model", "--prompt", "Hi"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such directory"));
}

#[test]
fn gguf_files_generate_as_loaded_in_process() {
    let file = fixture("gguf-llama/llama3-q4km.gguf");
    let model = file.display().to_string();
    let out = json(&lens(&[
        "generate",
        "--model",
        &model,
        "--raw",
        "--prompt",
        "The cat",
        "--max-new-tokens",
        "12",
        "--json",
    ]));
    let pipeline =
        lens_models::llama::LlamaPipeline::<burn::backend::NdArray<f32>>::from_gguf_file(&file, &Default::default())
            .unwrap();
    let config = lens_models::generation::GenerationConfig { max_new_tokens: 12, ..Default::default() };
    let expected = pipeline.generate("The cat", &config).unwrap();
    assert_eq!(ids(&out["token_ids"]), expected.token_ids);
    assert_eq!(out["text"], expected.text.as_str());
    assert_eq!(out["prompt_tokens"], expected.prompt_tokens);
}

fn llava_reference() -> Value {
    serde_json::from_slice(&std::fs::read(fixture("llava-tiny/default-old/reference.json")).unwrap()).unwrap()
}

fn photo(name: &str) -> String {
    fixture("images").join(name).display().to_string()
}

/// `lens generate --image` on `device`: the reference's greedy cases (prompt rendered from the chat template,
/// images first) give transformers' ids, up to where our run (without `min_new_tokens`) may end at EOS.
fn llava_matches_reference(device: &str) {
    let dir = llava_dir();
    let model = dir.path().display().to_string();
    let meta = llava_reference();
    let mut answers = Vec::new();
    for (case, images, prompt) in [
        ("coffee_greedy_24", vec!["coffee.jpg"], "What is shown in this image?"),
        ("rocket_greedy_24", vec!["rocket.jpg"], "What is shown in this image?"),
        ("two_images_greedy_24", vec!["coffee.jpg", "rocket.jpg"], "What differs between these two pictures?"),
    ] {
        let case = &meta["generation"][case];
        let mut args = vec!["generate", "--model", &model, "--device", device, "--prompt", prompt];
        let photos: Vec<String> = images.iter().map(|n| photo(n)).collect();
        for p in &photos {
            args.extend(["--image", p.as_str()]);
        }
        args.extend(["--max-new-tokens", "24"]);
        let out = json(&lens(&[&args[..], &["--json"]].concat()));
        let prompt_ids = ids(&case["input_ids"]);
        assert_eq!(out["prompt_tokens"], prompt_ids.len(), "{case}");
        let generated = ids(&out["token_ids"]);
        let expected = &ids(&case["output_ids"])[prompt_ids.len()..];
        let eos = ids(&case["eos_token_ids"]);
        let same = generated.len() == 24 || eos.contains(generated.last().unwrap());
        let n = generated.len() - usize::from(generated.len() < 24);
        assert!(same && generated[..n] == expected[..n], "{case}: {generated:?} vs {expected:?}");
        assert!(n >= 20, "{case}: only {n} tokens compared");
        answers.push(generated);
        if device == "cpu" && images.len() == 1 {
            let streamed = lens(&args);
            assert!(streamed.status.success(), "{}", String::from_utf8_lossy(&streamed.stderr));
            assert_eq!(String::from_utf8(streamed.stdout).unwrap(), format!("{}\n", out["text"].as_str().unwrap()));
        }
    }
    assert_ne!(answers[0], answers[1], "two photos, one question: the image decides the answer");
}

#[test]
fn images_go_through_the_chat_template_to_the_reference_ids() {
    llava_matches_reference("cpu");
}

#[test]
fn a_system_turn_and_a_raw_prompt_reach_llava_as_the_processor_encodes_them() {
    let dir = llava_dir();
    let model = dir.path().display().to_string();
    let meta = llava_reference();
    let system = &meta["prompts"]["system"];
    let out = json(&lens(&[
        "generate",
        "--model",
        &model,
        "--system",
        "You are a helpful assistant that describes photos.",
        "--image",
        &photo("astronaut.png"),
        "--prompt",
        "Who is in this picture?",
        "--max-new-tokens",
        "4",
        "--json",
    ]));
    assert_eq!(out["prompt_tokens"], ids(&system["input_ids"]).len());
    let raw = &meta["prompts"]["raw_inline"];
    let out = json(&lens(&[
        "generate",
        "--model",
        &model,
        "--raw",
        "--image",
        &photo("astronaut.png"),
        "--prompt",
        raw["text"].as_str().unwrap(),
        "--max-new-tokens",
        "4",
        "--json",
    ]));
    assert_eq!(out["prompt_tokens"], ids(&raw["input_ids"]).len());
}

#[test]
fn bad_image_requests_are_one_line_errors() {
    let dir = llava_dir();
    let llava = dir.path().display().to_string();
    let llama = fixture("llama-tiny").display().to_string();
    let coffee = photo("coffee.jpg");
    let many: Vec<&str> = std::iter::repeat_n(["--image", coffee.as_str()], 17).flatten().collect();
    for (args, needle) in [
        (vec!["--model", &llama, "--image", &coffee, "--raw", "--prompt", "Hi"], "--image needs a LLaVA"),
        (vec!["--model", &llava, "--image", &photo("corrupt_truncated.jpg"), "--prompt", "Hi"], "cannot decode"),
        (vec!["--model", &llava, "--image", &photo("not_an_image.jpg"), "--prompt", "Hi"], "cannot decode"),
        (vec!["--model", &llava, "--image", "/nonexistent.png", "--prompt", "Hi"], "nonexistent.png"),
        (vec!["--model", &llava, "--image", &coffee, "--raw", "--prompt", "no placeholder"], "Found total 0"),
        (vec!["--model", &llava, "--raw", "--prompt", "<image> without one"], "no images were passed"),
        ([&["--model", llava.as_str(), "--prompt", "Hi"][..], &many].concat(), "at most 16"),
    ] {
        let out = lens(&[&["generate", "--max-new-tokens", "4"][..], &args].concat());
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle) && stderr.trim().lines().count() == 1, "{args:?}: {stderr}");
    }
}

/// LLaMA and LLaVA on burn-wgpu (Mesa's lavapipe without a GPU) give the reference's greedy ids.
#[cfg(feature = "wgpu")]
#[test]
fn llama_and_llava_on_wgpu_give_the_reference_ids() {
    let (prompt, expected, _) = capital_case();
    let model = fixture("llama-tiny").display().to_string();
    let args = ["generate", "--model", &model, "--device", "wgpu", "--raw", "--prompt", &prompt];
    let out = json(&lens(&[&args[..], &["--max-new-tokens", "30", "--json"]].concat()));
    assert_eq!(ids(&out["token_ids"]), expected);
    llava_matches_reference("wgpu");
}
