//! Chat templates: a checkpoint's Jinja template turning a conversation into the prompt text it was
//! trained on, rendered by minijinja as `apply_chat_template(messages, tokenize=False,
//! add_generation_prompt=...)` renders it.
//!
//! Reference: `transformers/utils/chat_template_utils.py` (transformers v5.23.0): a sandboxed Jinja
//! environment with `trim_blocks` and `lstrip_blocks`, the `loopcontrols` extension, `raise_exception`,
//! `strftime_now` and a `tojson` that is Python's `json.dumps` (no HTML escaping, `ensure_ascii=False`), and
//! the `{% generation %}` … `{% endgeneration %}` block (it marks assistant text for training masks and
//! renders its body unchanged: here it becomes an `{% if true %}` block with the same whitespace control).
//! Python string methods templates call (`strip`, `startswith`, `title`, …) come from minijinja-contrib's
//! `pycompat`. The special tokens of the tokenizer (`bos_token`, `eos_token`, …) are variables, as there.
//!
//! Where the template comes from: `chat_template.jinja` (transformers 5), else `chat_template.json`
//! (`{"chat_template": …}`, processors such as LLaVA's), else `tokenizer_config.json`'s `chat_template`
//! (a string, or a list of named templates of which `default` is taken).

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Longest template source, in bytes (published ones are a few KB).
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;
/// Rendering work allowed (minijinja's fuel: about one unit per instruction), so that a template cannot
/// loop for long on hostile input.
const FUEL: u64 = 5_000_000;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (templates may know others, e.g. `tool`).
    pub role: String,
    pub content: Content,
}

/// A message's content: text, or parts (text and images), as the OpenAI and transformers formats write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// Part of a message: what a template sees is `{"type": "text", "text": …}` or `{"type": "image"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Part {
    Text { text: String },
    Image,
}

impl ChatMessage {
    pub fn text(role: &str, text: impl Into<String>) -> Self {
        ChatMessage { role: role.to_string(), content: Content::Text(text.into()) }
    }

    /// A user turn with `images` image parts first, then the text (as LLaVA's examples order them).
    pub fn user_with_images(images: usize, text: impl Into<String>) -> Self {
        let mut parts = vec![Part::Image; images];
        parts.push(Part::Text { text: text.into() });
        ChatMessage { role: "user".into(), content: Content::Parts(parts) }
    }
}

/// The special tokens a template may refer to (`bos_token`, `eos_token`, `unk_token`, `pad_token`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateTokens {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub unk_token: Option<String>,
    pub pad_token: Option<String>,
}

