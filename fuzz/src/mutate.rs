//! Mutations: bytes (flips, inserts, deletions, splices with other corpus inputs, numbers
//! replaced by edge values) and JSON values (a node replaced, removed or multiplied), stacked
//! one to four at a time.

use serde_json::{Map, Value};

use crate::engine::{Rng, Target};

const INTERESTING_BYTES: &[u8] = &[
    0, 1, 0x7F, 0x80, 0xC3, 0xE2, 0xF0, 0xFF, b'\n', b'\r', b'"', b'\\', b'{', b'}', b'[', b']', b':', b',',
    b' ', b'0', b'9', b'-', b'.', b'e',
];

const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "65535",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "1e309",
    "-0",
    "0.5",
    "1e-400",
    "99999999999999999999999999999",
];

/// Strings that tend to break text handling.
const INTERESTING_STRINGS: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "\r\n",
    "\n\n",
    "data: [DONE]",
    "é🌍世界",
    "\u{FEFF}",
    "\u{7F}",
    "\"}]}",
    "\\",
    "resp_",
    "Bearer ",
];

pub fn mutate(rng: &mut Rng, base: &[u8], corpus: &[Vec<u8>], target: &Target) -> Vec<u8> {
    let mut data = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let structured = match target.mutate {
            Some(m) if rng.one_in(2) => m(rng, &data, corpus, target.dictionary),
            _ => None,
        };
        data = match structured {
            Some(d) => d,
            None if rng.one_in(3) => json(rng, &data, target.dictionary).unwrap_or_else(|| {
                let mut d = data.clone();
                bytes(rng, &mut d, corpus, target.dictionary);
                d
            }),
            None => {
                bytes(rng, &mut data, corpus, target.dictionary);
                data
            }
        };
        data.truncate(target.max_len);
    }
    data
}

fn token<'a>(rng: &mut Rng, dictionary: &[&'a str]) -> &'a [u8] {
    if dictionary.is_empty() || rng.one_in(4) {
        rng.pick(INTERESTING_STRINGS).as_bytes()
    } else {
        rng.pick(dictionary).as_bytes()
    }
}

/// One byte-level change, in place.
pub fn bytes(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&str]) {
    let len = data.len();
    let at = rng.below(len + 1);
    let span = |rng: &mut Rng, from: usize| from + rng.below((len - from).min(32) + 1);
    match rng.below(12) {
        0 if len > 0 => data[at.min(len - 1)] ^= 1 << rng.below(8),
        1 if len > 0 => data[at.min(len - 1)] = *rng.pick(INTERESTING_BYTES),
        2 if len > 0 => data[at.min(len - 1)] = rng.below(256) as u8,
        3 | 4 => {
            let t = token(rng, dictionary).to_vec();
            data.splice(at..at, t);
        }
        5 => {
            let end = span(rng, at);
            let t = token(rng, dictionary).to_vec();
            data.splice(at..end, t);
        }
        6 => {
            let end = span(rng, at);
            data.drain(at..end);
        }
        7 => {
            let end = span(rng, at);
            let copy = data[at..end].to_vec();
            let to = rng.below(data.len() + 1);
            data.splice(to..to, copy);
        }
        8 => {
            // Part of another input, inserted.
            let other = rng.pick(corpus);
            let from = rng.below(other.len() + 1);
            let end = from + rng.below((other.len() - from).min(256) + 1);
            data.splice(at..at, other[from..end].iter().copied());
        }
        9 => {
            // This input's head on another's tail.
            let other = rng.pick(corpus);
            let from = rng.below(other.len() + 1);
            data.truncate(at);
            data.extend_from_slice(&other[from..]);
        }
        10 => {
            // A number replaced by an edge value.
            let digits: Vec<usize> = (0..len)
                .filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit()))
                .collect();
            if let Some(&start) = (!digits.is_empty()).then(|| rng.pick(&digits)) {
                let end = (start..len).find(|&i| !data[i].is_ascii_digit()).unwrap_or(len);
                data.splice(start..end, rng.pick(INTERESTING_NUMBERS).bytes());
            }
        }
        11 if len > 0 => data.truncate(at),
        _ => data.push(*rng.pick(INTERESTING_BYTES)),
    }
}

