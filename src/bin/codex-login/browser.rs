//! The browser login (authorization code + PKCE, as `codex login` runs it): a callback server
//! on 127.0.0.1, the authorize URL printed for the user to open, and the code that comes back
//! to `http://localhost:{port}/auth/callback` exchanged with the verifier. A callback whose
//! `state` is not this login's is refused and the login keeps waiting: it may come from
//! another page, and must not end or hijack the user's sign-in.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

use codex_openai_wrapper::core::auth::auth_json::ChatgptTokens;

use crate::failure::Failure;
use crate::http::{encode, query_pairs};
use crate::issuer::Issuer;

/// The callback ports the issuer accepts in redirect URIs (Codex CLI's, in its order).
pub const CALLBACK_PORTS: &[u16] = &[1455, 1457];
const SCOPE: &str = "openid profile email offline_access api.connectors.read api.connectors.invoke";
const ORIGINATOR: &str = "codex_cli_rs";
const BIND_ATTEMPTS: u32 = 5;
const BIND_RETRY: Duration = Duration::from_millis(200);
/// A browser sends its request at once; a connection that does not is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD_BYTES: u64 = 16 * 1024;

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

fn random_b64(bytes: usize) -> Result<String, Failure> {
    let mut buffer = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buffer)
        .map_err(|_| Failure::Other("the system's random number generator failed".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

/// Verifier: 64 random bytes, base64url (86 characters); challenge: base64url(SHA-256(verifier)).
pub fn pkce() -> Result<Pkce, Failure> {
    let verifier = random_b64(64)?;
    let challenge = challenge_of(&verifier);
    Ok(Pkce { verifier, challenge })
}

pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()))
}

pub fn authorize_url(issuer: &Issuer, redirect_uri: &str, pkce: &Pkce, state: &str) -> String {
    let query = [
        ("response_type", "code"),
        ("client_id", issuer.client_id.as_str()),
        ("redirect_uri", redirect_uri),
        ("scope", SCOPE),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("id_token_add_organizations", "true"),
        ("codex_cli_simplified_flow", "true"),
        ("state", state),
        ("originator", ORIGINATOR),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    format!("{}/oauth/authorize?{query}", issuer.base)
}

/// The first callback port that can be bound. A port held by an earlier login server (this
/// program's or Codex CLI's) is asked to stop with `GET /cancel` first, as Codex CLI does.
pub fn bind(ports: &[u16]) -> Result<TcpListener, Failure> {
    for &port in ports {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        for attempt in 0..BIND_ATTEMPTS {
            match TcpListener::bind(address) {
                Ok(listener) => return Ok(listener),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    if attempt == 0 {
                        cancel_previous(address);
                    }
                    std::thread::sleep(BIND_RETRY);
                }
                Err(e) => return Err(Failure::Other(format!("cannot listen on {address}: {e}"))),
            }
        }
    }
    Err(Failure::PortBusy(ports.to_vec()))
}

fn cancel_previous(address: SocketAddr) {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(
        format!(
            "GET /cancel HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            address.port()
        )
        .as_bytes(),
    );
    let _ = stream.read(&mut [0u8; 64]);
}

/// Runs the login on `listener`: `show` gets the authorize URL, then callbacks are served
/// until one completes or ends the login, or `timeout` passes.
///
/// Each connection's request is read on a thread of its own: a browser may open a connection
/// it never uses (a preconnect), which must not hold up the one that brings the code.
pub fn login(
    issuer: &Issuer,
    listener: TcpListener,
    timeout: Duration,
    show: impl FnOnce(&str),
) -> Result<ChatgptTokens, Failure> {
    let port = listener
        .local_addr()
        .map_err(|e| Failure::Other(format!("the callback server has no address: {e}")))?
        .port();
    let redirect_uri = format!("http://localhost:{port}/auth/callback");
    let pkce = pkce()?;
    let state = random_b64(32)?;
    let (requests, arrived) = mpsc::channel::<(TcpStream, String)>();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let requests = requests.clone();
            std::thread::spawn(move || {
                if let Some(target) = request_target(&stream) {
                    let _ = requests.send((stream, target));
                }
            });
        }
    });
    show(&authorize_url(issuer, &redirect_uri, &pkce, &state));
    let deadline = Instant::now().checked_add(timeout);
    loop {
        let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
        let Ok((mut stream, target)) = arrived.recv_timeout(left) else {
            return Err(Failure::SignInTimedOut(timeout.as_secs()));
        };
        match handle(issuer, &target, &redirect_uri, &pkce, &state) {
            Handled::Answer(status, body) => respond(&mut stream, status, body),
            Handled::Done(status, body, outcome) => {
                respond(&mut stream, status, body);
                return outcome;
            }
        }
    }
}

