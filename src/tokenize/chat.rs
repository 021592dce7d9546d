//! Chat models' text side: tokenizer.json through the `tokenizers` crate, and the chat
//! template of tokenizer_config.json rendered with minijinja exactly as transformers'
//! `apply_chat_template(messages, tokenize=False, add_generation_prompt=True)` renders it
//! (trim_blocks, lstrip_blocks, loop controls, Python-style `tojson`, `raise_exception`,
//! `strftime_now`, Python string methods). Prompts are encoded with no special tokens added,
//! as transformers does for a rendered template.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

use crate::error::{Error, Result};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Message {
        Message {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

/// The files a chat tokenizer is made of.
#[derive(Debug, Clone, Default)]
pub struct ChatFiles<'a> {
    pub tokenizer_json: Option<&'a Path>,
    pub tokenizer_config: Option<&'a Path>,
    /// transformers ≥ 4.43 may save the template on its own; it wins over tokenizer_config's.
    pub chat_template: Option<&'a Path>,
    pub generation_config: Option<&'a Path>,
    pub config: Option<&'a Path>,
}

impl ChatFiles<'_> {
    /// The chat files of a resolved model.
    pub fn of(model: &crate::models::ResolvedModel) -> ChatFiles<'_> {
        ChatFiles {
            tokenizer_json: model.file("tokenizer.json"),
            tokenizer_config: model.file("tokenizer_config.json"),
            chat_template: model.file("chat_template.jinja"),
            generation_config: model.file("generation_config.json"),
            config: model.file("config.json"),
        }
    }
}

/// Tokens that end an assistant turn in the common chat formats; those the vocabulary has
/// are stop tokens even where generation_config.json forgets them.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
];

/// A tokenizer with its chat template and stop tokens.
pub struct ChatTokenizer {
    tokenizer: tokenizers::Tokenizer,
    template: ChatTemplate,
    stop_ids: Vec<u32>,
    /// Strings that the tokenizer turns into control tokens wherever they appear.
    control_strings: Vec<String>,
}

fn file_err(path: &Path, what: impl Into<String>) -> Error {
    Error::ModelFile {
        path: path.to_path_buf(),
        what: what.into(),
        source: None,
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::ModelFile {
        path: path.to_path_buf(),
        what: "not valid JSON".into(),
        source: Some(Box::new(e)),
    })
}

/// A token given as a string or as an AddedToken object `{"content": …}`.
fn token_string(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// `eos_token_id` as a number or a list.
fn ids_of(value: &serde_json::Value) -> Vec<u32> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32).into_iter().collect(),
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_u64())
            .map(|n| n as u32)
            .collect(),
        _ => vec![],
    }
}

impl ChatTokenizer {
    pub fn load(files: &ChatFiles) -> Result<ChatTokenizer> {
        let tokenizer_path = files.tokenizer_json.ok_or_else(|| Error::ModelFolder {
            path: PathBuf::from("."),
            problem: "no tokenizer.json".into(),
        })?;
        let tokenizer =
            tokenizers::Tokenizer::from_file(tokenizer_path).map_err(|e| Error::ModelFile {
                path: tokenizer_path.to_path_buf(),
                what: "not a readable tokenizer.json".into(),
                source: Some(e),
            })?;
        let config = match files.tokenizer_config {
            Some(path) => read_json(path)?,
            None => serde_json::Value::Null,
        };
        let template_origin = files
            .chat_template
            .or(files.tokenizer_config)
            .unwrap_or(tokenizer_path);
        let source = match files.chat_template {
            Some(path) => std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?,
            None => template_from_config(&config).ok_or_else(|| {
                file_err(
                    template_origin,
                    "no chat_template: this is not an instruct/chat model's tokenizer \
                     (give the -Instruct variant)",
                )
            })?,
        };
        let mut special = serde_json::Map::new();
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            if let Some(token) = config.get(key).and_then(token_string) {
                special.insert(key.to_string(), token.into());
            }
        }
        let template = ChatTemplate::new(source, special, template_origin)?;