/// One change to a JSON document, or `None` when the input is not JSON.
pub fn json(rng: &mut Rng, data: &[u8], dictionary: &[&str]) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(data).ok()?;
    json_value(rng, &mut value, dictionary);
    Some(to_json(&value).into_bytes())
}

/// Changes one node of `value`, picked at random.
pub fn json_value(rng: &mut Rng, value: &mut Value, dictionary: &[&str]) {
    let mut count = 0;
    count_nodes(value, &mut count);
    let mut target = rng.below(count);
    if let Some(node) = nth_node(value, &mut target) {
        change(rng, node, dictionary);
    }
}

fn count_nodes(value: &Value, count: &mut usize) {
    *count += 1;
    match value {
        Value::Array(items) => items.iter().for_each(|v| count_nodes(v, count)),
        Value::Object(map) => map.values().for_each(|v| count_nodes(v, count)),
        _ => {}
    }
}

fn nth_node<'a>(value: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
    if *n == 0 {
        return Some(value);
    }
    *n -= 1;
    match value {
        Value::Array(items) => items.iter_mut().find_map(|v| nth_node(v, n)),
        Value::Object(map) => map.values_mut().find_map(|v| nth_node(v, n)),
        _ => None,
    }
}

fn interesting_value(rng: &mut Rng, dictionary: &[&str]) -> Value {
    match rng.below(10) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => {
            let number = *rng.pick(INTERESTING_NUMBERS);
            serde_json::from_str(number).unwrap_or(Value::Null)
        }
        3 => Value::String(rng.pick(INTERESTING_STRINGS).to_string()),
        4 => Value::Array(Vec::new()),
        5 => Value::Object(Map::new()),
        6 => Value::String("x".repeat(1 << rng.below(13))),
        7 => {
            // Deep nesting: parsers with a recursion limit must refuse it, not overflow the stack.
            let mut deep = Value::Null;
            for _ in 0..1 + rng.below(200) {
                deep = Value::Array(vec![deep]);
            }
            deep
        }
        _ => {
            let word = String::from_utf8_lossy(token(rng, dictionary))
                .trim_matches('"')
                .to_string();
            Value::String(word)
        }
    }
}

fn change(rng: &mut Rng, node: &mut Value, dictionary: &[&str]) {
    match node {
        Value::Object(map) if !map.is_empty() && rng.one_in(2) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            match rng.below(3) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    let copy = map[&key].clone();
                    let name = String::from_utf8_lossy(token(rng, dictionary))
                        .trim_matches('"')
                        .to_string();
                    map.insert(name, copy);
                }
                _ => {
                    map.insert(key, interesting_value(rng, dictionary));
                }
            }
        }
        Value::Object(map) => {
            let name = String::from_utf8_lossy(token(rng, dictionary))
                .trim_matches('"')
                .to_string();
            map.insert(name, interesting_value(rng, dictionary));
        }
        Value::Array(items) if !items.is_empty() && rng.one_in(2) => {
            let i = rng.below(items.len());
            if rng.one_in(2) {
                items.remove(i);
            } else {
                let copy = items[i].clone();
                for _ in 0..1 + rng.below(8) {
                    items.insert(i, copy.clone());
                }
            }
        }
        Value::String(s) if rng.one_in(2) => {
            let extra = String::from_utf8_lossy(token(rng, dictionary)).to_string();
            let at = (0..=rng.below(s.len() + 1))
                .rev()
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(0);
            s.insert_str(at, &extra);
        }
        _ => *node = interesting_value(rng, dictionary),
    }
}

/// Compact JSON with `type` first, as the Codex backend writes its events (the interpreter
/// skips ignored events by that leading field, so the order matters).
pub fn to_json(value: &Value) -> String {
    match value {
        Value::Object(map) if map.contains_key("type") => {
            let mut out = format!("{{\"type\":{}", map["type"]);
            for (key, v) in map.iter().filter(|(k, _)| *k != "type") {
                out.push(',');
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                out.push_str(&v.to_string());
            }
            out.push('}');
            out
        }
        other => other.to_string(),
    }
}
