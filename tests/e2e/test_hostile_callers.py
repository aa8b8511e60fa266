"""Hostile callers through the real service: one request never hurts other flows or the service.

Each test runs a victim flow beside the hostile request and checks that the victim completes
with all its events and `/health` keeps answering. Owners are tested on a second deployment of
the same app, started with per-caller keys (`API_KEYS`).
"""

import asyncio
import json
import os
import socket
import threading
import time
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.test_e2e import post, seed_flow
from tests.malformed_bodies import malformed_bodies

pytestmark = pytest.mark.ray

KEYS = {"alice": "alice-key-" + "a" * 20, "bob": "bob-key-" + "b" * 20}


def assert_victim_completes(service, backend2):
    body = seed_flow(backend2)
    assert post(service, body).status_code == 200
    events = backend2.wait_for_completion(f"ws/{body['flow_id']}", timeout=60)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["data"]["status"] == "completed"


def test_a_chunked_body_is_cut_off_at_the_size_limit(service, backend2):
    sent = 0

    def endless():
        nonlocal sent
        chunk = b" " * (1 << 20)
        for _ in range(2000):  # 2 GB if nobody stops it
            sent += len(chunk)
            yield chunk

    try:
        response = httpx.post(f"{service}/execute", content=endless(), timeout=60)
        assert response.status_code == 413, response.text
    except httpx.TransportError:  # the server closed the connection after answering 413
        pass
    # The replica stops at the limit; Serve's proxy buffers what arrives until the 413 has gone
    # out (tens of MB here), then the connection closes: far from the whole body.
    assert sent < 500 * (1 << 20), f"the service read {sent >> 20} MB before refusing"
    assert httpx.get(f"{service}/health", timeout=10).status_code == 200
    assert_victim_completes(service, backend2)


def test_a_body_that_arrives_too_slowly_is_refused(service):
    def trickle():
        yield b'{"flow_id": '
        time.sleep(8)  # REQUEST_BODY_TIMEOUT_SECONDS is 3 in the test service
        yield b'"x"}'

    t0 = time.monotonic()
    try:
        response = httpx.post(f"{service}/execute", content=trickle(), timeout=30)
        assert response.status_code == 408, response.text
    except httpx.TransportError:
        pass
    assert time.monotonic() - t0 < 20


async def test_large_bodies_are_validated_off_the_event_loop(service, backend2):
    big = json.dumps(seed_flow(backend2, initial_inputs={"blob": "x" * 4_000_000})).encode()
    latencies = []

    async def poll_health(http, stop):
        while not stop.is_set():
            t0 = time.monotonic()
            assert (await http.get("/health")).status_code == 200
            latencies.append(time.monotonic() - t0)
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=service, timeout=60) as http:
        stop = asyncio.Event()
        poller = asyncio.create_task(poll_health(http, stop))
        answers = await asyncio.gather(
            *(http.post("/validate", content=big, headers={"content-type": "application/json"}) for _ in range(8))
        )
        stop.set()
        await poller
    assert all(a.status_code == 200 for a in answers), [a.text[:200] for a in answers]
    # Inline, eight such validations held /health for seconds; off the loop it answers between them.
    assert latencies and max(latencies) < 3.0, latencies


