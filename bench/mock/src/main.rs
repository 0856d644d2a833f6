//! A fast mock of the ChatGPT Codex Responses backend for `bench/run.py`.
//!
//! std only: one thread per connection, HTTP/1.1 keep-alive, TCP_NODELAY on every accepted
//! socket. `POST /backend-api/codex/responses` reads and discards the request body (chunked or
//! Content-Length) and answers a chunked `text/event-stream` built from the documented
//! Responses event shapes (the same shapes as `tests/harness/sse.py`), one HTTP chunk per event.
//!
//! The stream is chosen by the command line (`--profile short|long|tools`, `--ttft-ms`,
//! `--gap-ms`, `--deltas`), overridden per request by the query string
//! (`?profile=long&ttft_ms=0&gap_ms=20&deltas=100`) or `x-mock-*` headers, and the defaults can
//! be changed at run time with `POST /_mock/config?<same keys>` (the filter rewrites the
//! upstream path and drops client headers, so the bench switches profiles that way).
//!
//! Timing: `response.created` and `response.in_progress` are written at once, then the mock
//! waits `ttft_ms` ("thinking"), then the output item, the first delta, and every further delta
//! after `gap_ms`. With `gap_ms` = 0 the rest of the stream is coalesced into 64 KiB writes
//! unless `--write-per-event` is given.
//!
//! Other routes: `GET /api/tags` (a small Ollama model list), `GET /health`,
//! `GET /_mock/stats` (requests served), `POST /_mock/record?on=1|0` and
//! `GET /_mock/last-request` (the last Responses request as JSON, to replay exactly what the
//! filter sends upstream), anything else is a 404.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::Duration;

const CODEX_PATH: &str = "/backend-api/codex/responses";
const RESPONSE_ID: &str = "resp_bench_1";
const MESSAGE_ID: &str = "msg_bench_1";
const MODEL: &str = "gpt-5.5";
const CREATED_AT: u64 = 1_766_361_600;
const WRITE_BUFFER: usize = 64 * 1024;
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The answer text is cut into ~4-character deltas, like a tokenizer's output.
const LOREM: &str = "The quick brown fox jumps over the lazy dog while the careful engineer \
measures every microsecond of the proxy, because a gateway that buffers tokens is a gateway \
that users notice. Streams must flow one frame at a time, without stalls, without Nagle, and \
without surprises. ";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Profile {
    Short,
    Long,
    Tools,
}