enum Handled {
    /// Answer and keep waiting.
    Answer(u16, &'static str),
    /// Answer and end the login with this outcome.
    Done(u16, &'static str, Result<ChatgptTokens, Failure>),
}

const SIGNED_IN: &str = "<!doctype html><title>Signed in</title><p>Signed in to ChatGPT. \
    The login is saved; you can close this window.</p>";
const NOT_SIGNED_IN: &str = "<!doctype html><title>Sign-in failed</title><p>The sign-in could not \
    be completed. The terminal that started the login says why.</p>";

fn handle(issuer: &Issuer, target: &str, redirect_uri: &str, pkce: &Pkce, state: &str) -> Handled {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/auth/callback" => {
            let params = query_pairs(query);
            let param = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
                    .filter(|v| !v.is_empty())
            };
            if param("state") != Some(state) {
                warn(
                    "refused a callback whose state is not this login's (a stale or foreign page); still waiting",
                );
                return Handled::Answer(400, "State mismatch: this is not the sign-in this login started.");
            }
            if let Some(error) = param("error") {
                let description = param("error_description").unwrap_or_default();
                let why = if description.contains("missing_codex_entitlement") {
                    "this ChatGPT workspace has no Codex access (missing_codex_entitlement): pick another \
                     workspace or ask its admin"
                        .to_string()
                } else if description.is_empty() {
                    error.to_string()
                } else {
                    format!("{error}: {description}")
                };
                return Handled::Done(403, NOT_SIGNED_IN, Err(Failure::Refused(why)));
            }
            let Some(code) = param("code") else {
                return Handled::Done(
                    400,
                    NOT_SIGNED_IN,
                    Err(Failure::Other(
                        "the callback carried no authorization code".into(),
                    )),
                );
            };
            match issuer.exchange(code, redirect_uri, &pkce.verifier) {
                Ok(tokens) => Handled::Done(200, SIGNED_IN, Ok(tokens)),
                Err(failure) => Handled::Done(502, NOT_SIGNED_IN, Err(failure)),
            }
        }
        "/cancel" => Handled::Done(
            200,
            "Login cancelled",
            Err(Failure::Other(
                "the login was cancelled (another login took over its callback port)".into(),
            )),
        ),
        _ => Handled::Answer(404, "Not Found"),
    }
}

fn warn(line: &str) {
    let _ = writeln!(std::io::stderr(), "codex-login: {line}");
}

/// The request line's target of a `GET`; `None` for anything that is not a request.
fn request_target(stream: &TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    let mut reader = BufReader::new(stream.take(MAX_HEAD_BYTES));
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    // The rest of the head is read so the browser sees its request answered, not cut.
    let mut header = String::new();
    while reader.read_line(&mut header).ok()? > 0 && !header.trim_end().is_empty() {
        header.clear();
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET").then(|| target.to_string())
}

fn respond(stream: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Bad Gateway",
    };
    let kind = if body.starts_with('<') {
        "text/html"
    } else {
        "text/plain"
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Client;

    fn issuer() -> Issuer {
        Issuer {
            base: "https://auth.example".into(),
            client_id: "app_x".into(),
            http: Client::new(),
        }
    }

    #[test]
    fn pkce_is_rfc_7636_s256() {
        // RFC 7636 appendix B.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p = pkce().unwrap();
        assert_eq!(p.verifier.len(), 86);
        assert_eq!(p.challenge, challenge_of(&p.verifier));
        assert_ne!(p.verifier, pkce().unwrap().verifier);
    }

    #[test]
    fn authorize_url_has_codex_clis_parameters() {
        let p = Pkce {
            verifier: "v".into(),
            challenge: "c".into(),
        };
        let url = authorize_url(&issuer(), "http://localhost:1455/auth/callback", &p, "st");
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "https://auth.example/oauth/authorize");
        let pairs = query_pairs(query);
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("redirect_uri"), Some("http://localhost:1455/auth/callback"));
        assert_eq!(get("scope"), Some(SCOPE));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("client_id"), Some("app_x"));
        assert_eq!(get("state"), Some("st"));
        assert_eq!(get("codex_cli_simplified_flow"), Some("true"));
    }

    #[test]
    fn a_wrong_state_is_answered_and_the_login_waits_on() {
        let p = Pkce {
            verifier: "v".into(),
            challenge: "c".into(),
        };
        let redirect = "http://localhost:1/auth/callback";
        for target in ["/auth/callback?code=x&state=other", "/auth/callback?code=x"] {
            assert!(matches!(
                handle(&issuer(), target, redirect, &p, "st"),
                Handled::Answer(400, _)
            ));
        }
        assert!(matches!(
            handle(&issuer(), "/favicon.ico", redirect, &p, "st"),
            Handled::Answer(404, _)
        ));
        let denied = handle(
            &issuer(),
            "/auth/callback?state=st&error=access_denied&error_description=missing_codex_entitlement",
            redirect,
            &p,
            "st",
        );
        match denied {
            Handled::Done(403, _, Err(Failure::Refused(why))) => {
                assert!(why.contains("no Codex access"), "{why}")
            }
            _ => panic!("a denied sign-in ends the login"),
        }
    }
}