@pytest.fixture(scope="module")
def owned_service(service):
    """The same app, second deployment, with a key per caller."""
    from ray import serve

    import serve_app

    env = serve_app.INGRESS_ENV | {"API_KEYS": ",".join(f"{name}:{key}" for name, key in KEYS.items())}
    app = serve_app.FlowExecutorIngress.options(ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": env}})
    serve.run(app.bind(), name="owned", route_prefix="/owned")
    yield f"{service}/owned"
    serve.delete("owned")


def as_caller(name):
    return {"authorization": f"Bearer {KEYS[name]}"}


def test_flows_belong_to_the_caller_that_started_them(owned_service, backend2):
    body = seed_flow(backend2)
    flow_id = body["flow_id"]
    assert httpx.post(f"{owned_service}/execute", json=body, timeout=30).status_code == 401
    assert httpx.post(f"{owned_service}/execute", json=body, headers=as_caller("alice"), timeout=30).status_code == 200
    backend2.wait_for_completion(f"ws/{flow_id}")
    for path in (f"/flows/{flow_id}", f"/flows/{flow_id}/events", f"/flows/{flow_id}/stream"):
        assert httpx.get(owned_service + path, headers=as_caller("alice")).status_code == 200
        assert httpx.get(owned_service + path, headers=as_caller("bob")).status_code == 404
        assert httpx.get(owned_service + path).status_code == 401
    assert httpx.post(f"{owned_service}/flows/{flow_id}/cancel", headers=as_caller("bob")).status_code == 404
    resume = {"element_id": "x", "inputs": {}}
    rerun = {"flow_id": f"{flow_id}-again", "backend2_ws_url": backend2.url("ws/again"), "from_element": "start-1"}
    for path, request in ((f"/flows/{flow_id}/resume", resume), (f"/flows/{flow_id}/rerun", rerun)):
        assert httpx.post(owned_service + path, json=request, timeout=30).status_code == 401
        assert httpx.post(owned_service + path, json=request, headers=as_caller("bob"), timeout=30).status_code == 404
    mine = httpx.post(f"{owned_service}/flows/{flow_id}/rerun", json=rerun, headers=as_caller("alice"), timeout=30)
    assert mine.status_code == 200, mine.text
    assert backend2.wait_for_completion("ws/again")[-1]["data"]["status"] == "completed"
    again = httpx.post(f"{owned_service}/execute", json=body, headers=as_caller("bob"), timeout=30)
    assert again.status_code == 409  # bob cannot replace alice's retained log
    events = httpx.get(f"{owned_service}/flows/{flow_id}/events", headers=as_caller("alice")).json()["events"]
    assert events[-1]["data"]["status"] == "completed" and len({e["seq"] for e in events}) == len(events)


def test_every_key_opens_health_only_with_a_valid_token(owned_service):
    assert httpx.get(f"{owned_service}/health").status_code == 200
    assert httpx.get(f"{owned_service}/flows/x", headers={"authorization": "Bearer nope"}).status_code == 401
    missing = f"/flows/none-{uuid.uuid4().hex[:8]}"
    assert httpx.get(owned_service + missing, headers=as_caller("bob")).status_code == 404


# -- outbound connections -----------------------------------------------------------------------------


class CountingListener:
    """A TCP listener on a port the service must never reach; counts connection attempts."""

    def __init__(self, port):
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(64)
        self.server.settimeout(0.2)
        self.accepted = 0
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while self.running:
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.accepted += 1
            connection.close()

    def close(self):
        self.running = False
        self.thread.join(2)
        self.server.close()


@pytest.fixture
def forbidden_port():
    listener = CountingListener(int(os.environ["TEST_DENIED_PORT"]))
    yield listener
    listener.close()


SPELLINGS = ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "localhost", "[::ffff:127.0.0.1]"]


def test_no_spelling_of_a_denied_port_is_reached(service, backend2, forbidden_port):
    port = int(os.environ["TEST_DENIED_PORT"])
    for spelling in SPELLINGS:
        body = seed_flow(backend2, backend2_ws_url=f"ws://{spelling}:{port}/ws/x")
        response = post(service, body)
        assert response.status_code == 422, (spelling, response.text)
        assert spelling not in response.text  # the refusal does not echo the destination
    assert_victim_completes(service, backend2)
    assert forbidden_port.accepted == 0


def test_a_redirect_is_not_followed_and_the_error_says_nothing_of_it(service, backend2, forbidden_port):
    port = int(os.environ["TEST_DENIED_PORT"])
    redirector = socket.socket()
    redirector.bind(("127.0.0.1", 0))
    redirector.listen(16)
    answered = []

    def redirect():
        redirector.settimeout(30)
        while len(answered) < 50:
            try:
                connection, _ = redirector.accept()
            except OSError:
                return
            connection.recv(65536)
            location = f"ws://127.0.0.1:{port}/secret-path?token=redirect-canary"
            connection.sendall(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())
            connection.close()
            answered.append(1)

    thread = threading.Thread(target=redirect, daemon=True)
    thread.start()
    body = seed_flow(backend2, backend2_ws_url=f"ws://127.0.0.1:{redirector.getsockname()[1]}/ws")
    assert post(service, body).status_code == 200
    deadline = time.monotonic() + 60
    while True:
        delivery = httpx.get(f"{service}/flows/{body['flow_id']}").json()["delivery"]
        if delivery and delivery.get("last_error"):
            break
        assert time.monotonic() < deadline, delivery
        time.sleep(0.2)
    assert delivery["last_error"].startswith("could not deliver to Backend 2")
    assert "redirect-canary" not in json.dumps(delivery) and "secret-path" not in json.dumps(delivery)
    assert answered and forbidden_port.accepted == 0
    redirector.close()
    assert_victim_completes(service, backend2)


# -- any body at all ------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(min_value=0, max_value=2**32))
def test_fuzzed_bodies_never_hurt_the_service_or_a_victim_flow(service, backend2, seed):
    body = next(malformed_bodies(1, seed=seed, huge_graphs=0))
    victim = seed_flow(backend2)
    with httpx.Client(base_url=service, timeout=60) as http:
        t0 = time.monotonic()
        response = http.post("/execute", content=body, headers={"content-type": "application/json"})
        assert response.status_code < 500, response.text[:500]
        assert response.status_code in (200, 400, 409, 413, 422), response.status_code
        assert len(response.content) <= 64 * 1024
        assert time.monotonic() - t0 < 30
        assert http.post("/execute", json=victim).status_code == 200
    events = backend2.wait_for_completion(f"ws/{victim['flow_id']}", timeout=60)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["data"]["status"] == "completed"
