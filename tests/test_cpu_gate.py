"""The soft bound on request threads running Python at once (converter/cpu_gate.py)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import Any

from converter import cpu_gate


class Probe:
    """A WSGI app that records how many requests run inside it at once."""

    def __init__(self, body: Callable[[dict[str, Any]], None]) -> None:
        self.body = body
        self.inside = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            self.body(environ)
        finally:
            with self.lock:
                self.inside -= 1
        start_response("200 OK", [])
        return [b"ok"]


def _serve(app: Probe, requests: int, environ: Callable[[], dict[str, Any]] = dict) -> float:
    gated = cpu_gate.GateMiddleware(app)
    threads = [threading.Thread(target=gated, args=(environ(), lambda *_a: None))
               for _ in range(requests)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return time.monotonic() - started


def test_at_most_tokens_requests_run_at_once(monkeypatch: Any) -> None:
    """Eight requests busy inside: exactly TOKENS run, the others wait for a token."""
    monkeypatch.setattr(cpu_gate, "MAX_WAIT", 10.0)  # no bypass, however slow the machine
    go = threading.Event()
    app = Probe(lambda _env: go.wait(10))  # working (holding its token) until told
    gated = cpu_gate.GateMiddleware(app)
    threads = [threading.Thread(target=gated, args=({}, lambda *_a: None)) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while app.inside < cpu_gate.TOKENS and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.1)  # time for a third to get in, if the bound let it
    inside = app.inside
    go.set()
    for thread in threads:
        thread.join(10)
    assert inside == cpu_gate.TOKENS
    assert app.most == cpu_gate.TOKENS
    assert not cpu_gate.holding()


def test_waiting_inside_released_holds_no_token() -> None:
    """Requests waiting (an engine call) let every other request in: all 6 are inside at once."""
    bypassed = cpu_gate.metrics.HTTP_GATE_BYPASSED._value.get()
    everyone = threading.Barrier(6, timeout=5)

    def wait_for_the_others(_env: dict[str, Any]) -> None:
        with cpu_gate.released():
            everyone.wait()

    app = Probe(wait_for_the_others)
    _serve(app, 6)
    assert app.most == 6
    assert not everyone.broken
    # Not by going round the bound: nobody waited MAX_WAIT for a token.
    assert cpu_gate.metrics.HTTP_GATE_BYPASSED._value.get() == bypassed


def test_a_stuck_holder_delays_the_others_by_at_most_max_wait() -> None:
    """Two holders stuck without releasing: a third goes ahead after MAX_WAIT, counted."""
    bypassed = cpu_gate.metrics.HTTP_GATE_BYPASSED._value.get()
    release = threading.Event()
    third_in = threading.Event()
    arrivals: list[float] = []

    def body(_env: dict[str, Any]) -> None:
        arrivals.append(time.monotonic())
        if len(arrivals) <= 2:
            release.wait(5)  # stuck on something not marked as a wait
        else:
            third_in.set()

    app = Probe(body)
    gated = cpu_gate.GateMiddleware(app)
    holders = [threading.Thread(target=gated, args=({}, lambda *_a: None)) for _ in range(2)]
    for holder in holders:
        holder.start()
    while len(arrivals) < 2:
        time.sleep(0.001)
    started = time.monotonic()
    third = threading.Thread(target=gated, args=({}, lambda *_a: None))
    third.start()
    assert third_in.wait(2)
    waited = time.monotonic() - started
    release.set()
    for thread in (*holders, third):
        thread.join(5)
    assert cpu_gate.MAX_WAIT * 0.8 <= waited < cpu_gate.MAX_WAIT + 0.5
    assert cpu_gate.metrics.HTTP_GATE_BYPASSED._value.get() == bypassed + 1


class SlowBody(io.RawIOBase):
    """A request body whose reads block until a client "sends" the bytes."""

    def __init__(self, sent: threading.Event) -> None:
        self.sent = sent

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.sent.wait(5)
        return 0


def test_reading_a_slow_upload_holds_no_token() -> None:
    """Six requests blocked reading their bodies (through readinto) are all inside at once."""
    bypassed = cpu_gate.metrics.HTTP_GATE_BYPASSED._value.get()
    sent = threading.Event()
    everyone_reading = threading.Barrier(7, timeout=5)

    def read_body(env: dict[str, Any]) -> None:
        buffer = bytearray(16)
        reader = threading.Thread(target=everyone_reading.wait)
        reader.start()
        env["wsgi.input"].readinto(buffer)
        reader.join()

    app = Probe(read_body)
    opener = threading.Thread(target=lambda: (everyone_reading.wait(), sent.set()))
    opener.start()
    _serve(app, 6, environ=lambda: {"wsgi.input": SlowBody(sent)})
    opener.join(5)
    assert app.most == 6
    assert sent.is_set()
    assert cpu_gate.metrics.HTTP_GATE_BYPASSED._value.get() == bypassed
