"""Codex Responses SSE streams: the recorded fixtures and builders for one-off streams.

`fixture(name)` is one of the canonical upstream bodies in tests/fixtures/streams/ (the
core's unit tests, the fuzz corpus and the benchmark play the same files). Event builders
return plain dicts in the fixtures' shapes; `sse()` frames them and fills in
`sequence_number` in stream order, so tests only spell out what they care about.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

DEFAULT_RESPONSE_ID = "resp_test_1"
DEFAULT_MODEL = "gpt-5"
DEFAULT_CREATED_AT = 1766361600
DEFAULT_MESSAGE_ID = "msg_1"
DEFAULT_REASONING_ID = "rs_1"

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "streams"
FIXTURES = ("text", "reasoning", "parallel_tools", "incomplete", "failed", "usage_limit", "policy_refusal", "policy_error", "dropped")


# --------------------------------------------------------------------------------------
# Recorded streams


def fixture(name: str) -> bytes:
    """A canonical upstream body, byte for byte (tests/fixtures/README.md lists them)."""
    if name not in FIXTURES:
        raise ValueError(f"no fixture {name!r}; known: {', '.join(FIXTURES)}")
    return (FIXTURES_DIR / f"{name}.sse").read_bytes()


def fixture_records(name: str) -> List[bytes]:
    """The fixture cut after each SSE record (one HTTP chunk per event, as the backend
    writes); a record the connection cut short is the last element."""
    data = fixture(name)
    records, start = [], 0
    while (end := data.find(b"\n\n", start)) != -1:
        records.append(data[start : end + 2])
        start = end + 2
    if start < len(data):
        records.append(data[start:])
    return records


def fixture_events(name: str) -> List[dict]:
    """The JSON events of a fixture's complete records."""
    events = []
    for record in fixture_records(name):
        if record.endswith(b"\n\n"):
            data = [line for line in record.decode("utf-8").split("\n") if line.startswith("data: ")]
            events.extend(json.loads(line[len("data: ") :]) for line in data)
    return events


# --------------------------------------------------------------------------------------
# Framing


def _compact(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _numbered(events: Iterable[dict]) -> List[dict]:
    numbered = []
    for seq, event in enumerate(events):
        event = dict(event)
        event.setdefault("sequence_number", seq)
        numbered.append(event)
    return numbered


def frame(event: dict) -> bytes:
    """One SSE record: `event: <type>`, `data: <compact json>`, blank line."""
    return f"event: {event['type']}\ndata: {_compact(event)}\n\n".encode("utf-8")


def sse_frames(events: Iterable[dict]) -> List[bytes]:
    """One byte string per event (use as a Script body to send one event per HTTP chunk)."""
    return [frame(event) for event in _numbered(events)]


def sse(events: Iterable[dict]) -> bytes:
    """The whole stream as one byte string."""
    return b"".join(sse_frames(events))


def split(data: bytes, sizes: Union[int, Sequence[int]]) -> List[bytes]:
    """Cut `data` into chunks of the given sizes (an int = fixed size); the rest is one last chunk.

    Used to split SSE records (and multi-byte UTF-8 characters) across TCP writes.
    """
    if isinstance(sizes, int):
        if sizes <= 0:
            raise ValueError("chunk size must be positive")
        return [data[i : i + sizes] for i in range(0, len(data), sizes)]
    chunks, offset = [], 0
    for size in sizes:
        if offset >= len(data):
            break
        chunks.append(data[offset : offset + size])
        offset += size
    if offset < len(data):
        chunks.append(data[offset:])
    return chunks


# --------------------------------------------------------------------------------------
# Response lifecycle


def usage(input_tokens: int = 12, output_tokens: int = 5, cached_tokens: int = 0, reasoning_tokens: int = 0) -> dict:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def _response(id: str, model: str, status: str, **fields) -> dict:
    body = {
        "id": id,
        "object": "response",
        "created_at": DEFAULT_CREATED_AT,
        "status": status,
        "model": model,
        "output": [],
    }
    body.update(fields)
    return body


def created(id: str = DEFAULT_RESPONSE_ID, model: str = DEFAULT_MODEL) -> dict:
    return {"type": "response.created", "response": _response(id, model, "in_progress", usage=None)}


def in_progress(id: str = DEFAULT_RESPONSE_ID, model: str = DEFAULT_MODEL) -> dict:
    return {"type": "response.in_progress", "response": _response(id, model, "in_progress", usage=None)}


def completed(
    id: str = DEFAULT_RESPONSE_ID,
    usage: Optional[dict] = None,
    model: str = DEFAULT_MODEL,
    output: Optional[list] = None,
) -> dict:
    """`output` defaults to empty, as the real backend often sends it."""
    return {
        "type": "response.completed",
        "response": _response(id, model, "completed", output=output or [], usage=usage),
    }


def incomplete(
    reason: str = "max_output_tokens", usage: Optional[dict] = None, id: str = DEFAULT_RESPONSE_ID, model: str = DEFAULT_MODEL
) -> dict:
    return {
        "type": "response.incomplete",
        "response": _response(id, model, "incomplete", incomplete_details={"reason": reason}, usage=usage),
    }


def failed(code: str, message: str, id: str = DEFAULT_RESPONSE_ID, model: str = DEFAULT_MODEL) -> dict:
    return {
        "type": "response.failed",
        "response": _response(id, model, "failed", error={"code": code, "message": message}, usage=None),
    }


def error_event(
    code: str = "server_is_overloaded",
    message: str = "Our servers are currently overloaded. Please try again later.",
    type: str = "service_unavailable_error",
    nested: bool = True,
) -> dict:
    """An `error` event, nested (`error{…}`) or with top-level `code`/`message`."""
    if nested:
        return {"type": "error", "error": {"type": type, "code": code, "message": message, "param": None}}
    return {"type": "error", "code": code, "message": message}


# --------------------------------------------------------------------------------------
# Message items


def item_added_message(item_id: str = DEFAULT_MESSAGE_ID, output_index: int = 0) -> dict:
    return {
        "type": "response.output_item.added",
        "output_index": output_index,
        "item": {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []},
    }


def content_part_added(item_id: str = DEFAULT_MESSAGE_ID, output_index: int = 0, content_index: int = 0) -> dict:
    return {
        "type": "response.content_part.added",
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "part": {"type": "output_text", "annotations": [], "text": ""},
    }


def text_delta(text: str, item_id: str = DEFAULT_MESSAGE_ID, output_index: int = 0, content_index: int = 0) -> dict:
    return {
        "type": "response.output_text.delta",
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "delta": text,
        "logprobs": [],
    }


def text_done(text: str, item_id: str = DEFAULT_MESSAGE_ID, output_index: int = 0, content_index: int = 0) -> dict:
    return {
        "type": "response.output_text.done",
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "text": text,
    }


def item_done_message(text: str, item_id: str = DEFAULT_MESSAGE_ID, output_index: int = 0) -> dict:
    return {
        "type": "response.output_item.done",
        "output_index": output_index,
        "item": {
            "id": item_id,
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "annotations": [], "text": text}],
        },
    }