        let mut stop: Vec<u32> = Vec::new();
        if let Some(path) = files.generation_config {
            stop.extend(ids_of(&read_json(path)?["eos_token_id"]));
        }
        if stop.is_empty() {
            if let Some(path) = files.config {
                stop.extend(ids_of(&read_json(path)?["eos_token_id"]));
            }
        }
        let eos = config.get("eos_token").and_then(token_string);
        for token in eos
            .iter()
            .map(String::as_str)
            .chain(END_OF_TURN.iter().copied())
        {
            if let Some(id) = tokenizer.token_to_id(token) {
                stop.push(id);
            }
        }
        let mut seen = BTreeSet::new();
        stop.retain(|id| seen.insert(*id));
        if stop.is_empty() {
            return Err(file_err(
                template_origin,
                "no end-of-sequence token: neither generation_config.json nor \
                 tokenizer_config.json names one",
            ));
        }

        let mut control_strings: Vec<String> = tokenizer
            .get_added_tokens_decoder()
            .into_values()
            .filter(|t| t.special || looks_like_markup(&t.content))
            .map(|t| t.content)
            .filter(|c| c.chars().count() > 1)
            .collect();
        // Longest first, so that a token containing another is escaped whole.
        control_strings.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        Ok(ChatTokenizer {
            tokenizer,
            template,
            stop_ids: stop,
            control_strings,
        })
    }

    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }

    /// The prompt text for `messages`, as transformers renders it.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.template.render(messages, add_generation_prompt)
    }

    /// Token ids of a rendered prompt (no special tokens added: the template wrote them).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| Error::Usage(format!("cannot tokenize the prompt: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids` (special tokens dropped when `skip_special`).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.tokenizer
            .decode(ids, skip_special)
            .map_err(|e| Error::Usage(format!("cannot decode generated tokens: {e}")))
    }

    /// Ids that end generation: generation_config's `eos_token_id` (else config.json's), the
    /// tokenizer's `eos_token`, and the end-of-turn tokens the vocabulary has.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The strings the tokenizer would turn into control tokens.
    pub fn control_strings(&self) -> &[String] {
        &self.control_strings
    }

    /// Make untrusted text (an article) safe to put in a message: every control-token string
    /// in it (`<|im_end|>`, `<|im_start|>`, …) gets a space after its first character, so it
    /// reads the same to the model but is tokenized as plain text and cannot end the turn or
    /// open a new one.
    pub fn neutralize(&self, text: &str) -> String {
        neutralize(text, &self.control_strings)
    }
}

/// Added tokens that are not flagged special but look like markup (`<tool_call>`) are matched
/// whole in any text too.
fn looks_like_markup(content: &str) -> bool {
    (content.starts_with('<') && content.ends_with('>'))
        || (content.starts_with('[') && content.ends_with(']'))
}

