//! The tokenizer a LLaMA GGUF file describes in its metadata, built as a `tokenizers::Tokenizer` the way
//! transformers builds it (transformers v5.23.0 `integrations/gguf/gguf_tokenizer_mapping.py`: `get_gguf_tokenizer`,
//! `convert_gguf_tokenizer`, `sentencepiece_tokenizer`, `byte_level_tokenizer`, `add_gguf_special_tokens`,
//! `set_split_regex`; the classes it hands the vocabulary to, `LlamaTokenizer` and `GPT2Tokenizer`; and
//! `TokenizersBackend.update_post_processor`), so the ids are `AutoTokenizer.from_pretrained(dir, gguf_file=...)`'s.
//!
//! - `tokenizer.ggml.model = "llama"` (SentencePiece): a BPE over the file's tokens with byte fallback, merges
//!   recovered from the scores (`generate_merges`), a `Metaspace` pre-tokenizer that prepends `▁` to the first
//!   word only (`prepend_scheme: first`), no normalizer.
//! - `"gpt2"` (byte-level BPE): tokens (re-spelled in the byte alphabet where they are not), the file's merges, and
//!   the split regex named by `tokenizer.ggml.pre` (`llama-bpe`, `llama3`, ... the LLaMA 3 regex; `gpt-4o`,
//!   `llama4`, ...; no name or `default`, `gpt-2`: GPT-2's byte-level regex).
//! - Special tokens: every `CONTROL` token (type 3), the BOS / EOS / UNK / padding tokens the metadata names, and
//!   the class defaults (`<unk>`, `<s>`, `</s>`; `<|endoftext|>`) where the vocabulary has them; `USER_DEFINED`
//!   tokens (type 4) are matched whole but are not special. BOS is added when `tokenizer.ggml.add_bos_token` says
//!   so (SentencePiece files without the key: yes), EOS when `add_eos_token` does.
//!
//! Where llama.cpp differs, transformers is followed (and the tests pin the difference):
//! - SentencePiece text that starts with spaces: llama.cpp, like sentencepiece, always prepends the dummy `▁`
//!   (`" Hello"` → `▁▁Hello` = `[29871, 15043]`); `Metaspace(first)` does not when the text already starts
//!   with one (`[15043]`). `tokenizer.ggml.add_space_prefix` is ignored, as transformers ignores it.
//! - transformers adds `GPT2Tokenizer`'s default `<|endoftext|>` as a new id past the vocabulary when a
//!   byte-level file has no such token; that id could not be embedded, so it is not added here.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};
use tokenizers::Tokenizer;

use crate::gguf::Metadata;
use crate::{Error, Result};

use super::metadata::{flag, gguf_error, integer, metadata_error};

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// LLaMA 3's split regex (`_LLAMA3_SPLIT`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-4o's (`_GPT4O_SPLIT`), which LLaMA 4 uses.
const GPT4O_SPLIT: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

/// The split regex transformers uses for a `tokenizer.ggml.pre` name (`GGUF_PRE_TOKENIZER_SPLITS`): `Ok(None)` for
/// GPT-2's byte-level default, an error for the names transformers knows and Lens does not implement.
fn split_regex(pre: Option<&str>) -> Result<Option<&'static str>> {
    Ok(match pre {
        Some(
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
            | "jina-v5-nano" | "dbrx" | "smaug-bpe",
        ) => Some(LLAMA3_SPLIT),
        Some("gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2") => Some(GPT4O_SPLIT),
        Some(name @ ("tekken" | "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "qwen35")) => {
            return Err(tokenizer_error(format!("tokenizer.ggml.pre `{name}` is not supported")));
        }
        _ => None,
    })
}

fn tokenizer_error(message: impl Into<String>) -> Error {
    Error::Tokenizer { message: format!("GGUF tokenizer: {}", message.into()) }
}