# --------------------------------------------------------------------------------------
# Reasoning items


def item_added_reasoning(item_id: str = DEFAULT_REASONING_ID, output_index: int = 0) -> dict:
    return {
        "type": "response.output_item.added",
        "output_index": output_index,
        "item": {"id": item_id, "type": "reasoning", "summary": []},
    }


def reasoning_part_added(item_id: str = DEFAULT_REASONING_ID, output_index: int = 0, summary_index: int = 0) -> dict:
    return {
        "type": "response.reasoning_summary_part.added",
        "item_id": item_id,
        "output_index": output_index,
        "summary_index": summary_index,
        "part": {"type": "summary_text", "text": ""},
    }


def reasoning_delta(
    text: str, item_id: str = DEFAULT_REASONING_ID, output_index: int = 0, summary_index: int = 0
) -> dict:
    return {
        "type": "response.reasoning_summary_text.delta",
        "item_id": item_id,
        "output_index": output_index,
        "summary_index": summary_index,
        "delta": text,
    }


def reasoning_done(text: str, item_id: str = DEFAULT_REASONING_ID, output_index: int = 0, summary_index: int = 0) -> dict:
    return {
        "type": "response.reasoning_summary_text.done",
        "item_id": item_id,
        "output_index": output_index,
        "summary_index": summary_index,
        "text": text,
    }


def reasoning_text_delta(
    text: str, item_id: str = DEFAULT_REASONING_ID, output_index: int = 0, content_index: int = 0
) -> dict:
    """Raw reasoning text (rare for GPT models), as opposed to the summary."""
    return {
        "type": "response.reasoning_text.delta",
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "delta": text,
    }


def item_done_reasoning(summaries: Sequence[str], item_id: str = DEFAULT_REASONING_ID, output_index: int = 0) -> dict:
    return {
        "type": "response.output_item.done",
        "output_index": output_index,
        "item": {
            "id": item_id,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text} for text in summaries],
            "encrypted_content": "gAAAAB-test",
        },
    }


# --------------------------------------------------------------------------------------
# Function calls


def item_added_function_call(call_id: str, name: str, item_id: str = "fc_1", output_index: int = 0) -> dict:
    return {
        "type": "response.output_item.added",
        "output_index": output_index,
        "item": {
            "id": item_id,
            "type": "function_call",
            "status": "in_progress",
            "call_id": call_id,
            "name": name,
            "arguments": "",
        },
    }


def args_delta(item_id: str, output_index: int, delta: str) -> dict:
    return {
        "type": "response.function_call_arguments.delta",
        "item_id": item_id,
        "output_index": output_index,
        "delta": delta,
    }


def args_done(item_id: str, output_index: int, arguments: str) -> dict:
    return {
        "type": "response.function_call_arguments.done",
        "item_id": item_id,
        "output_index": output_index,
        "arguments": arguments,
    }


def item_done_function_call(call_id: str, name: str, arguments: str, item_id: str = "fc_1", output_index: int = 0) -> dict:
    return {
        "type": "response.output_item.done",
        "output_index": output_index,
        "item": {
            "id": item_id,
            "type": "function_call",
            "status": "completed",
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
        },
    }


# --------------------------------------------------------------------------------------
# Whole streams


def text_events(
    deltas: Sequence[str],
    usage: Optional[dict] = None,
    id: str = DEFAULT_RESPONSE_ID,
    model: str = DEFAULT_MODEL,
    item_id: str = DEFAULT_MESSAGE_ID,
) -> List[dict]:
    """The events of a realistic plain-text answer, ending in response.completed."""
    text = "".join(deltas)
    return [
        created(id, model),
        in_progress(id, model),
        item_added_message(item_id),
        content_part_added(item_id),
        *(text_delta(delta, item_id) for delta in deltas),
        text_done(text, item_id),
        item_done_message(text, item_id),
        completed(id, usage=usage, model=model),
    ]


def text_stream(deltas: Sequence[str], usage: Optional[dict] = None, **kwargs) -> bytes:
    """A whole plain-text stream as bytes (see `text_events`)."""
    return sse(text_events(deltas, usage=usage, **kwargs))