impl Profile {
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "short" => Some(Self::Short),
            "long" => Some(Self::Long),
            "tools" => Some(Self::Tools),
            _ => None,
        }
    }

    fn default_deltas(self) -> usize {
        match self {
            Self::Short => 12,
            Self::Long => 2000,
            // Argument deltas per function call.
            Self::Tools => 12,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct StreamSpec {
    profile: Profile,
    deltas: usize,
    ttft_ms: u64,
    gap_ms: u64,
}

impl StreamSpec {
    /// Applies `key=value` settings (query string keys or `x-mock-*` header names).
    fn apply(&mut self, key: &str, value: &str) -> Result<(), String> {
        let number = |v: &str| v.parse::<u64>().map_err(|_| format!("{key}: not a number: {v}"));
        match key {
            "profile" => {
                let profile = Profile::parse(value).ok_or_else(|| format!("unknown profile {value}"))?;
                if profile != self.profile {
                    self.deltas = profile.default_deltas();
                }
                self.profile = profile;
            }
            "deltas" => self.deltas = number(value)?.clamp(1, 1_000_000) as usize,
            "ttft_ms" | "ttft-ms" => self.ttft_ms = number(value)?,
            "gap_ms" | "gap-ms" => self.gap_ms = number(value)?,
            _ => return Err(format!("unknown setting {key}")),
        }
        Ok(())
    }
}

/// One event, already framed as an HTTP chunk; `pause_before` is a delta boundary.
struct Chunk {
    bytes: Vec<u8>,
    pause_before: bool,
}

/// A pre-rendered response body: `head` goes out at once, then `ttft`, then `rest`.
struct Stream {
    spec: StreamSpec,
    head: Vec<u8>,
    rest: Vec<Chunk>,
    total_bytes: usize,
    events: usize,
}

struct Server {
    defaults: RwLock<StreamSpec>,
    cache: Mutex<HashMap<StreamSpec, Arc<Stream>>>,
    write_per_event: bool,
    requests: AtomicU64,
    streams: AtomicU64,
    verbose: AtomicBool,
    /// Keep the last Responses request (head and body) for `GET /_mock/last-request`.
    record: AtomicBool,
    last_request: Mutex<Vec<u8>>,
}

// ------------------------------------------------------------------------------------------
// Event rendering (shapes: tests/harness/sse.py, codex-backend.md §10.3)

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    json_str(&mut out, s);
    out
}

struct Events {
    list: Vec<(String, String, bool)>, // (type, data json without sequence_number, pause_before)
}

impl Events {
    fn push(&mut self, kind: &str, fields: String, pause_before: bool) {
        self.list.push((kind.to_string(), fields, pause_before));
    }
}

fn response_obj(status: &str, extra: &str) -> String {
    format!(
        "{{\"id\":\"{RESPONSE_ID}\",\"object\":\"response\",\"created_at\":{CREATED_AT},\"status\":\"{status}\",\"model\":\"{MODEL}\",\"output\":[]{extra}}}"
    )
}

fn usage(output_tokens: usize) -> String {
    let input = 42;
    format!(
        "{{\"input_tokens\":{input},\"input_tokens_details\":{{\"cached_tokens\":0}},\"output_tokens\":{output_tokens},\"output_tokens_details\":{{\"reasoning_tokens\":0}},\"total_tokens\":{}}}",
        input + output_tokens
    )
}

/// Cuts `n` pieces of ~4 characters out of an endless repetition of `source`.
fn pieces(source: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = source.chars().collect();
    (0..n)
        .map(|i| (0..4).map(|k| chars[(i * 4 + k) % chars.len()]).collect())
        .collect()
}

fn text_events(spec: &StreamSpec) -> Events {
    let mut ev = Events { list: Vec::new() };
    let deltas = pieces(LOREM, spec.deltas);
    let text: String = deltas.concat();
    ev.push(
        "response.created",
        format!("\"response\":{}", response_obj("in_progress", ",\"usage\":null")),
        false,
    );
    ev.push(
        "response.in_progress",
        format!("\"response\":{}", response_obj("in_progress", ",\"usage\":null")),
        false,
    );
    ev.push(
        "response.output_item.added",
        format!("\"output_index\":0,\"item\":{{\"id\":\"{MESSAGE_ID}\",\"type\":\"message\",\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}}"),
        false,
    );
    ev.push(
        "response.content_part.added",
        format!("\"item_id\":\"{MESSAGE_ID}\",\"output_index\":0,\"content_index\":0,\"part\":{{\"type\":\"output_text\",\"annotations\":[],\"text\":\"\"}}"),
        false,
    );
    for (i, d) in deltas.iter().enumerate() {
        ev.push(
            "response.output_text.delta",
            format!("\"item_id\":\"{MESSAGE_ID}\",\"output_index\":0,\"content_index\":0,\"delta\":{},\"logprobs\":[]", quoted(d)),
            i > 0,
        );
    }
    let text_q = quoted(&text);
    ev.push(
        "response.output_text.done",
        format!("\"item_id\":\"{MESSAGE_ID}\",\"output_index\":0,\"content_index\":0,\"text\":{text_q}"),
        false,
    );
    ev.push(
        "response.output_item.done",
        format!("\"output_index\":0,\"item\":{{\"id\":\"{MESSAGE_ID}\",\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{{\"type\":\"output_text\",\"annotations\":[],\"text\":{text_q}}}]}}"),
        false,
    );
    ev.push(
        "response.completed",
        format!(
            "\"response\":{}",
            response_obj("completed", &format!(",\"usage\":{}", usage(spec.deltas)))
        ),
        false,
    );
    ev
}

fn tool_events(spec: &StreamSpec) -> Events {
    let mut ev = Events { list: Vec::new() };
    ev.push(
        "response.created",
        format!("\"response\":{}", response_obj("in_progress", ",\"usage\":null")),
        false,
    );
    ev.push(
        "response.in_progress",
        format!("\"response\":{}", response_obj("in_progress", ",\"usage\":null")),
        false,
    );
    let calls = [
        (
            "get_weather",
            "{\"location\":\"Paris, France\",\"unit\":\"celsius\",\"days\":3}",
        ),
        (
            "search_docs",
            "{\"query\":\"envoy proxy-wasm streaming\",\"limit\":5,\"lang\":\"en\"}",
        ),
    ];
    let mut first = true;
    for (index, (name, args)) in calls.iter().enumerate() {
        let item_id = format!("fc_bench_{}", index + 1);
        let call_id = format!("call_bench_{}", index + 1);
        ev.push(
            "response.output_item.added",
            format!("\"output_index\":{index},\"item\":{{\"id\":\"{item_id}\",\"type\":\"function_call\",\"status\":\"in_progress\",\"call_id\":\"{call_id}\",\"name\":\"{name}\",\"arguments\":\"\"}}"),
            false,
        );
        // `deltas` argument fragments per call, cycling through the arguments if asked for more.
        let frags: Vec<String> = {
            let chars: Vec<char> = args.chars().collect();
            let per = chars.len().div_ceil(spec.deltas.max(1)).max(1);
            chars.chunks(per).map(|c| c.iter().collect()).collect()
        };
        for frag in &frags {
            ev.push(
                "response.function_call_arguments.delta",
                format!(
                    "\"item_id\":\"{item_id}\",\"output_index\":{index},\"delta\":{}",
                    quoted(frag)
                ),
                !first,
            );
            first = false;
        }
        ev.push(
            "response.function_call_arguments.done",
            format!(
                "\"item_id\":\"{item_id}\",\"output_index\":{index},\"arguments\":{}",
                quoted(args)
            ),
            false,
        );
        ev.push(
            "response.output_item.done",
            format!("\"output_index\":{index},\"item\":{{\"id\":\"{item_id}\",\"type\":\"function_call\",\"status\":\"completed\",\"call_id\":\"{call_id}\",\"name\":\"{name}\",\"arguments\":{}}}", quoted(args)),
            false,
        );
    }
    ev.push(
        "response.completed",
        format!(
            "\"response\":{}",
            response_obj("completed", &format!(",\"usage\":{}", usage(40)))
        ),
        false,
    );
    ev
}

fn http_chunk(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

fn render(spec: StreamSpec) -> Stream {
    let events = match spec.profile {
        Profile::Short | Profile::Long => text_events(&spec),
        Profile::Tools => tool_events(&spec),
    };
    let mut head = Vec::new();
    let mut rest = Vec::new();
    let mut total = 0;
    let count = events.list.len();
    for (seq, (kind, fields, pause_before)) in events.list.into_iter().enumerate() {
        let frame =
            format!("event: {kind}\ndata: {{\"type\":\"{kind}\",\"sequence_number\":{seq},{fields}}}\n\n");
        total += frame.len();
        let bytes = http_chunk(frame.as_bytes());
        // created + in_progress go out before the "thinking" time.
        if seq < 2 {
            head.extend_from_slice(&bytes);
        } else {
            rest.push(Chunk { bytes, pause_before });
        }
    }
    Stream {
        spec,
        head,
        rest,
        total_bytes: total,
        events: count,
    }
}

impl Server {
    fn stream(&self, spec: StreamSpec) -> Arc<Stream> {
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cache.len() > 64 {
            cache.clear();
        }
        cache
            .entry(spec)
            .or_insert_with(|| Arc::new(render(spec)))
            .clone()
    }

    fn defaults(&self) -> StreamSpec {
        match self.defaults.read() {
            Ok(d) => *d,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

// ------------------------------------------------------------------------------------------
// HTTP/1.1

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    close: bool,
    /// Only kept when recording is on (`POST /_mock/record?on=1`).
    body: Option<Vec<u8>>,
}

fn read_line(reader: &mut BufReader<TcpStream>, line: &mut Vec<u8>, budget: &mut usize) -> io::Result<usize> {
    line.clear();
    let n = reader.by_ref().take(*budget as u64).read_until(b'\n', line)?;
    *budget = budget.saturating_sub(n);
    if n > 0 && !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "header section too large",
        ));
    }
    Ok(n)
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads one request head and discards its body; `None` at a clean end of connection.
fn read_request(reader: &mut BufReader<TcpStream>, keep_body: bool) -> io::Result<Option<Request>> {
    let mut line = Vec::with_capacity(256);
    let mut budget = MAX_HEADER_BYTES;
    // Tolerate stray blank lines between requests.
    loop {
        if read_line(reader, &mut line, &mut budget)? == 0 {
            return Ok(None);
        }
        if !trim_crlf(&line).is_empty() {
            break;
        }
    }
    let request_line = String::from_utf8_lossy(trim_crlf(&line)).into_owned();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let version = parts.next().unwrap_or("HTTP/1.1").to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let mut headers = Vec::new();
    let mut content_length: u64 = 0;
    let mut chunked = false;
    let mut close = version == "HTTP/1.0";
    loop {
        if read_line(reader, &mut line, &mut budget)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in headers"));
        }
        let raw = trim_crlf(&line);
        if raw.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(raw);
        if let Some((name, value)) = text.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim().to_string();
            match name.as_str() {
                "content-length" => content_length = value.parse().unwrap_or(0),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "connection" => {
                    let v = value.to_ascii_lowercase();
                    if v.contains("close") {
                        close = true;
                    } else if v.contains("keep-alive") {
                        close = false;
                    }
                }
                _ => {}
            }
            headers.push((name, value));
        }
    }
    let mut kept: Option<Vec<u8>> = keep_body.then(Vec::new);
    if chunked {
        loop {
            let mut budget = MAX_HEADER_BYTES;
            if read_line(reader, &mut line, &mut budget)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "eof in chunked body",
                ));
            }
            let size_text = String::from_utf8_lossy(trim_crlf(&line)).into_owned();
            let size_hex = size_text.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_hex, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    if read_line(reader, &mut line, &mut budget)? == 0 || trim_crlf(&line).is_empty() {
                        break;
                    }
                }
                break;
            }
            match kept.as_mut() {
                Some(body) => {
                    reader.by_ref().take(size).read_to_end(body)?;
                    io::copy(&mut reader.by_ref().take(2), &mut io::sink())?;
                }
                None => {
                    io::copy(&mut reader.by_ref().take(size + 2), &mut io::sink())?;
                }
            }
        }
    } else if content_length > 0 {
        let copied = match kept.as_mut() {
            Some(body) => reader.by_ref().take(content_length).read_to_end(body)? as u64,
            None => io::copy(&mut reader.by_ref().take(content_length), &mut io::sink())?,
        };
        if copied < content_length {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in body"));
        }
    }
    Ok(Some(Request {
        method,
        path,
        query,
        headers,
        close,
        body: kept,
    }))
}