impl TemplateTokens {
    /// The special tokens named in a `tokenizer_config.json` (strings, or `AddedToken` objects with `content`).
    pub fn from_tokenizer_config(bytes: &[u8]) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::config("tokenizer_config.json", e))?;
        let token = |key: &str| crate::tokenizer::special_token(&value, key);
        Ok(TemplateTokens {
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            unk_token: token("unk_token"),
            pad_token: token("pad_token"),
        })
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    tokens: TemplateTokens,
    /// Seconds since the Unix epoch, for `strftime_now`.
    clock: fn() -> i64,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("tokens", &self.tokens).finish_non_exhaustive()
    }
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compile a template source; syntax errors are reported with their line.
    pub fn new(source: &str, tokens: TemplateTokens) -> Result<Self> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(Error::config(
                NAME,
                format!("template of {} bytes is longer than the limit of {MAX_TEMPLATE_BYTES}", source.len()),
            ));
        }
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::config(NAME, e))?;
        env.set_syntax(syntax);
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, without_generation_tags(source)).map_err(|e| Error::config(NAME, e))?;
        Ok(ChatTemplate { env, tokens, clock: now_seconds })
    }

    /// The template of a checkpoint's files (see the module docs for the order), `None` when it has none.
    pub fn from_checkpoint(
        chat_template_jinja: Option<&[u8]>,
        chat_template_json: Option<&[u8]>,
        tokenizer_config: Option<&[u8]>,
    ) -> Result<Option<Self>> {
        let tokens = match tokenizer_config {
            Some(bytes) => TemplateTokens::from_tokenizer_config(bytes)?,
            None => TemplateTokens::default(),
        };
        let source = if let Some(bytes) = chat_template_jinja {
            Some(String::from_utf8(bytes.to_vec()).map_err(|e| Error::config("chat_template.jinja", e))?)
        } else if let Some(bytes) = chat_template_json {
            let value: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| Error::config("chat_template.json", e))?;
            Some(
                template_field(&value, "chat_template.json")?
                    .ok_or_else(|| Error::config("chat_template.json", "no `chat_template` string in it"))?,
            )
        } else if let Some(bytes) = tokenizer_config {
            let value: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| Error::config("tokenizer_config.json", e))?;
            template_field(&value, "tokenizer_config.json")?
        } else {
            None
        };
        source.map(|s| ChatTemplate::new(&s, tokens)).transpose()
    }

    /// The special tokens the template is rendered with (`bos_token`, ...).
    pub fn tokens(&self) -> &TemplateTokens {
        &self.tokens
    }

    /// Render `messages`; with `add_generation_prompt`, the text that opens the assistant's reply follows.
    /// `raise_exception` in the template and rendering errors come back as [`Error::InvalidInput`] (the
    /// conversation is what the template refused).
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template(NAME).map_err(|e| Error::config(NAME, e))?;
        let messages = messages_value(messages);
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.tokens.bos_token.clone().unwrap_or_default(),
            eos_token => self.tokens.eos_token.clone().unwrap_or_default(),
            unk_token => self.tokens.unk_token.clone(),
            pad_token => self.tokens.pad_token.clone(),
            __lens_now => (self.clock)(),
        };
        template.render(ctx).map_err(|e| {
            let detail = match e.kind() {
                ErrorKind::InvalidOperation if e.detail().is_some() => e.detail().unwrap_or_default().to_string(),
                _ => format!("{e:#}"),
            };
            Error::invalid_input(format!("the chat template refused the conversation: {detail}"))
        })
    }

    /// The same template with another clock (tests: a fixed date for `strftime_now`).
    pub fn with_clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }
}

/// Messages as the template sees them: dicts with their keys in the order the OpenAI format and transformers'
/// examples write them (`role`, `content`; `type`, `text`), which `tojson` shows (`context!` maps keep their
/// order with minijinja's `preserve_order`).
fn messages_value(messages: &[ChatMessage]) -> Value {
    let part = |p: &Part| match p {
        Part::Text { text } => minijinja::context! { type => "text", text => text.as_str() },
        Part::Image => minijinja::context! { type => "image" },
    };
    Value::from(
        messages
            .iter()
            .map(|m| {
                let content = match &m.content {
                    Content::Text(text) => Value::from(text.as_str()),
                    Content::Parts(parts) => Value::from(parts.iter().map(part).collect::<Vec<_>>()),
                };
                minijinja::context! { role => m.role.as_str(), content => content }
            })
            .collect::<Vec<_>>(),
    )
}

/// `chat_template` of a JSON object: a string, or `[{"name", "template"}]` of which `default` is used.
fn template_field(value: &serde_json::Value, file: &str) -> Result<Option<String>> {
    match value.get("chat_template") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Array(named)) => {
            let default = named.iter().find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"));
            match default.and_then(|t| t.get("template")).and_then(|t| t.as_str()) {
                Some(s) => Ok(Some(s.to_string())),
                None => Err(Error::config(file, "a list of chat templates without one named `default`")),
            }
        }
        Some(_) => Err(Error::config(file, "`chat_template` is neither a string nor a list of named templates")),
    }
}

/// `{% generation %}` / `{% endgeneration %}` (with any `-`/`+` whitespace control) as an always-true `if`.
fn without_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let (open, body) = match inner.strip_prefix(['-', '+']) {
            Some(body) => (&inner[..1], body),
            None => ("", inner),
        };
        let (body, close) = match body.strip_suffix(['-', '+']) {
            Some(body) => (body, &inner[inner.len() - 1..]),
            None => (body, ""),
        };
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => out.push_str(&format!("{{%{open} {r} {close}%}}")),
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current UTC time, formatted. The directives published templates use
/// (`%d %b %Y`, …): `%Y %y %m %d %e %j %B %b %A %a %H %I %M %S %p %%`.
fn strftime_now(state: &minijinja::State, format: String) -> std::result::Result<String, minijinja::Error> {
    let now = state.lookup("__lens_now").and_then(|v| v.as_i64()).unwrap_or(0);
    strftime(now, &format).map_err(|d| minijinja::Error::new(ErrorKind::InvalidOperation, d))
}

