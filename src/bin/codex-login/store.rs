//! Where a login goes, and writing it so that a reader (the wrapper's file watch, Codex CLI)
//! sees the old file or the new one, never a part: a temporary file in the same directory,
//! mode 0600 from its creation, synced, then renamed over the target.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::failure::Failure;
use crate::settings::Settings;

/// `CODEX_HOME` when unset, as Codex CLI and `make run` use it.
pub const DEFAULT_CODEX_HOME: &str = "~/.codex";

/// The account pool's labels name files and Envoy stats: keep them to these characters.
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 64
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `~` or `~/…` expanded with `HOME`; anything else as written.
pub fn expand_home(path: &str, home: Option<&str>) -> PathBuf {
    match (path.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            Path::new(home).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(path),
    }
}

fn home(settings: &Settings) -> Option<String> {
    settings.var("HOME").or_else(|| std::env::var("HOME").ok())
}

/// `$CODEX_HOME/auth.json`.
pub fn codex_home_auth(settings: &Settings) -> PathBuf {
    let codex_home = settings
        .var("CODEX_HOME")
        .map_or_else(|| DEFAULT_CODEX_HOME.to_string(), |v| v.trim().to_string());
    expand_home(&codex_home, home(settings).as_deref()).join("auth.json")
}

/// `CODEX_AUTH_DIR`, the account pool's directory of auth.json files, when set.
pub fn auth_dir(settings: &Settings) -> Option<PathBuf> {
    settings
        .var("CODEX_AUTH_DIR")
        .map(|dir| expand_home(dir.trim(), home(settings).as_deref()))
}

/// The file a new login goes to: `--out`, else `--label` in `CODEX_AUTH_DIR`, else
/// `$CODEX_HOME/auth.json`.
pub fn target(settings: &Settings, out: Option<&Path>, label: Option<&str>) -> Result<PathBuf, Failure> {
    match (out, label) {
        (Some(_), Some(_)) => Err(Failure::Usage("--out and --label cannot be used together".into())),
        (Some(out), None) => Ok(out.to_path_buf()),
        (None, Some(label)) if !valid_label(label) => Err(Failure::Usage(format!(
            "--label {label:?}: use 1 to 64 of A-Z a-z 0-9 _ - (it becomes the file name and the account's label)"
        ))),
        (None, Some(label)) => match auth_dir(settings) {
            Some(dir) => Ok(dir.join(format!("{label}.json"))),
            None => Err(Failure::Usage(
                "--label needs CODEX_AUTH_DIR (the account pool's directory) set in the environment or .dev.vars"
                    .into(),
            )),
        },
        (None, None) => Ok(codex_home_auth(settings)),
    }
}

/// Writes `contents` to `path` atomically with mode 0600, creating its directory (0700) when
/// missing.
pub fn write_atomically(path: &Path, contents: &str) -> Result<(), Failure> {
    let problem =
        |what: &str, e: std::io::Error| Failure::Other(format!("cannot {what} {}: {e}", path.display()));
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        create_private_dir(&dir).map_err(|e| problem("create the directory of", e))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "auth.json".into());
    // A dot name the pool's directory scan skips (it reads `*.json`).
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, path)?;
        // The rename itself reaches the disk with the directory.
        if let Ok(handle) = fs::File::open(&dir) {
            let _ = handle.sync_all();
        }
        Ok(())
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&temporary);
        problem("write", e)
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("codex-login-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writes_with_mode_0600_and_replaces_without_leftovers() {
        let dir = scratch("write");
        let path = dir.join("nested").join("auth.json");
        write_atomically(&path, "first").unwrap();
        fs::write(dir.join("nested").join("other"), "x").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        }
        write_atomically(&path, "second").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let mut names: Vec<String> = fs::read_dir(dir.join("nested"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["auth.json", "other"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = scratch("fail");
        let path = dir.join("auth.json");
        write_atomically(&path, "old").unwrap();
        // A directory where the file should go: the rename fails, the temporary goes.
        let blocked = dir.join("blocked.json");
        fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(write_atomically(&blocked, "new").is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn targets() {
        let settings = crate::settings::of(&[
            ("CODEX_HOME", "~/h"),
            ("HOME", "/home/u"),
            ("CODEX_AUTH_DIR", "/pool"),
        ]);
        assert_eq!(
            target(&settings, None, None).unwrap(),
            PathBuf::from("/home/u/h/auth.json")
        );
        assert_eq!(
            target(&settings, None, Some("work-1")).unwrap(),
            PathBuf::from("/pool/work-1.json")
        );
        assert_eq!(
            target(&settings, Some(Path::new("x.json")), None).unwrap(),
            PathBuf::from("x.json")
        );
        for bad in ["", "a/b", "../x", "a b", "é"] {
            assert_eq!(
                target(&settings, None, Some(bad)).unwrap_err().exit_code(),
                2,
                "{bad:?}"
            );
        }
        let no_dir = crate::settings::of(&[("HOME", "/home/u")]);
        assert_eq!(
            target(&no_dir, None, None).unwrap(),
            PathBuf::from("/home/u/.codex/auth.json")
        );
        assert!(
            target(&no_dir, None, Some("a"))
                .unwrap_err()
                .to_string()
                .contains("CODEX_AUTH_DIR")
        );
    }
}
