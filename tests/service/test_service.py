"""The selection service on a real uvicorn server on a loopback port."""

import httpx
import pytest

from rl_select import load_selector
from rl_select.service import create_app
from tests.service.conftest import serve_in_thread


@pytest.fixture(scope="module")
def server(query_policy):
    selector = load_selector(query_policy[1])
    with serve_in_thread(create_app(selector, max_body_bytes=4096)) as base:
        yield base, selector


def test_round_trip_select(server):
    base, selector = server
    response = httpx.post(f"{base}/v1/select", json={"query": "a warm and clever debut", "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["mode"] == "query" and body["k"] == 3
    assert [d["id"] for d in body["demonstrations"]] == [d.id for d in selector.select("a warm and clever debut", 3)]
    assert body["prompt"].endswith("Review: a warm and clever debut\nSentiment:")
    assert httpx.post(f"{base}/v1/select", json={"query": "fine"}).json()["k"] == selector.k
    timing = response.headers["server-timing"]
    assert timing.startswith("select;dur=") and float(timing.split("dur=")[1]) > 0


def test_health_policy_and_openapi(server):
    base, selector = server
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok", "mode": "query", "pool_size": len(selector.pool)}
    policy = httpx.get(f"{base}/v1/policy").json()
    assert policy["algo"] == "ppo" and policy["k"] == 3 and policy["labels"] == ["negative", "positive"]
    schema = httpx.get(f"{base}/openapi.json").json()
    assert "/v1/select" in schema["paths"]


BAD_REQUESTS = {
    "not json": ({"content": b"query=hello", "headers": {"content-type": "application/json"}}, 422),
    "json array": ({"json": ["hello"]}, 422),
    "json null": ({"content": b"null", "headers": {"content-type": "application/json"}}, 422),
    "unknown field": ({"json": {"query": "x", "top_k": 3}}, 422),
    "query not a string": ({"json": {"query": 42}}, 422),
    "k zero": ({"json": {"query": "x", "k": 0}}, 422),
    "k negative": ({"json": {"query": "x", "k": -3}}, 422),
    "k as string": ({"json": {"query": "x", "k": "3"}}, 422),
    "k as float": ({"json": {"query": "x", "k": 2.5}}, 422),
    "k above candidates": ({"json": {"query": "x", "k": 9}}, 422),
    "missing query": ({"json": {"k": 2}}, 422),
    "empty query": ({"json": {"query": "   "}}, 422),
    "query too long": ({"json": {"query": "x" * 20_001}}, 413),
    "body over cap": (
        {"content": b'{"query": "' + b"y" * 5000 + b'"}', "headers": {"content-type": "application/json"}},
        413,
    ),
    "empty body": ({"content": b"", "headers": {"content-type": "application/json"}}, 422),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_4xx_json(server, case):
    base, _ = server
    kwargs, status = BAD_REQUESTS[case]
    response = httpx.post(f"{base}/v1/select", **kwargs)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and "\n" not in response.json()["error"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content": b"query=hello", "headers": {"content-type": "application/json"}}, "the body is not valid JSON"),
        ({"json": ["hello"]}, "the body must be a JSON object"),
        ({"json": {"query": "x", "top_k": 3}}, "unknown field 'top_k'"),
        ({"json": {"query": 42}}, "query: Input should be a valid string"),
    ],
)
def test_bad_requests_say_what_is_wrong_in_words(server, kwargs, message):
    base, _ = server
    assert httpx.post(f"{base}/v1/select", **kwargs).json()["error"].startswith(message)


def test_wrong_method_and_path(server):
    base, _ = server
    assert httpx.get(f"{base}/v1/select").status_code == 405
    missing = httpx.get(f"{base}/v2/select")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}


def test_serve_refuses_a_bad_artifact(tmp_path, capsys):
    from tests.helpers import run_cli

    code, _, err = run_cli(["serve", str(tmp_path)], capsys)
    assert code == 2 and "not an exported policy" in err