fn strftime(unix_seconds: i64, format: &str) -> std::result::Result<String, String> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:2}")),
            Some('j') => out.push_str(&format!("{day_of_year:03}")),
            Some('B') => out.push_str(MONTHS[month as usize - 1]),
            Some('b') => out.push_str(&MONTHS[month as usize - 1][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('H') => out.push_str(&format!("{hour:02}")),
            Some('I') => out.push_str(&format!("{:02}", (hour + 11) % 12 + 1)),
            Some('M') => out.push_str(&format!("{minute:02}")),
            Some('S') => out.push_str(&format!("{second:02}")),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('%') => out.push('%'),
            other => return Err(format!("strftime_now: unsupported directive %{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(not(target_arch = "wasm32"))]
fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(target_arch = "wasm32")]
fn now_seconds() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`; Python's default separators are `", "` and `": "`.
fn tojson(value: Value, kwargs: minijinja::value::Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators {
        Some(seps) => {
            let parts: Vec<String> = seps.try_iter()?.map(|v| v.to_string()).collect();
            match parts.as_slice() {
                [a, b] => (a.clone(), b.clone()),
                _ => return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "separators must be a pair")),
            }
        }
        // With an indent Python's item separator loses its trailing space.
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let mut out = String::new();
    let style = JsonStyle { indent, item_sep, key_sep, sort_keys: sort_keys.unwrap_or(false) };
    write_json(&mut out, &value, &style, 0)?;
    Ok(Value::from_safe_string(out))
}

struct JsonStyle {
    indent: Option<usize>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

fn write_json(
    out: &mut String,
    v: &Value,
    style: &JsonStyle,
    depth: usize,
) -> std::result::Result<(), minijinja::Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = style.indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => match v.as_i64() {
            Some(i) if !v.to_string().contains(['.', 'e', 'E']) => out.push_str(&i.to_string()),
            _ => {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                out.push_str(&python_float(f));
            }
        },
        ValueKind::String => write_json_string(out, v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline(out, depth + 1);
                write_json(out, item, style, depth + 1)?;
            }
            newline(out, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if style.sort_keys {
                keys.sort_by_key(|k| k.to_string());
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline(out, depth + 1);
                write_json_string(out, &key.to_string());
                out.push_str(&style.key_sep);
                write_json(out, &v.get_item(key)?, style, depth + 1)?;
            }
            newline(out, depth);
            out.push('}');
        }
        _ => write_json_string(out, &v.to_string()),
    }
    Ok(())
}

/// A JSON string as `json.dumps(..., ensure_ascii=False)` writes it.
fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `repr(float)`: the shortest text that reads back the same, with `.0` on integral values.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, as `repr` does; only the layout differs.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponents are integers");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    let body = if (-4..16).contains(&exp) {
        let point = exp + 1;
        if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        }
    } else {
        let mantissa = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits };
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_plain_blocks_keeping_whitespace_control() {
        assert_eq!(
            without_generation_tags("a{%- generation -%}b{% endgeneration %}c{{ x }}{% if y %}"),
            "a{%- if true -%}b{% endif %}c{{ x }}{% if y %}"
        );
    }

    #[test]
    fn floats_are_written_as_python_repr_writes_them() {
        let cases = [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123.456, "123.456"),
            (2.5e300, "2.5e+300"),
        ];
        for (f, python) in cases {
            assert_eq!(python_float(f), python, "{f}");
        }
    }

    #[test]
    fn dates_are_gregorian() {
        // 2026-12-06 10:00:00 UTC was a Sunday.
        let t = 1_796_551_200;
        assert_eq!(
            strftime(t, "%d %b %Y %A %H:%M:%S %j %y %e %I%p %%").unwrap(),
            "06 Dec 2026 Sunday 10:00:00 340 26  6 10AM %"
        );
        assert_eq!(strftime(0, "%Y-%m-%d %a").unwrap(), "1970-01-01 Thu");
        assert_eq!(strftime(951_782_400, "%Y-%m-%d").unwrap(), "2000-02-29");
        assert!(strftime(0, "%Q").is_err());
        for days in [-800_000, -1, 0, 59, 11_016, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