/// The token ids the metadata names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GgufSpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// `tokenizer.ggml.eot_token_id`: end of turn (`<|eot_id|>` in LLaMA 3 chat models).
    pub eot: Option<u32>,
    /// `tokenizer.ggml.eom_token_id`: end of message (`<|eom_id|>`, LLaMA 3.1 tool calls).
    pub eom: Option<u32>,
}

impl GgufSpecialIds {
    /// `tokenizer.ggml.{bos,eos,unknown,padding,eot,eom}_token_id`, each checked against the vocabulary size.
    pub fn from_metadata(md: &Metadata, vocab_size: usize) -> Result<Self> {
        let id = |name: &str| -> Result<Option<u32>> {
            let key = format!("tokenizer.ggml.{name}_token_id");
            match integer(md, &key)? {
                None => Ok(None),
                Some(id) if (id as usize) < vocab_size => Ok(Some(id as u32)),
                Some(id) => Err(metadata_error(format!("`{key}` {id} is outside the vocabulary of {vocab_size}"))),
            }
        };
        Ok(GgufSpecialIds {
            bos: id("bos")?,
            eos: id("eos")?,
            unk: id("unknown")?,
            pad: id("padding")?,
            eot: id("eot")?,
            eom: id("eom")?,
        })
    }
}

/// GPT-2's `bytes_to_unicode`: the printable character standing for each byte.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).expect("latin-1")
        } else {
            extra += 1;
            char::from_u32(255 + extra).expect("below the surrogates")
        };
    }
    table
}

/// transformers' `generate_merges(vocab, vocab_scores)`: every split of a token into two tokens of the vocabulary,
/// ordered by the token's score (best first), then by the lengths (in characters) of the left and right parts
/// (longest first), ties in vocabulary order. With `scores` absent the order is by id, ascending.
fn generate_merges(tokens: &[String], scores: Option<&[f32]>) -> Vec<(String, String)> {
    let vocab: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    // `dict(zip(tokens, scores))`: first-seen order, last value.
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut key_of: HashMap<&str, f64> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let key = match scores {
            Some(s) => s[i] as f64,
            None => vocab[t.as_str()] as f64,
        };
        if key_of.insert(t.as_str(), key).is_none() {
            order.push(t.as_str());
        }
    }
    let mut merges: Vec<(&str, &str, f64, usize, usize)> = Vec::new();
    for token in order {
        let key = key_of[token];
        let mut local = Vec::new();
        let boundaries: Vec<usize> = token.char_indices().map(|(i, _)| i).skip(1).collect();
        let n_chars = boundaries.len() + 1;
        for (k, &at) in boundaries.iter().enumerate() {
            let (l, r) = token.split_at(at);
            if let (Some(&il), Some(&ir)) = (vocab.get(l), vocab.get(r)) {
                local.push((l, r, key, k + 1, n_chars - k - 1, il, ir));
            }
        }
        local.sort_by_key(|m| (m.5, m.6));
        merges.extend(local.into_iter().map(|(l, r, key, ll, lr, _, _)| (l, r, key, ll, lr)));
    }
    let cmp = |a: &(&str, &str, f64, usize, usize), b: &(&str, &str, f64, usize, usize)| {
        a.2.total_cmp(&b.2).then(a.3.cmp(&b.3)).then(a.4.cmp(&b.4))
    };
    if scores.is_some() {
        merges.sort_by(|a, b| cmp(b, a)); // `reverse=True`, stable
    } else {
        merges.sort_by(cmp);
    }
    merges.into_iter().map(|(l, r, ..)| (l.to_string(), r.to_string())).collect()
}

