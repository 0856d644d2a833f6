"""Self-test of the SSE and token builders the end-to-end tests rely on."""

from __future__ import annotations

import json
import time

from harness import sse, tokens


def parse_stream(data: bytes) -> list:
    """(event name, JSON) pairs of a well-formed stream."""
    records = []
    for record in data.decode("utf-8").split("\n\n"):
        if not record:
            continue
        event_line, data_line = record.split("\n")
        records.append((event_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))))
    return records


def test_sse_frames_events_and_numbers_them_in_order() -> None:
    data = sse.sse([sse.created("resp_1", "gpt-5"), sse.text_delta("héllo 🌍"), sse.completed("resp_1")])
    assert data.endswith(b"\n\n")
    records = parse_stream(data)
    assert [name for name, _ in records] == ["response.created", "response.output_text.delta", "response.completed"]
    assert [event["sequence_number"] for _, event in records] == [0, 1, 2]
    assert all(name == event["type"] for name, event in records)
    assert records[1][1]["delta"] == "héllo 🌍"


def test_text_stream_is_realistic() -> None:
    records = parse_stream(sse.text_stream(["Hel", "lo"], usage=sse.usage(3, 2)))
    deltas = [event["delta"] for name, event in records if name == "response.output_text.delta"]
    assert deltas == ["Hel", "lo"]
    done = [event for name, event in records if name == "response.output_item.done"]
    assert done[0]["item"]["content"][0]["text"] == "Hello"
    assert records[-1][1]["response"]["usage"]["total_tokens"] == 5


def test_error_event_forms() -> None:
    assert sse.error_event("c", "m")["error"]["code"] == "c"
    flat = sse.error_event("c", "m", nested=False)
    assert flat["code"] == "c" and "error" not in flat


def test_split_covers_the_data_exactly() -> None:
    data = bytes(range(10))
    assert sse.split(data, [3, 3]) == [data[:3], data[3:6], data[6:]]
    assert sse.split(data, [4, 20, 5]) == [data[:4], data[4:]]
    assert sse.split(data, 4) == [data[:4], data[4:8], data[8:]]
    assert b"".join(sse.split(data, 1)) == data


def test_function_call_builders() -> None:
    events = [
        sse.item_added_function_call("call_1", "get_weather", "fc_1", 0),
        sse.args_delta("fc_1", 0, '{"city":'),
        sse.args_done("fc_1", 0, '{"city":"Paris"}'),
        sse.item_done_function_call("call_1", "get_weather", '{"city":"Paris"}', "fc_1", 0),
    ]
    assert events[0]["item"]["call_id"] == "call_1" and events[0]["item"]["name"] == "get_weather"
    assert events[3]["item"]["arguments"] == '{"city":"Paris"}'


def test_jwt_shape_and_claims() -> None:
    token = tokens.access_token(account_id="acct_9", expires_in=60)
    header, payload, signature = token.split(".")
    assert "=" not in token and signature
    claims = tokens.decode_jwt_claims(token)
    assert claims[tokens.AUTH_CLAIM] == {"chatgpt_account_id": "acct_9", "chatgpt_plan_type": "plus"}
    assert abs(claims["exp"] - (time.time() + 60)) < 5


def test_auth_document() -> None:
    document = json.loads(tokens.auth_json())
    assert document["tokens"]["refresh_token"] == "rt_test_1"
    assert document["tokens"]["account_id"] == tokens.DEFAULT_ACCOUNT_ID
    assert tokens.decode_jwt_claims(document["tokens"]["id_token"])[tokens.AUTH_CLAIM]["chatgpt_account_id"] == (
        tokens.DEFAULT_ACCOUNT_ID
    )
    exp = tokens.decode_jwt_claims(document["tokens"]["access_token"])["exp"]
    assert exp > time.time() + 9 * 24 * 3600
    assert "account_id" not in tokens.auth_document(include_account_id=False)["tokens"]
    assert tokens.decode_jwt_claims(tokens.auth_document(exp=123)["tokens"]["access_token"])["exp"] == 123


def test_every_fixture_file_is_listed() -> None:
    assert sorted(sse.FIXTURES) == sorted(path.stem for path in sse.FIXTURES_DIR.glob("*.sse"))


def test_fixtures_are_framed_as_the_backend_frames() -> None:
    for name in sse.FIXTURES:
        records = sse.fixture_records(name)
        assert b"".join(records) == sse.fixture(name)
        complete = [r for r in records if r.endswith(b"\n\n")]
        # Only `dropped` ends inside an event, as a connection that died would.
        assert len(complete) == len(records) - (name == "dropped"), name
        for seq, (kind, event) in enumerate(parse_stream(b"".join(complete))):
            assert list(event)[:2] == ["type", "sequence_number"], (name, event)
            assert (event["type"], event["sequence_number"]) == (kind, seq), name
        assert b"[DONE]" not in sse.fixture(name)
    assert [e["type"] for e in sse.fixture_events("usage_limit")][-1] == "error"


def _shape(event: dict) -> dict:
    """Top-level keys, and the keys of the nested objects the filter reads."""
    return {key: sorted(value) if isinstance(value, dict) else None for key, value in event.items()}


def test_builders_make_the_shapes_of_the_fixtures() -> None:
    recorded = {}
    for name in sse.FIXTURES:
        for event in sse.fixture_events(name):
            recorded.setdefault((event["type"], event.get("item", {}).get("type")), _shape(event))
    built = sse._numbered(
        [
            *sse.text_events(["a"], usage=sse.usage()),
            sse.item_added_reasoning(),
            sse.reasoning_part_added(),
            sse.reasoning_delta("r"),
            sse.reasoning_done("r"),
            sse.item_done_reasoning(["r"]),
            sse.item_added_function_call("call_1", "f"),
            sse.args_delta("fc_1", 0, "{}"),
            sse.args_done("fc_1", 0, "{}"),
            sse.item_done_function_call("call_1", "f", "{}"),
            sse.incomplete(usage=sse.usage()),
            sse.failed("server_is_overloaded", "busy"),
        ]
    )
    compared = 0
    for event in built:
        key = (event["type"], event.get("item", {}).get("type"))
        if key in recorded:
            expected = dict(recorded[key])
            # The backend's padding against length analysis; nothing reads it.
            expected.pop("obfuscation", None)
            assert _shape(event) == expected, key
            compared += 1
    assert compared >= 15