fn simple_response(
    out: &mut impl Write,
    status: &str,
    content_type: &str,
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{}\r\n",
        body.len(),
        if close { "connection: close\r\n" } else { "" }
    )?;
    out.write_all(body)?;
    out.flush()
}

fn spec_for(server: &Server, req: &Request) -> Result<StreamSpec, String> {
    let mut spec = server.defaults();
    for pair in req.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        spec.apply(k, v)?;
    }
    for (name, value) in &req.headers {
        if let Some(key) = name.strip_prefix("x-mock-") {
            spec.apply(&key.replace('-', "_"), value)?;
        }
    }
    Ok(spec)
}

fn send_stream(
    out: &mut BufWriter<TcpStream>,
    stream: &Stream,
    write_per_event: bool,
    close: bool,
) -> io::Result<()> {
    write!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n{}\r\n",
        if close { "connection: close\r\n" } else { "" }
    )?;
    out.write_all(&stream.head)?;
    let spec = stream.spec;
    let paced = spec.gap_ms > 0;
    if spec.ttft_ms > 0 || paced || write_per_event {
        out.flush()?;
    }
    if spec.ttft_ms > 0 {
        thread::sleep(Duration::from_millis(spec.ttft_ms));
    }
    for chunk in &stream.rest {
        if chunk.pause_before && paced {
            out.flush()?;
            thread::sleep(Duration::from_millis(spec.gap_ms));
        }
        out.write_all(&chunk.bytes)?;
        if write_per_event {
            out.flush()?;
        }
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

fn handle(server: &Server, socket: TcpStream) -> io::Result<()> {
    socket.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(16 * 1024, socket.try_clone()?);
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, socket);
    loop {
        let record = server.record.load(Ordering::Relaxed);
        let Some(req) = read_request(&mut reader, record)? else {
            break;
        };
        server.requests.fetch_add(1, Ordering::Relaxed);
        let close = req.close;
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", CODEX_PATH) => match spec_for(server, &req) {
                Ok(spec) => {
                    if let Some(body) = &req.body {
                        // JSON: {"path":…,"query":…,"headers":[[name,value]…],"body":<the body as a string>}
                        let mut doc = String::from("{\"path\":");
                        json_str(&mut doc, &req.path);
                        doc.push_str(",\"query\":");
                        json_str(&mut doc, &req.query);
                        doc.push_str(",\"headers\":[");
                        for (i, (name, value)) in req.headers.iter().enumerate() {
                            if i > 0 {
                                doc.push(',');
                            }
                            doc.push('[');
                            json_str(&mut doc, name);
                            doc.push(',');
                            json_str(&mut doc, value);
                            doc.push(']');
                        }
                        doc.push_str("],\"body\":");
                        json_str(&mut doc, &String::from_utf8_lossy(body));
                        doc.push('}');
                        match server.last_request.lock() {
                            Ok(mut last) => *last = doc.into_bytes(),
                            Err(poisoned) => *poisoned.into_inner() = doc.into_bytes(),
                        }
                    }
                    server.streams.fetch_add(1, Ordering::Relaxed);
                    let stream = server.stream(spec);
                    send_stream(&mut out, &stream, server.write_per_event, close)?;
                }
                Err(message) => {
                    let body = format!(
                        "{{\"error\":{{\"message\":{},\"type\":\"invalid_request_error\"}}}}",
                        quoted(&message)
                    );
                    simple_response(
                        &mut out,
                        "400 Bad Request",
                        "application/json",
                        body.as_bytes(),
                        close,
                    )?;
                }
            },
            ("GET" | "HEAD", "/api/tags") => {
                let body = b"{\"models\":[{\"name\":\"llama3.2:latest\",\"model\":\"llama3.2:latest\",\"modified_at\":\"2025-01-01T00:00:00Z\",\"size\":2019393189,\"digest\":\"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72\",\"details\":{\"format\":\"gguf\",\"family\":\"llama\",\"parameter_size\":\"3.2B\",\"quantization_level\":\"Q4_K_M\"}}]}";
                simple_response(&mut out, "200 OK", "application/json", body, close)?;
            }
            ("GET" | "HEAD", "/health") => simple_response(
                &mut out,
                "200 OK",
                "application/json",
                b"{\"status\":\"ok\"}",
                close,
            )?,
            ("GET", "/_mock/stats") => {
                let body = format!(
                    "{{\"requests\":{},\"streams\":{}}}",
                    server.requests.load(Ordering::Relaxed),
                    server.streams.load(Ordering::Relaxed)
                );
                simple_response(&mut out, "200 OK", "application/json", body.as_bytes(), close)?;
            }
            ("POST", "/_mock/record") => {
                let on = req.query.split('&').any(|p| p == "on=1");
                server.record.store(on, Ordering::Relaxed);
                simple_response(
                    &mut out,
                    "200 OK",
                    "application/json",
                    if on {
                        b"{\"record\":true}"
                    } else {
                        b"{\"record\":false}"
                    },
                    close,
                )?;
            }
            ("GET", "/_mock/last-request") => {
                let last = match server.last_request.lock() {
                    Ok(last) => last.clone(),
                    Err(poisoned) => poisoned.into_inner().clone(),
                };
                simple_response(&mut out, "200 OK", "application/json", &last, close)?;
            }
            ("POST" | "GET", "/_mock/config") => {
                let result = spec_for(server, &req);
                match result {
                    Ok(spec) => {
                        if req.method == "POST" {
                            match server.defaults.write() {
                                Ok(mut d) => *d = spec,
                                Err(poisoned) => *poisoned.into_inner() = spec,
                            }
                        }
                        let stream = server.stream(spec);
                        let body = format!(
                            "{{\"profile\":\"{:?}\",\"deltas\":{},\"ttft_ms\":{},\"gap_ms\":{},\"events\":{},\"sse_bytes\":{}}}",
                            spec.profile,
                            spec.deltas,
                            spec.ttft_ms,
                            spec.gap_ms,
                            stream.events,
                            stream.total_bytes
                        );
                        if server.verbose.load(Ordering::Relaxed) {
                            eprintln!("mock: config {body}");
                        }
                        simple_response(&mut out, "200 OK", "application/json", body.as_bytes(), close)?;
                    }
                    Err(message) => simple_response(
                        &mut out,
                        "400 Bad Request",
                        "text/plain",
                        message.as_bytes(),
                        close,
                    )?,
                }
            }
            _ => simple_response(
                &mut out,
                "404 Not Found",
                "application/json",
                b"{\"error\":\"not found\"}",
                close,
            )?,
        }
        if close {
            break;
        }
    }
    Ok(())
}