/// The `tokenizer.json` transformers' backend tokenizer serialises to, for this metadata.
fn tokenizer_json(md: &Metadata, special: &GgufSpecialIds) -> Result<Value> {
    let model = md.get_str("tokenizer.ggml.model").map_err(gguf_error)?;
    let tokens = md.get_str_array("tokenizer.ggml.tokens").map_err(gguf_error)?;
    if tokens.is_empty() {
        return Err(tokenizer_error("`tokenizer.ggml.tokens` is empty"));
    }
    let token_types: Option<&[i32]> = match md.get("tokenizer.ggml.token_type") {
        None => None,
        Some(_) => Some(md.get_i32_array("tokenizer.ggml.token_type").map_err(gguf_error)?),
    };
    if let Some(types) = token_types
        && types.len() != tokens.len()
    {
        return Err(tokenizer_error(format!("{} token types for {} tokens", types.len(), tokens.len())));
    }
    let scores: Option<&[f32]> = match md.get("tokenizer.ggml.scores") {
        None => None,
        Some(_) => Some(md.get_f32_array("tokenizer.ggml.scores").map_err(gguf_error)?),
    };
    if let Some(s) = scores
        && s.len() != tokens.len()
    {
        return Err(tokenizer_error(format!("{} scores for {} tokens", s.len(), tokens.len())));
    }
    let byte_level = match model {
        "llama" => false,
        "gpt2" => true,
        other => {
            return Err(tokenizer_error(format!(
                "tokenizer.ggml.model `{other}` is not supported (`llama` and `gpt2` are)"
            )));
        }
    };

    // The vocabulary, re-spelled in the byte alphabet for byte-level files (`byte_level_tokenizer`).
    let spelling = bytes_to_unicode();
    let alphabet: HashSet<char> = spelling.iter().copied().collect();
    let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let spelled: Vec<String> = if byte_level {
        tokens
            .iter()
            .map(|t| if in_alphabet(t) { t.clone() } else { t.bytes().map(|b| spelling[b as usize]).collect() })
            .collect()
    } else {
        tokens.to_vec()
    };
    let mut vocab = Map::new();
    for (i, t) in spelled.iter().enumerate() {
        vocab.insert(t.clone(), json!(i));
    }

    // Merges from the file, or recovered from the scores (`get_merges`).
    let merges: Vec<(String, String)> = match md.get("tokenizer.ggml.merges") {
        Some(_) => md
            .get_str_array("tokenizer.ggml.merges")
            .map_err(gguf_error)?
            .iter()
            .map(|m| {
                let mut parts = m.split(' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(l), Some(r), None) => Ok((l.to_string(), r.to_string())),
                    _ => Err(tokenizer_error(format!("merge {m:?} is not two tokens separated by a space"))),
                }
            })
            .collect::<Result<_>>()?,
        None if scores.is_some() => generate_merges(&spelled, scores),
        None => return Err(tokenizer_error("no `tokenizer.ggml.merges` and no `tokenizer.ggml.scores`")),
    };

    // Added tokens: the class defaults, CONTROL tokens, the named special tokens; USER_DEFINED ones unspecial.
    let defaults: &[&str] = if byte_level { &["<|endoftext|>"] } else { &["<unk>", "<s>", "</s>"] };
    let mut special_ids: Vec<usize> =
        defaults.iter().filter_map(|t| vocab.get(*t)?.as_u64()).map(|i| i as usize).collect();
    let mut user_ids = Vec::new();
    if let Some(types) = token_types {
        for (i, (&ty, token)) in types.iter().zip(tokens).enumerate() {
            if ty == CONTROL && (!byte_level || in_alphabet(token)) {
                special_ids.push(i);
            } else if ty == USER_DEFINED && vocab.contains_key(token.as_str()) {
                user_ids.push(vocab[token.as_str()].as_u64().expect("id") as usize);
            }
        }
    }
    special_ids.extend([special.bos, special.eos, special.unk, special.pad].into_iter().flatten().map(|i| i as usize));
    let mut seen = HashSet::new();
    let mut added = Vec::new();
    for (ids, is_special) in [(special_ids, true), (user_ids, false)] {
        for i in ids {
            // The id the model's vocabulary gives this content (a duplicated token resolves to its last id).
            let content = &spelled[i];
            let id = vocab[content.as_str()].as_u64().expect("id");
            if seen.insert(id) {
                added.push(json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                                  "rstrip": false, "normalized": false, "special": is_special}));
            }
        }
    }
    added.sort_by_key(|t| t["id"].as_u64());

    // BOS / EOS around each sequence (`update_post_processor`).
    let add_bos = flag(md, "tokenizer.ggml.add_bos_token")?.unwrap_or(!byte_level) && special.bos.is_some();
    let add_eos = flag(md, "tokenizer.ggml.add_eos_token")?.unwrap_or(false) && special.eos.is_some();
    let piece = |id: Option<u32>, type_id: u32| -> Value {
        json!({"SpecialToken": {"id": &spelled[id.expect("checked") as usize], "type_id": type_id}})
    };
    let mut single = Vec::new();
    let mut pair = Vec::new();
    for (seq, type_id) in [("A", 0u32), ("B", 1)] {
        let mut part = Vec::new();
        if add_bos {
            part.push(piece(special.bos, type_id));
        }
        part.push(json!({"Sequence": {"id": seq, "type_id": type_id}}));
        if add_eos {
            part.push(piece(special.eos, type_id));
        }
        if seq == "A" {
            single = part.clone();
        }
        pair.extend(part);
    }
    let mut special_tokens = Map::new();
    for (on, id) in [(add_bos, special.bos), (add_eos, special.eos)] {
        if on {
            let content = &spelled[id.expect("checked") as usize];
            special_tokens.insert(content.clone(), json!({"id": content, "ids": [id], "tokens": [content]}));
        }
    }
    let post_processor = json!({"type": "TemplateProcessing", "single": single, "pair": pair,
                                "special_tokens": special_tokens});

    let (pre_tokenizer, decoder, bpe_flags) = if byte_level {
        let pre = match split_regex(md.get_str("tokenizer.ggml.pre").ok())? {
            Some(regex) => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}),
            None => json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
        };
        let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
        (
            pre,
            decoder,
            json!({"continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false,
                               "byte_fallback": false}),
        )
    } else {
        let pre = json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false});
        let decoder = json!({"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]});
        (
            pre,
            decoder,
            json!({"continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
                               "byte_fallback": true}),
        )
    };
    let mut bpe = json!({"type": "BPE", "dropout": null, "unk_token": null, "ignore_merges": false,
                         "vocab": vocab, "merges": merges.into_iter().map(|(l, r)| json!([l, r])).collect::<Vec<_>>()});
    for (k, v) in bpe_flags.as_object().expect("object") {
        bpe[k] = v.clone();
    }
    Ok(json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
              "pre_tokenizer": pre_tokenizer, "post_processor": post_processor, "decoder": decoder, "model": bpe}))
}

