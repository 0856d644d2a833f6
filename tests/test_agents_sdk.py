"""The OpenAI Agents SDK (PyPI `openai-agents`) with its default Responses model pointed at
the wrapper: an agent calls one function tool, gets the result back to the model and answers.

The set-up is the README's: `OpenAIResponsesModel` over an `AsyncOpenAI(base_url=…/v1,
api_key=<client key>)`, tracing disabled (traces would go to OpenAI with that key).
"""

from __future__ import annotations

import asyncio
import json
from typing import List, Tuple

from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI
from openai.types.responses import ResponseTextDeltaEvent

from conftest import TEST_API_KEY
from harness import sse, tokens
from harness.mock_codex import CODEX_PATH, RecordedRequest, Script

MODEL = "gpt-5.5"
INSTRUCTIONS = "You answer weather questions with the get_weather tool."
QUESTION = "What is the weather in Paris?"
ANSWER = "It is sunny in Paris, 21 °C."
TOOL_RESULT = "sunny, 21 C"


def function_call_events(call_id: str, name: str, arguments: str) -> List[dict]:
    return [
        sse.created(model=MODEL),
        sse.in_progress(model=MODEL),
        sse.item_added_function_call(call_id, name),
        sse.args_delta("fc_1", 0, arguments[:5]),
        sse.args_delta("fc_1", 0, arguments[5:]),
        sse.args_done("fc_1", 0, arguments),
        sse.item_done_function_call(call_id, name, arguments),
        sse.completed(usage=sse.usage(40, 12), model=MODEL),
    ]


def weather_agent(envoy, calls: List[str]) -> Tuple[Agent, AsyncOpenAI]:
    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        calls.append(city)
        return TOOL_RESULT

    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=envoy.url + "/v1", api_key=TEST_API_KEY, max_retries=0, timeout=20)
    agent = Agent(
        name="weather",
        instructions=INSTRUCTIONS,
        tools=[get_weather],
        model=OpenAIResponsesModel(model=MODEL, openai_client=client),
    )
    return agent, client


def enqueue_tool_round_trip(mock_codex) -> None:
    mock_codex.enqueue(
        Script.events(function_call_events("call_weather_1", "get_weather", '{"city":"Paris"}')),
        Script.events(sse.text_events(["It is sunny", " in Paris, 21 °C."], usage=sse.usage(60, 9), model=MODEL, id="resp_2")),
    )


def assert_upstream_round_trip(mock_codex, auth_json: str) -> None:
    requests_seen: List[RecordedRequest] = [r for r in mock_codex.requests if r.path == CODEX_PATH]
    assert len(requests_seen) == 2, [r.path for r in mock_codex.requests]
    access_token = json.loads(auth_json)["tokens"]["access_token"]
    for seen in requests_seen:
        assert seen.header("authorization") == "Bearer " + access_token
        assert seen.header("chatgpt-account-id") == tokens.DEFAULT_ACCOUNT_ID
        assert TEST_API_KEY not in json.dumps(seen.headers)
        body = seen.json
        assert (body["model"], body["store"], body["stream"]) == (MODEL, False, True)
        assert "reasoning.encrypted_content" in body["include"]
        assert body["instructions"] == INSTRUCTIONS
        assert [(t["type"], t["name"]) for t in body["tools"]] == [("function", "get_weather")]
        assert body["tools"][0]["parameters"]["required"] == ["city"]
    first, second = (r.json["input"] for r in requests_seen)
    assert json.dumps(first).count(QUESTION) == 1
    assert not [item for item in first if item.get("type") in ("function_call", "function_call_output")]
    calls = [item for item in second if item.get("type") == "function_call"]
    outputs = [item for item in second if item.get("type") == "function_call_output"]
    assert [(c["call_id"], c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("call_weather_1", "get_weather", {"city": "Paris"})
    ]
    assert [(o["call_id"], o["output"]) for o in outputs] == [("call_weather_1", TOOL_RESULT)]
    assert json.dumps(second).count(QUESTION) == 1


def test_agent_run_calls_a_tool_and_answers(envoy, mock_codex, auth_json):
    enqueue_tool_round_trip(mock_codex)
    calls: List[str] = []
    agent, client = weather_agent(envoy, calls)

    async def run():
        try:
            return await Runner.run(agent, QUESTION)
        finally:
            await client.close()

    result = asyncio.run(run())

    assert result.final_output == ANSWER
    assert calls == ["Paris"]
    assert_upstream_round_trip(mock_codex, auth_json)
    assert [r.usage.input_tokens for r in result.raw_responses] == [40, 60]


def test_streamed_agent_run_calls_a_tool_and_streams_the_answer(envoy, mock_codex, auth_json):
    enqueue_tool_round_trip(mock_codex)
    calls: List[str] = []
    agent, client = weather_agent(envoy, calls)

    async def run():
        try:
            streamed = Runner.run_streamed(agent, QUESTION)
            deltas = [
                event.data.delta
                async for event in streamed.stream_events()
                if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent)
            ]
            return streamed, deltas
        finally:
            await client.close()

    streamed, deltas = asyncio.run(run())

    assert deltas == ["It is sunny", " in Paris, 21 °C."]
    assert streamed.final_output == ANSWER
    assert calls == ["Paris"]
    assert_upstream_round_trip(mock_codex, auth_json)
