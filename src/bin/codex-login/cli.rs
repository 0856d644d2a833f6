//! Arguments, settings and what the user sees. The prompt (URL, code) goes to stdout, so a
//! wrapper script can show it; progress and problems go to stderr. Nothing printed is a token.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codex_openai_wrapper::core::auth::auth_json::{ChatgptTokens, format_rfc3339};
use codex_openai_wrapper::core::config::{DEFAULT_CLIENT_ID, auth_issuer};

use crate::browser;
use crate::device;
use crate::failure::Failure;
use crate::http::Client;
use crate::issuer::Issuer;
use crate::settings::Settings;
use crate::status;
use crate::store;

const USAGE: &str =
    "usage: codex-login [--browser] [--out FILE | --label NAME] [--env-file PATH] [--timeout SECONDS]
       codex-login --status [--env-file PATH]

Signs in to ChatGPT and writes the login as Codex CLI's auth.json (mode 0600).
  (default)         device code: open the printed page anywhere, enter the printed code
  --browser         authorization code + PKCE with a callback on 127.0.0.1:1455 (or 1457);
                    open the printed URL in a browser on this machine
  --out FILE        write the login to FILE instead of $CODEX_HOME/auth.json
  --label NAME      write it to $CODEX_AUTH_DIR/NAME.json (an account of the pool)
  --env-file PATH   settings file (default .dev.vars; the environment wins over it)
  --timeout SECONDS give up waiting for the sign-in after this long (default 900,
                    the device code's lifetime)
  --status          list the logins found, their plan, account and expiry (never a token)

Exit status: 0 done, 1 network or file problem, 2 bad arguments or settings,
3 device login disabled, 4 code expired, 5 login refused, 6 callback port busy.";

#[derive(Debug, Default)]
struct Args {
    browser: bool,
    status: bool,
    out: Option<PathBuf>,
    label: Option<String>,
    env_file: Option<PathBuf>,
    timeout: Option<Duration>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args::default();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--browser" => parsed.browser = true,
            "--status" => parsed.status = true,
            "--out" => parsed.out = Some(value("--out")?.into()),
            "--label" => parsed.label = Some(value("--label")?),
            "--env-file" => parsed.env_file = Some(value("--env-file")?.into()),
            "--timeout" => {
                let raw = value("--timeout")?;
                let seconds: u64 = raw
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or(format!("--timeout {raw:?}: give a positive number of seconds"))?;
                parsed.timeout = Some(Duration::from_secs(seconds));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if parsed.status && (parsed.browser || parsed.out.is_some() || parsed.label.is_some()) {
        return Err("--status only takes --env-file".into());
    }
    Ok(parsed)
}

pub fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(problem) if problem.is_empty() => {
            say_out(USAGE);
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            say(&format!("codex-login: {problem}\n{USAGE}"));
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            say(&format!("codex-login: {failure}"));
            ExitCode::from(failure.exit_code())
        }
    }
}

fn run(args: &Args) -> Result<(), Failure> {
    let env_file = args
        .env_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(".dev.vars"));
    let settings = Settings::merge(Some(&env_file), Settings::process_environment())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    if args.status {
        return show_status(&settings);
    }
    let target = store::target(&settings, args.out.as_deref(), args.label.as_deref())?;
    let var = |name: &str| settings.var(name);
    let issuer = Issuer {
        base: auth_issuer(&var).map_err(|e| Failure::Usage(e.to_string()))?,
        client_id: settings
            .var("CHATGPT_LOCAL_CLIENT_ID")
            .map_or_else(|| DEFAULT_CLIENT_ID.to_string(), |c| c.trim().to_string()),
        http: Client::new(),
    };
    let timeout = args.timeout.unwrap_or(device::DEFAULT_TIMEOUT);
    let tokens = if args.browser {
        let listener = browser::bind(browser::CALLBACK_PORTS)?;
        let address = listener
            .local_addr()
            .map_or_else(|_| "the callback".into(), |a| a.to_string());
        browser::login(&issuer, listener, timeout, |url| {
            say_out(&format!(
                "Open this URL in a browser on this machine and sign in to ChatGPT:\n\n  {url}\n\n\
                 Waiting for the sign-in to come back to {address}…"
            ));
        })?
    } else {
        device::login(&issuer, timeout, |prompt| {
            say_out(&format!(
                "To sign in to ChatGPT, open this page on any device:\n\n  {}\n\nand enter this code \
                 (it expires in 15 minutes; never share it):\n\n  {}\n\nWaiting for the sign-in…",
                prompt.verification_url, prompt.user_code
            ));
        })?
    };
    save(&tokens, &target)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn save(tokens: &ChatgptTokens, target: &std::path::Path) -> Result<(), Failure> {
    store::write_atomically(target, &tokens.to_auth_json(now()))?;
    let account = tokens
        .account_id
        .as_deref()
        .map_or_else(|| "unknown".into(), status::short_account);
    let plan = tokens.plan_type().unwrap_or_else(|| "unknown".into());
    let expiry = tokens.expires_at.map_or_else(|| "unknown".into(), format_rfc3339);
    say_out(&format!(
        "Signed in (account {account}, plan {plan}, access token valid until {expiry}).\n\
         Saved the login to {}. A wrapper under `make run` picks it up by itself; otherwise start it with `make run`.",
        target.display()
    ));
    Ok(())
}

fn show_status(settings: &Settings) -> Result<(), Failure> {
    let logins = status::find(settings);
    if logins.is_empty() {
        let mut looked = vec![store::codex_home_auth(settings).display().to_string()];
        if let Some(dir) = store::auth_dir(settings) {
            looked.push(format!("{}/*.json", dir.display()));
        }
        return Err(Failure::Other(format!(
            "no login found (looked at {}): run `make login`",
            looked.join(" and ")
        )));
    }
    say_out(status::render(&logins, now()).trim_end());
    Ok(())
}

fn say_out(text: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn arguments() {
        let a = parse(&["--browser", "--label", "work", "--timeout", "30"]).unwrap();
        assert!(a.browser && !a.status);
        assert_eq!(a.label.as_deref(), Some("work"));
        assert_eq!(a.timeout, Some(Duration::from_secs(30)));
        assert!(parse(&["--timeout", "0"]).is_err());
        assert!(parse(&["--out"]).is_err());
        assert!(parse(&["--status", "--browser"]).is_err());
        assert!(parse(&["--nope"]).is_err());
        assert_eq!(parse(&["--help"]).unwrap_err(), "");
    }
}
