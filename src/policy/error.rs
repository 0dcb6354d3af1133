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

impl Issue {
    /// A file that cannot be used at all (unreadable, or a bundle that does not verify).
    pub fn new_io(file: &Path, message: impl Into<String>) -> Self {
        Self::new(IssueKind::Io, Some(file), "", message)
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

/// Line and column of the string at JSON path `path` (as in [`Issue::path`], e.g.
/// `organizations[0].rules[2].action`) in the JSON `text`, placed like serde_json places its
/// own errors: at the end of the value. None if the path does not lead to a string.
///
/// Problems found after parsing (an unknown action) have only their path; this walks the text
/// once more to the value, which is cheap next to a failed load and exact where a text search
/// is not (the same value in several places, escapes, any order of keys).
pub(crate) fn position_of(text: &str, path: &str) -> Option<(usize, usize)> {
    let steps = steps(path)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let e = serde::de::DeserializeSeed::deserialize(seek::Seek(&steps), &mut de).err()?;
    (e.is_data() && e.to_string().starts_with(seek::FOUND)).then(|| (e.line(), e.column()))
}

/// One step of a JSON path: a key of an object or an index into an array.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[1][2].c` as steps (keys themselves hold no `.` or `[` in the paths placed this way).
fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut pieces = part.split('[');
        out.push(Step::Key(pieces.next()?));
        for index in pieces {
            out.push(Step::Index(index.strip_suffix(']')?.parse().ok()?));
        }
    }
    Some(out)
}

/// Walking serde_json along a path, to stop with an error at the value it leads to: the error
/// then carries the value's line and column.
mod seek {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    use super::Step;

    /// The message of the error raised at the value (any other error means it was not found).
    pub(super) const FOUND: &str = "picket: found the value";

    pub(super) struct Seek<'p, 'a>(pub &'p [Step<'a>]);

    impl<'de> DeserializeSeed<'de> for Seek<'_, '_> {
        type Value = ();

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            if self.0.is_empty() {
                d.deserialize_any(Found)
            } else {
                d.deserialize_any(self)
            }
        }
    }

    impl<'de> Visitor<'de> for Seek<'_, '_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object or array on the path")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let Some(Step::Key(want)) = self.0.first() else {
                return Err(de::Error::custom("not an array"));
            };
            while let Some(key) = map.next_key::<String>()? {
                if key == *want {
                    return map.next_value_seed(Seek(&self.0[1..]));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Err(de::Error::custom("no such key"))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let Some(Step::Index(want)) = self.0.first() else {
                return Err(de::Error::custom("not an object"));
            };
            for _ in 0..*want {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Err(de::Error::custom("no such index"));
                }
            }
            match seq.next_element_seed(Seek(&self.0[1..]))? {
                Some(()) => Err(de::Error::custom("not found")),
                None => Err(de::Error::custom("no such index")),
            }
        }
    }

    /// Stops at the string the path leads to.
    struct Found;

    impl Visitor<'_> for Found {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Err(E::custom(FOUND))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::position_of;

    #[test]
    fn places_the_string_at_a_path() {
        let text =
            "{\"a\": [{\"x\": 1}, {\"x\": \"one\", \"y\": [\"b\\u0061d\"]}],\n \"z\": \"last\"}";
        assert_eq!(position_of(text, "a[1].x"), Some((1, 28)));
        assert_eq!(position_of(text, "a[1].y[0]"), Some((1, 46)));
        assert_eq!(position_of(text, "z"), Some((2, 12)));
        // Not a string, no such key or index, not a path: no place.
        assert_eq!(position_of(text, "a[0].x"), None);
        assert_eq!(position_of(text, "a[2].x"), None);
        assert_eq!(position_of(text, "b"), None);
        assert_eq!(position_of(text, "a[x]"), None);
    }
}
