//! Policy loading errors: every problem names the file, the JSON path and, where there is one,
//! the line and column.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of problem an [`Issue`] is (for programs; people read the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueKind {
    /// A file or directory could not be read.
    Io,
    /// The file is not valid JSON, or does not have the expected shape (unknown field, wrong type).
    Json,
    /// A Wirefilter expression does not parse (syntax, unknown field, bad value).
    Expression,
    /// A value is not valid (unknown action, bad address, bad domain, bad setting).
    Invalid,
    /// An id, token, name or network is defined twice.
    Duplicate,
    /// A reference to something that does not exist (upstream group, list file).
    Unresolved,
}

/// One problem found while loading policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// What kind of problem.
    pub kind: IssueKind,
    /// The file the problem is in (`None` for problems not tied to one file).
    pub file: Option<PathBuf>,
    /// JSON path inside the file, e.g. `organizations[0].rules[2].expression` (may be empty).
    pub path: String,
    /// Line and column in the file (1-based) where known.
    pub position: Option<(usize, usize)>,
    /// The message itself. May span several lines (Wirefilter errors show the expression with a caret).
    pub message: String,
}

impl Issue {
    pub(crate) fn new(
        kind: IssueKind,
        file: Option<&Path>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            file: file.map(Path::to_path_buf),
            path: path.into(),
            position: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => f.write_str("policy")?,
        }
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message.trim_end())
    }
}

/// Loading or validating a policy failed. Holds every problem found (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The problems, in the order found.
    pub issues: Vec<Issue>,
}

impl PolicyError {
    pub(crate) fn one(issue: Issue) -> Self {
        Self {
            issues: vec![issue],
        }
    }
}

impl From<Issue> for PolicyError {
    fn from(issue: Issue) -> Self {
        Self::one(issue)
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.issues.len() {
            0 => f.write_str("invalid policy"),
            1 => write!(f, "{}", self.issues[0]),
            n => {
                write!(f, "{n} problems in the policy:")?;
                for issue in &self.issues {
                    write!(f, "\n{issue}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PolicyError {}
