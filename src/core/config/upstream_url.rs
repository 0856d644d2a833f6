//! The upstream Responses URL. Envoy owns the connection (the rendered cluster holds scheme,
//! host and port); the filter only needs the path to put on the forwarded request.

/// An `http(s)://host[:port]/path` URL split into the parts Envoy's cluster and the forwarded
/// `:path` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path plus query, always starting with `/`.
    pub path: String,
}

impl UpstreamUrl {
    /// Parses an absolute http(s) URL; the port defaults by scheme, the path to `/`. `Err` (a
    /// problem to put after the variable's name) for another scheme, userinfo, or a bad host or port.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (https, rest) = if let Some(rest) = strip_prefix_ci(raw, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ci(raw, "http://") {
            (false, rest)
        } else {
            return Err(format!("{raw:?} must be an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!("{raw:?} must not carry credentials"));
        }
        let (host, port) =
            split_host_port(authority).ok_or_else(|| format!("{raw:?} has no valid host[:port]"))?;
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Self {
            https,
            host: host.to_string(),
            port: port.unwrap_or(if https { 443 } else { 80 }),
            path,
        })
    }
}

fn strip_prefix_ci<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| value.get(prefix.len()..))
        .flatten()
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = rest.get(..end)?;
        let after = rest.get(end + 1..)?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains([' ', '/']) {
        return None;
    }
    match port {
        None => Some((host, None)),
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).map(|p| (host, Some(p))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_accepted_forms() {
        let cases = [
            (
                "https://chatgpt.com/backend-api/codex/responses",
                true,
                "chatgpt.com",
                443,
                "/backend-api/codex/responses",
            ),
            ("http://127.0.0.1:8080/x?y=1", false, "127.0.0.1", 8080, "/x?y=1"),
            ("HTTP://host", false, "host", 80, "/"),
            ("http://[::1]:9/r", false, "::1", 9, "/r"),
            ("https://h?q", true, "h", 443, "/?q"),
        ];
        for (raw, https, host, port, path) in cases {
            let url = UpstreamUrl::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(
                (url.https, url.host.as_str(), url.port, url.path.as_str()),
                (https, host, port, path),
                "{raw}"
            );
        }
    }

    #[test]
    fn rejects_what_envoy_could_not_route() {
        for raw in [
            "ftp://h/x",
            "chatgpt.com/x",
            "http:///x",
            "http://h:0/",
            "http://h:99999/",
            "http://u:p@h/",
            "",
        ] {
            assert!(UpstreamUrl::parse(raw).is_err(), "{raw}");
        }
    }
}