/// The tokenizer of a LLaMA GGUF file's metadata (see the module docs), and the special ids it names.
pub fn tokenizer_from_metadata(md: &Metadata) -> Result<(Tokenizer, GgufSpecialIds)> {
    let n_tokens = md.get_array("tokenizer.ggml.tokens").map_err(gguf_error)?.len();
    let special = GgufSpecialIds::from_metadata(md, n_tokens)?;
    let json = tokenizer_json(md, &special)?;
    let text = serde_json::to_string(&json).map_err(|e| tokenizer_error(e.to_string()))?;
    drop(json);
    let tokenizer: Tokenizer = text.parse().map_err(|e: tokenizers::Error| tokenizer_error(e.to_string()))?;
    Ok((tokenizer, special))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let t = bytes_to_unicode();
        assert_eq!((t[b' ' as usize], t[b'\n' as usize], t[b'A' as usize], t[0]), ('Ġ', 'Ċ', 'A', 'Ā'));
    }

    #[test]
    fn merges_follow_scores_then_lengths() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"].iter().map(|s| s.to_string()).collect();
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -0.5];
        let merges = generate_merges(&tokens, Some(&scores));
        let pairs: Vec<(&str, &str)> = merges.iter().map(|(l, r)| (l.as_str(), r.as_str())).collect();
        // abc (-0.5): "a"+"bc" (left 1 char) and "ab"+"c" (left 2): the longer left part first.
        assert_eq!(pairs, [("ab", "c"), ("a", "bc"), ("a", "b"), ("b", "c")]);
    }
}