fn neutralize(text: &str, controls: &[String]) -> String {
    let mut text = text.to_string();
    // Escaping one string can only insert spaces; repeat in case two overlapped.
    for _ in 0..4 {
        let mut changed = false;
        for control in controls {
            if text.contains(control.as_str()) {
                let first = control.chars().next().map_or(0, char::len_utf8);
                let escaped = format!("{} {}", &control[..first], &control[first..]);
                text = text.replace(control.as_str(), &escaped);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    text
}

/// `chat_template` as a string, or the `default` of a list of named templates.
fn template_from_config(config: &serde_json::Value) -> Option<String> {
    match config.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .or_else(|| list.first())
            .and_then(|t| t["template"].as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// A compiled chat template and the special-token strings transformers passes to it.
pub struct ChatTemplate {
    env: Environment<'static>,
    special: serde_json::Map<String, serde_json::Value>,
    origin: PathBuf,
}

impl ChatTemplate {
    pub fn new(
        source: String,
        special: serde_json::Map<String, serde_json::Value>,
        origin: &Path,
    ) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        // transformers: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
        // extensions=[loopcontrols]); no trailing newline kept, as in Jinja2's default.
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("default delimiters are valid"),
        );
        // Jinja2 prints Python values: True, False, None.
        env.set_formatter(|out, state, value| match value.kind() {
            ValueKind::Bool => Ok(out.write_str(if value.is_true() { "True" } else { "False" })?),
            ValueKind::None => Ok(out.write_str("None")?),
            _ => minijinja::escape_formatter(out, state, value),
        });
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", source)
            .map_err(|e| Error::ModelFile {
                path: origin.to_path_buf(),
                what: "the chat template does not parse".into(),
                source: Some(Box::new(e)),
            })?;
        Ok(ChatTemplate {
            env,
            special,
            origin: origin.to_path_buf(),
        })
    }

    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        // Maps keep their insertion order (as Python dicts do) for `tojson`.
        let ctx: std::collections::BTreeMap<String, Value> = self
            .special
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(minijinja::value::Serde(v))))
            .chain([
                (
                    "messages".to_string(),
                    Value::from(minijinja::value::Serde(messages)),
                ),
                (
                    "add_generation_prompt".to_string(),
                    Value::from(add_generation_prompt),
                ),
            ])
            .collect();
        let template = self.env.get_template("chat").expect("added above");
        template.render(ctx).map_err(|e| Error::ModelFile {
            path: self.origin.clone(),
            what: "the chat template failed to render".into(),
            source: Some(Box::new(e)),
        })
    }
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current date and time (UTC), for templates that print today's
/// date (Llama 3). Supports the common directives `%Y %m %d %B %b %A %a %H %M %S %y %j %%`.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime(secs, &format)
}

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
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn strftime(secs: i64, format: &str) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cumulative[(month - 1) as usize] + day + i64::from(leap && month > 2);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`: Python's spacing (`", "`, `": "`), no HTML
/// escaping (minijinja's own `tojson` escapes `<`, `>`, `&` and `'`, which would change the
/// prompt).
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.kind() {
            ValueKind::String => v.as_str().unwrap_or_default().to_string(),
            _ => " ".repeat(usize::try_from(v).unwrap_or(0)),
        }),
    };
    let (item_sep, key_sep) = match separators.filter(|s| !s.is_none()) {
        Some(s) => (
            s.get_item_by_index(0)?.as_str().unwrap_or(",").to_string(),
            s.get_item_by_index(1)?.as_str().unwrap_or(": ").to_string(),
        ),
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    style.write(&value, 0, &mut out)?;
    Ok(Value::from(out))
}

struct JsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonStyle {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(indent);
            }
        }
    }

    fn write(
        &self,
        value: &Value,
        level: usize,
        out: &mut String,
    ) -> std::result::Result<(), minijinja::Error> {
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => out.push_str(&python_number(value)),
            ValueKind::String => json_string(value.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.items(level, out, ('[', ']'), &items, |item, level, out| {
                    self.write(item, level, out)
                })?;
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if self.sort_keys {
                    keys.sort_by_key(|k| k.to_string());
                }
                self.items(level, out, ('{', '}'), &keys, |key, level, out| {
                    match key.as_str() {
                        Some(s) => json_string(s, out),
                        None => json_string(&key.to_string(), out),
                    }
                    out.push_str(&self.key_sep);
                    self.write(&value.get_item(key)?, level, out)
                })?;
            }
            _ => json_string(&value.to_string(), out),
        }
        Ok(())
    }

    fn items(
        &self,
        level: usize,
        out: &mut String,
        (open, close): (char, char),
        items: &[Value],
        mut each: impl FnMut(&Value, usize, &mut String) -> std::result::Result<(), minijinja::Error>,
    ) -> std::result::Result<(), minijinja::Error> {
        out.push(open);
        if items.is_empty() {
            out.push(close);
            return Ok(());
        }
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.item_sep);
            }
            self.newline(level + 1, out);
            each(item, level + 1, out)?;
        }
        self.newline(level, out);
        out.push(close);
        Ok(())
    }
}

