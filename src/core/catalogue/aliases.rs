//! Retired model ids that old client configurations still send, and what replaces them. An
//! alias only applies to an id the current catalogue does not know, and its target must be in
//! the catalogue: a target that left it means the catalogue's default instead.

/// Where a retired id goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A named successor (OpenAI's own replacement for the retired model).
    Slug(&'static str),
    /// The catalogue's default model (its first listed entry).
    Default,
}

/// Retired ids (lower-case) with a named successor or the default.
const EXACT: &[(&str, Target)] = &[
    ("gpt-5.4", Target::Slug("gpt-5.6-terra")),
    ("gpt-5.4-mini", Target::Slug("gpt-5.6-luna")),
    ("gpt5", Target::Default),
    ("gpt-5", Target::Default),
    ("gpt-5-latest", Target::Default),
    ("gpt5-codex", Target::Default),
    ("gpt-5-codex", Target::Default),
    ("gpt-5-codex-latest", Target::Default),
    ("gpt-5-codex-mini", Target::Default),
    ("codex", Target::Default),
    ("codex-mini", Target::Default),
    ("codex-mini-latest", Target::Default),
];

/// Retired families: the id itself and every `<family>-…` variant (`gpt-5.2-codex`,
/// `gpt-5.1-codex-max`) go to the default.
const FAMILIES: &[&str] = &["gpt-5.1", "gpt-5.2", "gpt-5.3"];

/// The replacement for a retired id, given in lower case; `None` when it is not a retired id.
pub fn target(id: &str) -> Option<Target> {
    if let Some((_, target)) = EXACT.iter().find(|(alias, _)| *alias == id) {
        return Some(*target);
    }
    FAMILIES
        .iter()
        .any(|family| {
            id.strip_prefix(family)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        })
        .then_some(Target::Default)
}

/// The table as the README shows it (a unit test keeps them equal): retired id or family,
/// successor or `None` for the default.
#[cfg(test)]
pub fn table() -> impl Iterator<Item = (String, Option<&'static str>)> {
    EXACT
        .iter()
        .map(|(alias, target)| {
            let successor = match target {
                Target::Slug(slug) => Some(*slug),
                Target::Default => None,
            };
            (alias.to_string(), successor)
        })
        .chain(FAMILIES.iter().map(|family| (format!("{family}*"), None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ids_and_families() {
        let cases: &[(&str, Option<Target>)] = &[
            ("gpt-5.4", Some(Target::Slug("gpt-5.6-terra"))),
            ("gpt-5.4-mini", Some(Target::Slug("gpt-5.6-luna"))),
            ("gpt-5-codex", Some(Target::Default)),
            ("codex-mini-latest", Some(Target::Default)),
            ("gpt-5.2", Some(Target::Default)),
            ("gpt-5.2-codex", Some(Target::Default)),
            ("gpt-5.1-codex-max", Some(Target::Default)),
            ("gpt-5.3-codex", Some(Target::Default)),
            ("gpt-5.10", None),
            ("gpt-5.4-nano", None),
            ("gpt-5.5", None),
            ("gpt-6.1-sol", None),
        ];
        for (id, expected) in cases {
            assert_eq!(target(id), *expected, "{id}");
        }
        assert!(table().any(|(alias, to)| alias == "gpt-5.2*" && to.is_none()));
    }

    #[test]
    fn the_readme_shows_the_table() {
        let readme = include_str!("../../../README.md");
        let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
        for (alias, successor) in table() {
            let cell = format!("`{alias}`");
            let row = rows
                .iter()
                .find(|row| row.split('|').nth(1).is_some_and(|c| c.contains(&cell)))
                .unwrap_or_else(|| panic!("README.md's alias table has no row for {alias}"));
            let target = row.split('|').nth(2).unwrap_or("").trim();
            match successor {
                Some(slug) => assert_eq!(target, format!("`{slug}`"), "{alias}"),
                None => assert_eq!(target, "the default", "{alias}"),
            }
        }
    }
}
