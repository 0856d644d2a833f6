//! Image data URLs: clients send url-safe or unpadded base64 that the backend rejects, so
//! `data:image/...;base64,` payloads are rewritten to standard padded base64. Anything else
//! (https URLs, payloads that are not base64 at all) passes through untouched.

use std::borrow::Cow;

/// An image URL as the backend accepts it; borrowed back unchanged unless it is a base64
/// image data URL that needed rewriting.
pub fn normalize(url: Cow<'_, str>) -> Cow<'_, str> {
    let Some((header, data)) = url.split_once(',') else {
        return url;
    };
    if !header.starts_with("data:image/") || !header.ends_with(";base64") {
        return url;
    }
    let clean: String = data
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n' | ' ' | '\t'))
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            other => other,
        })
        .collect();
    let unpadded = clean.trim_end_matches('=');
    let valid = unpadded
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
    // A remainder of 1 cannot come from any byte sequence: leave such input alone.
    if !valid || unpadded.len() % 4 == 1 {
        return url;
    }
    let padding = (4 - unpadded.len() % 4) % 4;
    let normalized = format!("{header},{unpadded}{}", "=".repeat(padding));
    if normalized == *url {
        url
    } else {
        Cow::Owned(normalized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_urlsafe_and_unpadded_base64() {
        let cases = [
            ("data:image/png;base64,AAA-_w", "data:image/png;base64,AAA+/w=="),
            ("data:image/png;base64,AAAA", "data:image/png;base64,AAAA"),
            ("data:image/jpeg;base64,QU\r\nJD", "data:image/jpeg;base64,QUJD"),
            ("data:image/png;base64,QUI", "data:image/png;base64,QUI="),
            ("data:image/png;base64,A", "data:image/png;base64,A"),
            ("data:image/png;base64,@@@", "data:image/png;base64,@@@"),
            ("https://example.com/a.png", "https://example.com/a.png"),
            ("data:text/plain;base64,QUI", "data:text/plain;base64,QUI"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(Cow::Borrowed(input)), expected, "{input}");
        }
    }

    #[test]
    fn unchanged_urls_stay_borrowed() {
        assert!(matches!(
            normalize(Cow::Borrowed("data:image/png;base64,AAAA")),
            Cow::Borrowed(_)
        ));
    }
}
