//! Problems found in a configuration, and how they are shown.
//!
//! Parsing and validation never stop at the first mistake: each step pushes
//! [`Problem`]s onto one list, and the operator sees all of them at once,
//! sorted by where they are in the file, each as
//! `FILE:LINE:COLUMN: KEY: what is wrong; what to write instead`.

use std::fmt;
use std::ops::Range;

/// One mistake in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key path, like `service.imap.unix_listener[0].mode`.
    pub key: String,
    /// Where in the file the offending key or value is, in bytes.
    pub span: Range<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Problem {
    /// A problem at `span` with the key path `key`.
    pub fn new(key: impl Into<String>, span: Range<usize>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            span,
            message: message.into(),
        }
    }
}

/// Every problem found in one configuration file, ready to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems {
    file: String,
    lines: Vec<(usize, usize, Problem)>,
}

impl Problems {
    /// Places each problem on its line and column in `source`, which was read
    /// from `file`, and sorts them by position.
    pub fn locate(file: &str, source: &str, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| (p.span.start, p.span.end));
        problems.dedup();
        let lines = problems
            .into_iter()
            .map(|problem| {
                let (line, column) = line_and_column(source, problem.span.start);
                (line, column, problem)
            })
            .collect();
        Problems {
            file: file.to_owned(),
            lines,
        }
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Each problem on a line of its own, `FILE:LINE:COLUMN: KEY: what`,
    /// for a log that keeps one record per problem.
    pub fn each(&self) -> impl Iterator<Item = String> {
        self.lines.iter().map(|(line, column, problem)| {
            let key = if problem.key.is_empty() {
                String::new()
            } else {
                format!(" {}:", problem.key)
            };
            format!("{}:{line}:{column}:{key} {}", self.file, problem.message)
        })
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in self.each() {
            writeln!(f, "{problem}")?;
        }
        let count = self.lines.len();
        write!(
            f,
            "{}: {count} problem{} found; nothing was started",
            self.file,
            if count == 1 { "" } else { "s" }
        )
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `source`.
fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The one of `known` that `name` is most likely a misspelling of, if any
/// is close enough to suggest.
pub fn nearest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|known| (strsim::jaro_winkler(name, known), known))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, known)| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let source = "a = 1\nbé = 2\n\nc = 3";
        assert_eq!(line_and_column(source, 0), (1, 1));
        assert_eq!(line_and_column(source, 4), (1, 5));
        assert_eq!(line_and_column(source, 6), (2, 1));
        assert_eq!(line_and_column(source, source.find("= 2").unwrap()), (2, 4));
        assert_eq!(line_and_column(source, source.find('c').unwrap()), (4, 1));
        assert_eq!(line_and_column(source, 999), (4, 6));
    }

    #[test]
    fn problems_print_in_file_order_with_a_count() {
        let source = "x = 1\ny = 2\n";
        let problems = Problems::locate(
            "w.toml",
            source,
            vec![
                Problem::new("y", 6..7, "second"),
                Problem::new("x", 0..1, "first"),
            ],
        );
        assert_eq!(
            problems.to_string(),
            "w.toml:1:1: x: first\nw.toml:2:1: y: second\nw.toml: 2 problems found; nothing was started"
        );
    }
}
