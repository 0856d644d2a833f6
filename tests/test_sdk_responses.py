"""The README's `client.responses` set-up with the official Python SDK: `responses.create`
with a string `input`, and the `responses.stream` helper."""

from __future__ import annotations

from harness import sse
from harness.mock_codex import CODEX_PATH, Script


def test_readme_responses_create_returns_output_text(openai_client, mock_codex):
    mock_codex.enqueue(Script.events(sse.text_events(["Hello", " there"], usage=sse.usage(9, 2), model="gpt-5.5")))

    response = openai_client.responses.create(model="gpt-5.5", input="Hello")

    assert response.output_text == "Hello there"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 2)
    [seen] = [r for r in mock_codex.requests if r.path == CODEX_PATH]
    assert (seen.json["store"], seen.json["stream"]) == (False, True)
    assert "Hello" in str(seen.json["input"])


def test_readme_responses_stream_yields_text_deltas(openai_client, mock_codex):
    mock_codex.enqueue(Script.events(sse.text_events(["Hel", "lo", " there"], usage=sse.usage(9, 3), model="gpt-5.5")))

    with openai_client.responses.stream(model="gpt-5.5", input="Hello") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert deltas == ["Hel", "lo", " there"]
    assert final.status == "completed"
    assert final.usage.output_tokens == 3