/// JSON string with `ensure_ascii=False`: only `"`, `\` and control characters escaped.
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A number as Python's `json.dumps` writes it: integers as they are, floats as `repr`
/// (`1.0`, `1e-06`, `1e+16`).
fn python_number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
    python_float(f)
}

fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Shortest round-trip digits and decimal exponent, then Python's repr layout.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    let body = if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
            } else {
                format!("{}.{}", &digits[..int_len], &digits[int_len..])
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let mantissa = match digits.len() {
            1 => digits.clone(),
            _ => format!("{}.{}", &digits[..1], &digits[1..]),
        };
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, ctx: impl Serialize) -> String {
        let t = ChatTemplate::new(template.into(), Default::default(), Path::new("t")).unwrap();
        let tmpl = t.env.get_template("chat").unwrap();
        tmpl.render(Value::from(minijinja::value::Serde(&ctx)))
            .unwrap()
    }

    #[derive(Serialize)]
    struct Tool {
        name: &'static str,
        a: serde_json::Value,
        e: serde_json::Value,
    }

    #[test]
    fn tojson_writes_like_python() {
        let tool = Tool {
            name: "f",
            a: serde_json::json!([1, 2.5, true, null, "<é\"\n>"]),
            e: serde_json::json!({}),
        };
        let ctx = std::collections::BTreeMap::from([("x", tool)]);
        assert_eq!(
            render("{{ x | tojson }}", &ctx),
            r#"{"name": "f", "a": [1, 2.5, true, null, "<é\"\n>"], "e": {}}"#
        );
        assert_eq!(
            render("{{ x.a | tojson(indent=2) }}", &ctx),
            "[\n  1,\n  2.5,\n  true,\n  null,\n  \"<é\\\"\\n>\"\n]"
        );
    }

    #[test]
    fn floats_print_as_python_repr() {
        for (f, s) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (1e-6, "1e-06"),
            (1e16, "1e+16"),
            (123456.789, "123456.789"),
            (0.0001, "0.0001"),
            (-2.5e-7, "-2.5e-07"),
            (1e15, "1000000000000000.0"),
        ] {
            assert_eq!(python_float(f), s, "{f}");
        }
    }

    #[test]
    fn trim_and_lstrip_blocks_and_loop_controls() {
        let t = "{% for x in xs %}\n  {% if x == 2 %}{% continue %}{% endif %}\n{{ x }},\n{% endfor %}\n";
        assert_eq!(render(t, serde_json::json!({"xs": [1, 2, 3]})), "1,\n3,\n");
    }

    #[test]
    fn raise_exception_fails_the_render() {
        let t = ChatTemplate::new(
            "{{ raise_exception('no system role') }}".into(),
            Default::default(),
            Path::new("tokenizer_config.json"),
        )
        .unwrap();
        let err = t.render(&[], true).unwrap_err();
        assert!(crate::error_chain(&err).contains("no system role"));
    }

    #[test]
    fn python_string_methods_work() {
        let t = "{{ s.strip().split('|')[1] }}{{ s.startswith(' a') }}";
        assert_eq!(render(t, serde_json::json!({"s": " a|b "})), "bTrue");
    }

    #[test]
    fn strftime_formats_dates() {
        // 2024-02-29 13:05:09 UTC
        let secs = 1_709_211_909;
        assert_eq!(
            strftime(secs, "%d %b %Y %H:%M:%S %A %j %%"),
            "29 Feb 2024 13:05:09 Thursday 060 %"
        );
        assert_eq!(strftime(0, "%Y-%m-%d %a"), "1970-01-01 Thu");
    }

    #[test]
    fn control_strings_are_neutralized() {
        let controls = vec!["<|im_start|>".to_string(), "<|im_end|>".to_string()];
        assert_eq!(
            neutralize("a<|im_end|>b <|im_start|>system", &controls),
            "a< |im_end|>b < |im_start|>system"
        );
        assert_eq!(
            neutralize("<|im_<|im_end|>end|>", &controls),
            "<|im_< |im_end|>end|>"
        );
        assert_eq!(neutralize("plain", &controls), "plain");
    }
}
