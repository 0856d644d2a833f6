//! The settings as one map: the env file's values, overridden by the process environment.

use std::collections::BTreeMap;
use std::path::Path;

use crate::env_file::{self, EnvFileError};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings(pub BTreeMap<String, String>);

impl Settings {
    /// `env_file` values (a missing file counts as empty, like `make run` without `.dev.vars`),
    /// then `environment` on top: a variable set in the environment wins even when blank.
    pub fn merge(
        env_file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, EnvFileError> {
        let mut values: BTreeMap<String, String> = match env_file {
            Some(path) => env_file::read(path)?.into_iter().collect(),
            None => BTreeMap::new(),
        };
        values.extend(environment);
        Ok(Self(values))
    }

    /// The process environment; names or values that are not UTF-8 cannot be settings.
    pub fn process_environment() -> impl Iterator<Item = (String, String)> {
        std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
    }

    /// A value, with blank counting as unset (so `PORT=` in `.dev.vars` means the default).
    pub fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }

    pub fn raw(&self, name: &str) -> Option<&String> {
        self.0.get(name)
    }

    pub fn set(&mut self, name: &str, value: String) {
        self.0.insert(name.to_string(), value);
    }
}

#[cfg(test)]
pub fn of(pairs: &[(&str, &str)]) -> Settings {
    Settings(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_overrides_the_file_even_when_blank() {
        let dir = std::env::temp_dir().join(format!("codex-settings-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(".dev.vars");
        std::fs::write(&file, "PORT=9000\nA=from-file\nB=kept\n").unwrap();
        let env = [("PORT", "  "), ("A", "from-env")].map(|(k, v)| (k.to_string(), v.to_string()));
        let settings = Settings::merge(Some(&file), env).unwrap();
        assert_eq!(settings.var("PORT"), None, "blank in the environment means unset");
        assert_eq!(settings.var("A").as_deref(), Some("from-env"));
        assert_eq!(settings.var("B").as_deref(), Some("kept"));
        assert_eq!(
            Settings::merge(Some(&dir.join("absent")), []).unwrap(),
            Settings::default()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
