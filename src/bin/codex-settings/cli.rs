//! Arguments, input and output. Everything printed on stdout is one JSON document.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use codex_openai_wrapper::core::config::values::ConfigError;

use crate::deployment::codex_home;
use crate::resolve::resolve;
use crate::settings::Settings;
use crate::variables::manifest;

const USAGE: &str = "usage: codex-settings resolve [--env-file PATH]
       codex-settings env [--env-file PATH] [--codex-auth]
       codex-settings variables

resolve    what envoy/render.py needs, as JSON (no secret); exits 2 on a bad value
env        the env file's values overridden by the environment, as JSON (secrets included);
           --codex-auth fills OPENAI_CODEX_AUTH from $CODEX_HOME/auth.json when it is unset
variables  every variable with its reader, default and allowed values";

/// A configuration problem: exit status 2, with the message on stderr and as JSON on stdout.
#[derive(Debug)]
struct Problem {
    variable: Option<&'static str>,
    message: String,
}

impl From<ConfigError> for Problem {
    fn from(e: ConfigError) -> Self {
        Self {
            variable: Some(e.variable),
            message: e.to_string(),
        }
    }
}

impl From<crate::env_file::EnvFileError> for Problem {
    fn from(e: crate::env_file::EnvFileError) -> Self {
        Self {
            variable: None,
            message: e.to_string(),
        }
    }
}

struct Args {
    command: String,
    env_file: Option<PathBuf>,
    codex_auth: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let command = args.next().ok_or("no command given")?;
    let mut parsed = Args {
        command,
        env_file: None,
        codex_auth: false,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--env-file" if parsed.command != "variables" => {
                parsed.env_file = Some(args.next().ok_or("--env-file needs a path")?.into());
            }
            "--codex-auth" if parsed.command == "env" => parsed.codex_auth = true,
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(parsed)
}

pub fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) if matches!(args.command.as_str(), "resolve" | "env" | "variables") => args,
        Ok(args) => return usage(&format!("unknown command {:?}", args.command)),
        Err(problem) => return usage(&problem),
    };
    let result = match args.command.as_str() {
        "variables" => print(&serde_json::json!({ "variables": manifest() })),
        command => match Settings::merge(args.env_file.as_deref(), Settings::process_environment()) {
            Err(e) => Err(e.into()),
            Ok(settings) if command == "resolve" => {
                resolve(&settings).map_err(Problem::from).and_then(|r| print(&r))
            }
            Ok(mut settings) => if args.codex_auth {
                attach_codex_auth(&mut settings)
            } else {
                Ok(())
            }
            .and_then(|()| print(&settings.0)),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            let _ = writeln!(std::io::stderr(), "codex-settings: {}", problem.message);
            let error =
                serde_json::json!({"error": {"variable": problem.variable, "message": problem.message}});
            let _ = writeln!(std::io::stdout(), "{error}");
            ExitCode::from(2)
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "codex-settings: {problem}\n{USAGE}");
    ExitCode::from(2)
}

fn print(value: &impl Serialize) -> Result<(), Problem> {
    let text = serde_json::to_string(value).map_err(|e| Problem {
        variable: None,
        message: e.to_string(),
    })?;
    writeln!(std::io::stdout(), "{text}").map_err(|e| Problem {
        variable: None,
        message: format!("cannot write the answer: {e}"),
    })
}

/// `make run` without `OPENAI_CODEX_AUTH`: the login `make login` or `codex login` wrote. Only the file's name
/// is printed, never its content (it holds live tokens).
fn attach_codex_auth(settings: &mut Settings) -> Result<(), Problem> {
    if settings.var("OPENAI_CODEX_AUTH").is_some() {
        note("Using ChatGPT credentials from OPENAI_CODEX_AUTH");
        return Ok(());
    }
    if let Some(dir) = settings.var("CODEX_AUTH_DIR") {
        let dir = expand_home(dir.trim(), settings.raw("HOME"));
        let (array, labels) = auth_dir(&dir)?;
        settings.set("OPENAI_CODEX_AUTH", array);
        note(&format!(
            "Using {} ChatGPT accounts from {}: {}",
            labels.len(),
            dir.display(),
            labels.join(", ")
        ));
        return Ok(());
    }
    let path = expand_home(
        &codex_home(&|name: &str| settings.var(name)),
        settings.raw("HOME"),
    )
    .join("auth.json");
    if !path.is_file() {
        note(&format!(
            "warning: OPENAI_CODEX_AUTH is not set and {} does not exist; chat requests will answer 401 \
             until you run `make login` (or `codex login`, or set OPENAI_CODEX_AUTH).",
            path.display()
        ));
        return Ok(());
    }
    let document = std::fs::read_to_string(&path).map_err(|e| Problem {
        variable: Some("CODEX_HOME"),
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    settings.set("OPENAI_CODEX_AUTH", document);
    note(&format!("Using ChatGPT credentials from {}", path.display()));
    Ok(())
}

/// `CODEX_AUTH_DIR`: every `*.json` file of the directory (by name), as one JSON array whose
/// elements carry their file's name (without `.json`) as `"label"` unless they name one.
fn auth_dir(dir: &Path) -> Result<(String, Vec<String>), Problem> {
    let problem = |message: String| Problem {
        variable: Some("CODEX_AUTH_DIR"),
        message,
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| problem(format!("cannot read {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(problem(format!(
            "{} holds no .json file: put one auth.json per account there (`make login ARGS=\"--label <label>\"`, or `codex login` and copy ~/.codex/auth.json to <label>.json)",
            dir.display()
        )));
    }
    let mut documents = Vec::with_capacity(files.len());
    let mut labels = Vec::with_capacity(files.len());
    for path in files {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| problem(format!("cannot read {}: {e}", path.display())))?;
        // Only the file's name goes into the message: the content holds live tokens.
        let mut document: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
            .map_err(|_| problem(format!("{} is not an auth.json JSON object", path.display())))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let label = document
            .get("label")
            .and_then(|l| l.as_str())
            .map_or(stem, str::to_string);
        document.insert("label".into(), serde_json::Value::String(label.clone()));
        labels.push(label);
        documents.push(serde_json::Value::Object(document));
    }
    let array = serde_json::to_string(&documents).map_err(|e| problem(e.to_string()))?;
    Ok((array, labels))
}

fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn expand_home(path: &str, home: Option<&String>) -> PathBuf {
    match (path.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            Path::new(home).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let parsed = args(&["env", "--env-file", "x", "--codex-auth"]).unwrap();
        assert_eq!(
            (parsed.command.as_str(), parsed.env_file, parsed.codex_auth),
            ("env", Some("x".into()), true)
        );
        assert!(args(&["resolve", "--codex-auth"]).is_err());
        assert!(args(&["variables", "--env-file", "x"]).is_err());
        assert!(args(&["resolve", "--env-file"]).is_err());
        assert!(args(&[]).is_err());
    }

    #[test]
    fn codex_home_expansion() {
        let home = "/home/me".to_string();
        assert_eq!(
            expand_home("~/.codex", Some(&home)),
            PathBuf::from("/home/me/.codex")
        );
        assert_eq!(expand_home("~", Some(&home)), PathBuf::from("/home/me"));
        assert_eq!(expand_home("~other/x", Some(&home)), PathBuf::from("~other/x"));
        assert_eq!(
            expand_home("/etc/codex", Some(&home)),
            PathBuf::from("/etc/codex")
        );
        assert_eq!(expand_home("~/.codex", None), PathBuf::from("~/.codex"));
    }

    #[test]
    fn an_auth_directory_becomes_a_labelled_array() {
        let dir = std::env::temp_dir().join(format!("codex-settings-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("work.json"), r#"{"tokens": {"access_token": "a"}}"#).unwrap();
        std::fs::write(
            dir.join("home.json"),
            r#"{"tokens": {"access_token": "b"}, "label": "mine"}"#,
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), "not an account").unwrap();
        let path = dir.display().to_string();
        let mut settings = crate::settings::of(&[("CODEX_AUTH_DIR", &path), ("CODEX_HOME", "/nonexistent")]);
        attach_codex_auth(&mut settings).unwrap();
        let array: serde_json::Value =
            serde_json::from_str(&settings.var("OPENAI_CODEX_AUTH").unwrap()).unwrap();
        let labels: Vec<&str> = array
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["label"].as_str().unwrap())
            .collect();
        assert_eq!(
            labels,
            ["mine", "work"],
            "sorted by file name, a label member kept"
        );
        assert_eq!(array[1]["tokens"]["access_token"], "a");
        std::fs::write(dir.join("broken.json"), "{\"tokens\": \"secret-value").unwrap();
        let mut settings = crate::settings::of(&[("CODEX_AUTH_DIR", &path)]);
        let err = attach_codex_auth(&mut settings).unwrap_err();
        assert!(
            err.message.contains("broken.json") && !err.message.contains("secret"),
            "{}",
            err.message
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let mut settings = crate::settings::of(&[("CODEX_AUTH_DIR", &path)]);
        assert!(
            attach_codex_auth(&mut settings).is_err(),
            "a missing directory is an error"
        );
    }

    #[test]
    fn auth_json_is_attached_only_when_unset() {
        let dir = std::env::temp_dir().join(format!("codex-settings-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("auth.json"), "{\"tokens\": {}}").unwrap();
        let home = dir.display().to_string();
        let mut settings = crate::settings::of(&[("CODEX_HOME", &home), ("OPENAI_CODEX_AUTH", " ")]);
        attach_codex_auth(&mut settings).unwrap();
        assert_eq!(
            settings.var("OPENAI_CODEX_AUTH").as_deref(),
            Some("{\"tokens\": {}}")
        );
        let mut settings = crate::settings::of(&[("CODEX_HOME", &home), ("OPENAI_CODEX_AUTH", "mine")]);
        attach_codex_auth(&mut settings).unwrap();
        assert_eq!(settings.var("OPENAI_CODEX_AUTH").as_deref(), Some("mine"));
        let mut settings = crate::settings::of(&[("CODEX_HOME", "/nonexistent")]);
        attach_codex_auth(&mut settings).unwrap();
        assert_eq!(settings.var("OPENAI_CODEX_AUTH"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
