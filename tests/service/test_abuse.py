"""The service under load and abuse: many clients, slow-loris bodies, malformed requests, escape attempts."""

import builtins
import os
import threading
from urllib.parse import urlparse

import pytest

from rl_select import load_selector
from rl_select.bench.service import (
    healthy,
    malformed_bodies,
    malformed_load,
    send_raw,
    slow_loris,
    timed_load,
)
from rl_select.service import create_app
from tests.service.conftest import parity_queries, serve_in_thread

BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def port(query_policy):
    app = create_app(load_selector(query_policy[1]), body_timeout=BODY_TIMEOUT)
    with serve_in_thread(app) as base:
        yield urlparse(base).port


def test_many_clients_get_no_errors(port):
    result = timed_load(port, parity_queries(), clients=16, seconds=2.0)
    assert result.requests > 16 and result.errors == 0 and result.p99_ms > 0


def test_slow_loris_bodies_are_cut_off_and_the_service_keeps_answering(port):
    outcome = []
    attack = threading.Thread(target=lambda: outcome.append(slow_loris(port, 20, hold=BODY_TIMEOUT + 4)))
    attack.start()
    during = timed_load(port, parity_queries(), clients=4, seconds=1.0)
    attack.join()
    assert during.errors == 0 and during.requests > 0
    (loris,) = outcome
    assert loris.answered_408 == 20 and loris.closed_by_server == 20 and loris.still_open == 0
    assert healthy(port)


def test_malformed_requests_get_4xx_and_leave_it_answering(port):
    result = malformed_load(port, 3 * len(malformed_bodies()))
    assert result.failures == 0, result.statuses
    assert healthy(port)


def test_no_request_field_opens_a_file(port, monkeypatch):
    opened = []
    real_open, real_os_open = builtins.open, os.open

    def record_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def record_os_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", record_open)
    monkeypatch.setattr(os, "open", record_os_open)
    hostile = [payload for name, payload in malformed_bodies() if "traversal" in name or "file" in name]
    statuses = [send_raw(port, payload) for payload in hostile]
    assert healthy(port)
    monkeypatch.undo()
    assert opened == [], f"requests opened files: {opened}"
    # a traversal-looking query is just text to choose demonstrations for; every other attempt is refused
    assert statuses.count(200) == 1 and all(400 <= s < 500 for s in statuses if s != 200)
