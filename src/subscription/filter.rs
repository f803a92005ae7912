//! Which event types a subscriber asked for: exact names and prefix globs (`user.*`).

/// Most patterns one subscription may give.
const MAX_PATTERNS: usize = 64;
/// Longest pattern accepted.
const MAX_PATTERN_LEN: usize = 128;

/// One pattern of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// The type must equal this.
    Exact(String),
    /// The type must start with this (the pattern without its trailing `*`).
    Prefix(String),
}

/// A set of event type patterns; empty matches every type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeFilter {
    /// Any one matching is enough.
    patterns: Vec<Pattern>,
}

/// Why a filter was refused (INVALID_ARGUMENT).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidFilter {
    /// Too many patterns.
    #[error("event_types has more than {MAX_PATTERNS} patterns")]
    TooMany,
    /// An empty pattern.
    #[error("event_types contains an empty pattern")]
    Empty,
    /// A pattern over the length cap.
    #[error("event_types pattern is longer than {MAX_PATTERN_LEN} characters")]
    TooLong,
    /// A `*` anywhere but at the end.
    #[error("event_types pattern {0:?}: `*` may only end a pattern, as in `user.*`")]
    MisplacedWildcard(String),
}

// === impl TypeFilter ===

impl TypeFilter {
    /// Parses the `event_types` of a request.
    ///
    /// # Errors
    /// [`InvalidFilter`] for the first bad pattern.
    pub fn try_new(patterns: &[String]) -> Result<Self, InvalidFilter> {
        if patterns.len() > MAX_PATTERNS {
            return Err(InvalidFilter::TooMany);
        }
        let patterns = patterns
            .iter()
            .map(|p| parse_pattern(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TypeFilter { patterns })
    }

    /// Whether an event of `event_type` passes the filter.
    pub fn matches(&self, event_type: &str) -> bool {
        self.patterns.is_empty()
            || self.patterns.iter().any(|p| match p {
                Pattern::Exact(name) => name == event_type,
                Pattern::Prefix(prefix) => event_type.starts_with(prefix.as_str()),
            })
    }
}

fn parse_pattern(pattern: &str) -> Result<Pattern, InvalidFilter> {
    if pattern.is_empty() {
        return Err(InvalidFilter::Empty);
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(InvalidFilter::TooLong);
    }
    match pattern.strip_suffix('*') {
        Some(prefix) if !prefix.contains('*') => Ok(Pattern::Prefix(prefix.to_owned())),
        None if !pattern.contains('*') => Ok(Pattern::Exact(pattern.to_owned())),
        _ => Err(InvalidFilter::MisplacedWildcard(pattern.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(patterns: &[&str]) -> TypeFilter {
        TypeFilter::try_new(&patterns.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(filter(&[]).matches("user.created"));
        assert!(filter(&[]).matches("brand.new"));
    }

    #[test]
    fn exact_and_prefix_patterns() {
        let f = filter(&["user.*", "session.ended"]);
        assert!(f.matches("user.created"));
        assert!(f.matches("user.deleted"));
        assert!(f.matches("session.ended"));
        assert!(!f.matches("session.created"));
        assert!(!f.matches("users.created"));
        assert!(!f.matches("organizationMembership.created"));
        assert!(filter(&["*"]).matches("anything"));
        assert!(filter(&["organization*"]).matches("organizationMembership.created"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        let parse = |p: &[&str]| {
            TypeFilter::try_new(&p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        };
        assert_eq!(parse(&[""]).unwrap_err(), InvalidFilter::Empty);
        assert!(matches!(
            parse(&["user.*.x"]).unwrap_err(),
            InvalidFilter::MisplacedWildcard(_)
        ));
        assert!(matches!(
            parse(&["**"]).unwrap_err(),
            InvalidFilter::MisplacedWildcard(_)
        ));
        assert_eq!(parse(&["a"; 65]).unwrap_err(), InvalidFilter::TooMany);
        assert_eq!(
            parse(&[&"a".repeat(129)]).unwrap_err(),
            InvalidFilter::TooLong
        );
    }
}
