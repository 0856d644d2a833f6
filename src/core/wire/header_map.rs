//! The proxy-wasm header-map wire format, as bytes: a little-endian `u32` count, then a
//! (name length, value length) `u32` pair per header, then each name and value followed by a
//! NUL. The host hands over whatever the client or upstream sent, so names and values are
//! bytes here; what a value that is not UTF-8 means is decided by the flow, not by the parser.

/// The headers of one serialized map, borrowed from it; `None` when the bytes do not follow
/// the format (lengths that overrun the buffer, a missing NUL, a count the buffer cannot
/// hold). An empty buffer is an empty map.
pub fn parse(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = usize::try_from(read_u32(bytes, 0)?).ok()?;
    let sizes_end = count.checked_mul(8)?.checked_add(4)?;
    let sizes = bytes.get(4..sizes_end)?;
    // Every header takes at least its 8 size bytes and two NULs, so a count the buffer cannot
    // hold is refused before anything is allocated for it.
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 10));
    let mut at = sizes_end;
    for size in sizes.chunks_exact(8) {
        let name_len = usize::try_from(read_u32(size, 0)?).ok()?;
        let value_len = usize::try_from(read_u32(size, 4)?).ok()?;
        let (name, next) = field(bytes, at, name_len)?;
        let (value, next) = field(bytes, next, value_len)?;
        pairs.push((name, value));
        at = next;
    }
    Some(pairs)
}

/// `len` bytes at `at` followed by a NUL; returns them and the offset after the NUL.
fn field(bytes: &[u8], at: usize, len: usize) -> Option<(&[u8], usize)> {
    let end = at.checked_add(len)?;
    let value = bytes.get(at..end)?;
    (*bytes.get(end)? == 0).then_some((value, end.saturating_add(1)))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// The map for `pairs`, in the same format (what the host expects when the filter sets a map
/// or sends a local reply). A length over `u32::MAX` cannot occur in a header; it is
/// written as `u32::MAX`, which the host then refuses.
pub fn serialize<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let size = pairs.iter().fold(4usize, |size, (k, v)| {
        size.saturating_add(k.as_ref().len())
            .saturating_add(v.as_ref().len())
            .saturating_add(10)
    });
    let mut bytes = Vec::with_capacity(size);
    let len32 = |len: usize| u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
    bytes.extend_from_slice(&len32(pairs.len()));
    for (k, v) in pairs {
        bytes.extend_from_slice(&len32(k.as_ref().len()));
        bytes.extend_from_slice(&len32(v.as_ref().len()));
    }
    for (k, v) in pairs {
        bytes.extend_from_slice(k.as_ref());
        bytes.push(0);
        bytes.extend_from_slice(v.as_ref());
        bytes.push(0);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_bytes_that_are_not_utf8() {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":path", b"/v1/chat/completions"),
            (b"x-odd", b"caf\xe9"),
            (b"empty", b""),
        ];
        let bytes = serialize(&pairs);
        assert_eq!(parse(&bytes), Some(pairs));
        assert_eq!(parse(b""), Some(Vec::new()));
        assert_eq!(parse(&serialize::<&str, &str>(&[])), Some(Vec::new()));
    }

    #[test]
    fn malformed_maps_are_refused_without_panicking() {
        let good = serialize(&[("a", "b"), ("cc", "dd")]);
        // Every truncation and every single-byte corruption: parsed or refused, never a panic.
        for end in 0..good.len() {
            let cut = good.get(..end).unwrap_or_default();
            assert!(end == 0 || parse(cut).is_none(), "truncated at {end}");
        }
        for at in 0..good.len() {
            for byte in [0u8, 1, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[at] = byte;
                let _ = parse(&bad);
            }
        }
        // Near-valid maps from a fixed pseudo-random sequence (small counts and lengths, NULs
        // where they may or may not belong): parsed or refused, never a panic, and whatever
        // parses whole serializes back to the same bytes.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut parsed = 0;
        for _ in 0..20_000 {
            let len = (next() % 48) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| [0, 1, 2, b'a'][(next() % 4) as usize]).collect();
            let words = 1 + 2 * usize::from(bytes.first().copied().unwrap_or(0));
            for (at, byte) in bytes.iter_mut().enumerate().take(4 * words) {
                if at % 4 != 0 {
                    *byte = 0;
                }
            }
            if let Some(pairs) = parse(&bytes) {
                parsed += 1;
                let whole: usize = 4 + pairs.iter().map(|(k, v)| k.len() + v.len() + 10).sum::<usize>();
                if !pairs.is_empty() && whole == bytes.len() {
                    assert_eq!(serialize(&pairs), bytes);
                }
            }
        }
        assert!(
            parsed > 100,
            "the generator should reach the parser's success path: {parsed}"
        );
        // A count no buffer could hold.
        assert_eq!(parse(&[0xff, 0xff, 0xff, 0xff]), None);
        // A length that runs past the end, and a value without its NUL.
        assert_eq!(parse(&[1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, b'a', 0, 0]), None);
        assert_eq!(
            parse(&[1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'a', 0, b'b', b'c']),
            None
        );
    }
}