fn usage_text() -> &'static str {
    "usage: codex-bench-mock [--host 127.0.0.1] [--port 0] [--profile short|long|tools] \
[--deltas N] [--ttft-ms MS] [--gap-ms MS] [--write-per-event] [--verbose]\n\
prints `listening on HOST:PORT` once ready"
}

fn main() {
    let mut host = "127.0.0.1".to_string();
    let mut port: u16 = 0;
    let mut spec = StreamSpec {
        profile: Profile::Short,
        deltas: Profile::Short.default_deltas(),
        ttft_ms: 0,
        gap_ms: 0,
    };
    let mut write_per_event = false;
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| match args.next() {
            Some(v) => v,
            None => {
                eprintln!("{name} needs a value\n{}", usage_text());
                std::process::exit(2);
            }
        };
        let result = match arg.as_str() {
            "--host" => {
                host = value("--host");
                Ok(())
            }
            "--port" => value("--port")
                .parse()
                .map(|p| port = p)
                .map_err(|e| format!("--port: {e}")),
            "--profile" => spec.apply("profile", &value("--profile")),
            "--deltas" => spec.apply("deltas", &value("--deltas")),
            "--ttft-ms" => spec.apply("ttft_ms", &value("--ttft-ms")),
            "--gap-ms" => spec.apply("gap_ms", &value("--gap-ms")),
            "--write-per-event" => {
                write_per_event = true;
                Ok(())
            }
            "--verbose" => {
                verbose = true;
                Ok(())
            }
            "-h" | "--help" => {
                println!("{}", usage_text());
                return;
            }
            other => Err(format!("unknown argument {other}")),
        };
        if let Err(message) = result {
            eprintln!("{message}\n{}", usage_text());
            std::process::exit(2);
        }
    }
    let listener = match TcpListener::bind((host.as_str(), port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {host}:{port}: {e}");
            std::process::exit(1);
        }
    };
    let server = Arc::new(Server {
        defaults: RwLock::new(spec),
        cache: Mutex::new(HashMap::new()),
        write_per_event,
        requests: AtomicU64::new(0),
        streams: AtomicU64::new(0),
        verbose: AtomicBool::new(verbose),
        record: AtomicBool::new(false),
        last_request: Mutex::new(b"{}".to_vec()),
    });
    server.stream(spec);
    match listener.local_addr() {
        Ok(addr) => println!("listening on {addr}"),
        Err(e) => {
            eprintln!("no local address: {e}");
            std::process::exit(1);
        }
    }
    let _ = io::stdout().flush();
    for socket in listener.incoming() {
        let socket = match socket {
            Ok(s) => s,
            Err(e) => {
                if verbose {
                    eprintln!("mock: accept failed: {e}");
                }
                continue;
            }
        };
        let server = server.clone();
        let spawned = thread::Builder::new().stack_size(256 * 1024).spawn(move || {
            if let Err(e) = handle(&server, socket)
                && server.verbose.load(Ordering::Relaxed)
                && e.kind() != io::ErrorKind::UnexpectedEof
            {
                eprintln!("mock: connection ended: {e}");
            }
        });
        if let Err(e) = spawned {
            eprintln!("mock: cannot spawn a connection thread: {e}");
        }
    }
}
