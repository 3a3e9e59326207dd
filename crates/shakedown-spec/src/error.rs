//! Spec errors that name the file, line and column and say what was expected.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use toml::de::DeTable;

/// One problem in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Byte range in the source; `0..0` when the problem has no place (built in code).
    pub span: Range<usize>,
    /// Where the value is in the TOML document, e.g. `fault[2].for`; the
    /// parser's span of it (or of its nearest present parent) becomes `span`.
    pub key: Vec<Key>,
    /// Text to find in the source when there is no span, e.g. `service.kv`.
    pub anchor: Option<String>,
    pub message: String,
}

/// One step of a key path: a table key or an index into an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Name(String),
    Index(usize),
}

impl From<&str> for Key {
    fn from(name: &str) -> Key {
        Key::Name(name.to_string())
    }
}

impl From<&String> for Key {
    fn from(name: &String) -> Key {
        Key::Name(name.clone())
    }
}

impl From<usize> for Key {
    fn from(i: usize) -> Key {
        Key::Index(i)
    }
}

/// A key path from its steps: `key!["fault", i, "for"]`.
macro_rules! key {
    ($($step:expr),* $(,)?) => { vec![$($crate::error::Key::from($step)),*] };
}
pub(crate) use key;

impl SpecError {
    pub fn new(span: Range<usize>, message: impl Into<String>) -> SpecError {
        SpecError { span, key: Vec::new(), anchor: None, message: message.into() }
    }

    /// An error located at the first occurrence of `anchor` in the source.
    pub fn near(anchor: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError { span: 0..0, key: Vec::new(), anchor: Some(anchor.into()), message: message.into() }
    }

    /// An error located at the value of `key` in the document.
    pub fn at(key: Vec<Key>, message: impl Into<String>) -> SpecError {
        SpecError { span: 0..0, key, anchor: None, message: message.into() }
    }

    /// Turns a key path (through the parsed `doc`) or an anchor into a span within `text`.
    pub(crate) fn locate(mut self, text: &str, doc: Option<&DeTable<'_>>) -> SpecError {
        if self.span != (0..0) {
            return self;
        }
        if let Some(span) = doc.and_then(|d| span_of(d, &self.key)) {
            self.span = span;
        } else if let Some(anchor) = &self.anchor {
            if let Some(i) = text.find(anchor.as_str()) {
                self.span = i..i + anchor.len();
            }
        }
        self
    }
}

/// The span of the value at `key`, or of the deepest part of it that the
/// document has (a defaulted key points at its table); `None` for an empty key.
fn span_of(doc: &DeTable<'_>, key: &[Key]) -> Option<Range<usize>> {
    let (Key::Name(first), rest) = key.split_first()? else { return None };
    let mut value = doc.get(first.as_str())?;
    for step in rest {
        let next = match step {
            Key::Name(name) => value.get_ref().get(name.as_str()),
            Key::Index(i) => value.get_ref().get(*i),
        };
        match next {
            Some(v) => value = v,
            None => break,
        }
    }
    Some(value.span())
}

/// Every problem found in one scenario source, with the text to locate them in.
#[derive(Debug, Clone)]
pub struct SpecErrors {
    /// The file name (or `<code>` for scenarios built in Rust).
    pub origin: String,
    pub text: Arc<str>,
    pub errors: Vec<SpecError>,
    /// With includes, where each file's part of `text` starts (empty: all `origin`).
    pub segments: Vec<crate::include::Segment>,
}

impl SpecErrors {
    /// The file a span of `text` comes from, that file's part of the text,
    /// and the span within it.
    pub fn source_of(&self, span: Range<usize>) -> (&str, &str, Range<usize>) {
        let Some(i) = self.segments.iter().rposition(|s| s.start <= span.start) else {
            return (&self.origin, &self.text, span);
        };
        let start = self.segments[i].start;
        let end = self.segments.get(i + 1).map_or(self.text.len(), |next| next.start);
        let local = span.start - start..span.end.min(end).max(span.start) - start;
        (&self.segments[i].origin, &self.text[start..end], local)
    }

    /// 1-based line and column (in characters) of a byte offset, in the file
    /// it comes from.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let (_, text, span) = self.source_of(offset..offset);
        let before = &text[..floor_char_boundary(text, span.start.min(text.len()))];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let (line, col) = self.line_col(e.span.start);
            let (origin, _, _) = self.source_of(e.span.clone());
            write!(f, "{origin}:{line}:{col}: {}", e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Why a scenario file could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("read scenario {0}")]
    Read(#[from] crate::read::ReadError),
    #[error("{0}")]
    Invalid(#[from] SpecErrors),
}
