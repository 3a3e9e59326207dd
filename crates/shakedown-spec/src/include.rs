//! Shared includes: `include = ["_common/services.toml"]` at the top of a
//! scenario appends those files' tables (services, actors, client, actions,
//! checks, faults, steps) to it, so many scenarios share one setup.
//!
//! The result is one TOML text: the scenario's own text with its `include`
//! line commented out, then each included file. A run directory stores that
//! text, so a replay needs no include files. Errors keep pointing at the file
//! and line they come from, through the text's segments.

use crate::error::{SpecError, SpecErrors};
use crate::limits::{describe_bytes, MAX_COMBINED_BYTES, MAX_INCLUDES, MAX_SCENARIO_BYTES};
use crate::read::read_text_file;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

/// Where each file's text starts in a combined text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub start: usize,
    pub origin: String,
}

#[derive(Deserialize)]
struct Includes {
    include: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The scenario text with its includes resolved relative to `dir`, and the
/// segments of the combined text; the text unchanged when it has none.
pub fn expand(text: &str, origin: &str, dir: &Path) -> Result<(String, Vec<Segment>), SpecErrors> {
    let fail = |span: std::ops::Range<usize>, msg: String| SpecErrors {
        origin: origin.to_string(),
        text: Arc::from(text),
        errors: vec![SpecError::new(span, msg)],
        segments: Vec::new(),
    };
    // A text that does not even parse is reported by the full parse.
    let Ok(Includes { include: Some(list) }) = toml::from_str::<Includes>(text) else {
        return Ok((text.to_string(), Vec::new()));
    };
    if list.get_ref().len() > MAX_INCLUDES {
        let msg = format!("`include` names {} files; the most is {MAX_INCLUDES}", list.get_ref().len());
        return Err(fail(list.span(), msg));
    }
    let mut combined = comment_out(text, list.span());
    let mut segments = vec![Segment { start: 0, origin: origin.to_string() }];
    for item in list.get_ref() {
        let rel = item.get_ref();
        let path = dir.join(rel);
        // The same rule as for the scenario file itself: a regular file of
        // bounded size, so `include = ["/dev/zero"]` is refused, not read.
        let included = read_text_file(&path, MAX_SCENARIO_BYTES)
            .map_err(|e| fail(item.span(), format!("cannot read include `{rel}`: {e}")))?;
        let inc_origin = path.display().to_string();
        if let Err(msg) = tables_only(&included) {
            return Err(fail(item.span(), format!("include `{rel}`: {msg}")));
        }
        combined.push_str(&format!("\n# ---- included from {rel} ----\n"));
        segments.push(Segment { start: combined.len(), origin: inc_origin });
        combined.push_str(&included);
        if !combined.ends_with('\n') {
            combined.push('\n');
        }
        if u64::try_from(combined.len()).map_or(true, |n| n > MAX_COMBINED_BYTES) {
            let max = describe_bytes(MAX_COMBINED_BYTES);
            return Err(fail(
                item.span(),
                format!("with include `{rel}` the scenario is larger than the maximum of {max}"),
            ));
        }
    }
    Ok((combined, segments))
}

/// Comments out the lines holding the `include = [...]` value, so the
/// combined text is a scenario without includes.
fn comment_out(text: &str, value: std::ops::Range<usize>) -> String {
    let start = text[..value.start].rfind('\n').map_or(0, |i| i + 1);
    let end = text[value.end..].find('\n').map_or(text.len(), |i| value.end + i);
    let commented: Vec<String> = text[start..end].lines().map(|l| format!("# {l}")).collect();
    format!("{}{}{}", &text[..start], commented.join("\n"), &text[end..])
}

/// An include may hold only tables and arrays of tables: a top-level key
/// would land inside the including file's last table.
fn tables_only(text: &str) -> Result<(), String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        format!("line {line}: {}", e.message().trim())
    })?;
    for (key, value) in &table {
        let is_tables = match value {
            toml::Value::Table(_) => true,
            toml::Value::Array(items) => !items.is_empty() && items.iter().all(|v| v.is_table()),
            _ => false,
        };
        if !is_tables {
            return Err(format!(
                "top-level key `{key}` is not allowed; an include holds tables such as [service.NAME], [[action]] or [[step]], and cannot include others"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    const COMMON: &str =
        "[service.kv]\ncommand = [\"kv\", \"--listen\", \"127.0.0.1:{port}\"]\n\n[[check]]\nkind = \"stats\"\n";

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn includes_append_their_tables_and_the_include_line_is_commented() {
        let dir = dir_with(&[("_common/kv.toml", COMMON)]);
        let text = "name = \"a\"\ninclude = [\n  \"_common/kv.toml\",\n]\nduration = \"1s\"\n";
        let (s, combined) = crate::parse_file(text, "a.toml", dir.path()).unwrap();
        assert!(s.service.contains_key("kv") && s.check.len() == 1, "{combined}");
        assert!(combined.contains("# include = [\n#   \"_common/kv.toml\",\n# ]\n"), "{combined}");
        let again = crate::parse(&combined, "again.toml").unwrap();
        assert_eq!(again.service.len(), 1, "the combined text stands alone, for replays");
    }

    #[test]
    fn an_error_in_an_include_names_the_include_file_and_its_line() {
        let dir = dir_with(&[("_kv.toml", &COMMON.replace("kind = \"stats\"", "kind = \"stats\"\nmodel = \"kv\""))]);
        let text = "name = \"a\"\ninclude = [\"_kv.toml\"]\n[[action]]\nf = \"x\"\n";
        let err = crate::parse_file(text, "a.toml", dir.path()).unwrap_err().to_string();
        let inc = dir.path().join("_kv.toml").display().to_string();
        assert!(err.contains(&format!("{inc}:6:9: check `stats`: `model` does not apply")), "{err}");
        assert!(err.contains("a.toml:3:1: actions are defined but there is no `[client]`"), "{err}");
    }

    #[test]
    fn includes_are_read_as_capped_regular_files_and_counted() {
        let dir = dir_with(&[("_kv.toml", COMMON)]);
        let list = |n: usize| vec!["\"_kv.toml\""; n].join(", ");
        let err = crate::parse_file(&format!("name = \"a\"\ninclude = [{}]\n", list(65)), "a.toml", dir.path());
        let err = err.unwrap_err().to_string();
        assert!(err.starts_with("a.toml:2:11: `include` names 65 files; the most is 64"), "{err}");
        let err = crate::parse_file("name = \"a\"\ninclude = [\"/dev/zero\"]\n", "a.toml", dir.path()).unwrap_err();
        let want = "a.toml:2:12: cannot read include `/dev/zero`: /dev/zero: is a character device, not a regular file";
        assert_eq!(err.to_string(), want);
        let big = "# padding\n".repeat(200_000);
        std::fs::write(dir.path().join("_big.toml"), &big).unwrap();
        let text = "name = \"a\"\ninclude = [\"_big.toml\", \"_big.toml\", \"_big.toml\"]\n";
        let err = crate::parse_file(text, "a.toml", dir.path()).unwrap_err().to_string();
        assert!(err.contains("with include `_big.toml` the scenario is larger than the maximum of 4 MiB"), "{err}");
    }

    #[test]
    fn missing_includes_and_top_level_keys_in_includes_are_refused() {
        let dir = dir_with(&[("_bad.toml", "duration = \"1s\"\n[service.x]\ncommand = [\"x\"]\n")]);
        let err = crate::parse_file("name = \"a\"\ninclude = [\"_nope.toml\"]\n", "a.toml", dir.path()).unwrap_err();
        assert!(err.to_string().starts_with("a.toml:2:12: cannot read include `_nope.toml`"), "{err}");
        let err = crate::parse_file("name = \"a\"\ninclude = [\"_bad.toml\"]\n", "a.toml", dir.path()).unwrap_err();
        assert!(err.to_string().contains("include `_bad.toml`: top-level key `duration` is not allowed"), "{err}");
        let err = crate::parse_file("name = \"a\"\ninclude = \"_bad.toml\"\n", "a.toml", dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("a.toml:2:1: unknown key `include`"),
            "a non-list include is not taken: {err}"
        );
    }
}
