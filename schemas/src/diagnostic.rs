//! Diagnostics: what is wrong, where, and how bad.
//!
//! Every problem the format crate finds — syntax, structure, semantics, I/O — becomes one
//! [`Diagnostic`] printed as `path:line:col: message` (errors) or `path:line:col: warning:
//! message`. Line and column are 1-based and point at the offending field or value; line 0
//! means the file as a whole (it could not be read) and prints as `path: message`.

use std::fmt;
use std::path::PathBuf;

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl Position {
    pub const fn new(line: u64, column: u64) -> Self {
        Position { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// An error makes the file invalid (the node keeps its last-known-good state and `validate`
/// exits 65); a warning is printed and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub position: Position,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn error(path: impl Into<PathBuf>, position: Position, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            position,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub fn warning(
        path: impl Into<PathBuf>,
        position: Position,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            path: path.into(),
            position,
            severity: Severity::Warning,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.path.display())?;
        if self.position.line > 0 {
            write!(f, "{}:", self.position)?;
        }
        if self.severity == Severity::Warning {
            f.write_str(" warning:")?;
        }
        write!(f, " {}", self.message)
    }
}

/// True when any diagnostic is an error.
pub fn has_errors<'a>(diagnostics: impl IntoIterator<Item = &'a Diagnostic>) -> bool {
    diagnostics.into_iter().any(Diagnostic::is_error)
}

/// Sorts diagnostics by path, line, column, then errors before warnings; drops exact repeats.
pub fn sort_diagnostics(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort();
    diagnostics.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_warnings_print_in_compiler_style() {
        let e = Diagnostic::error("a/web.yaml", Position::new(14, 7), "bad port");
        let w = Diagnostic::warning("a/web.yaml", Position::new(3, 1), "odd");
        let f = Diagnostic::error("gone.yaml", Position::default(), "cannot read");
        assert_eq!(e.to_string(), "a/web.yaml:14:7: bad port");
        assert_eq!(w.to_string(), "a/web.yaml:3:1: warning: odd");
        assert_eq!(f.to_string(), "gone.yaml: cannot read");
        assert!(has_errors([&w, &e]));
        assert!(!has_errors([&w]));
    }

    #[test]
    fn sorting_orders_by_path_then_position() {
        let mut d = vec![
            Diagnostic::error("b.yaml", Position::new(1, 1), "x"),
            Diagnostic::error("a.yaml", Position::new(10, 1), "x"),
            Diagnostic::error("a.yaml", Position::new(2, 5), "x"),
            Diagnostic::error("a.yaml", Position::new(2, 5), "x"),
        ];
        sort_diagnostics(&mut d);
        let order: Vec<_> = d.iter().map(ToString::to_string).collect();
        assert_eq!(order, ["a.yaml:2:5: x", "a.yaml:10:1: x", "b.yaml:1:1: x"]);
    }
}
