"""A managed process never takes another process's answers for its own, and a stack's ports are
distinct: two of its processes never share one."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.tools.localkafka.process import distinct_free_ports, free_port
from services.tools.stack.processes import ManagedProcess, ProcessFailed
from services.tools.stack.stack import DEFAULT_AGENCIES, LocalStack, StackPorts


class _AlwaysHealthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def squatter() -> Iterator[int]:
    """A server that answers 200 on every path of its port, as another service of a stack would."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AlwaysHealthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def web_server(name: str, port: int, log_dir: Path) -> ManagedProcess:
    """The standard library's web server on ``port`` as a managed process (it answers 200 on ``/``)."""
    return ManagedProcess(
        name,
        "http.server",
        ["--bind", "127.0.0.1", str(port)],
        health_url=f"http://127.0.0.1:{port}/",
        log_dir=log_dir,
    )


def test_a_process_whose_port_another_process_answers_on_is_refused_with_the_port_named(
    squatter: int, tmp_path: Path
) -> None:
    # It would fail to bind and exit, but only after the squatter had answered its health check.
    process = web_server("tracker", squatter, tmp_path)
    try:
        with pytest.raises(ProcessFailed, match=f"127.0.0.1:{squatter}"):
            process.start()
            process.wait_healthy(10)
        assert not process.is_running()
    finally:
        process.stop()


def test_a_process_on_a_port_nobody_answers_on_starts(tmp_path: Path) -> None:
    process = web_server("web", free_port(), tmp_path)
    try:
        process.start()
        process.wait_healthy(20)
        assert process.is_running()
    finally:
        process.stop()


def test_distinct_free_ports_are_distinct_and_avoid_the_ports_already_planned() -> None:
    planned = set(distinct_free_ports(20))
    drawn = distinct_free_ports(40, taken=planned)
    assert len(set(drawn)) == 40
    assert not planned & set(drawn)


def test_a_stacks_replicas_never_get_a_port_planned_for_another_process(tmp_path: Path) -> None:
    ports = StackPorts.free(DEFAULT_AGENCIES)
    stack = LocalStack(
        "127.0.0.1:1",
        tmp_path / "stack",
        ports=ports,
        replicas=3,
        database_url="postgresql://lienthong@127.0.0.1:1/lienthong",  # never connected to here
    )
    stack._define()  # the processes and their settings, none started
    used = [instance.port for instances in stack.service_instances.values() for instance in instances]
    used += list(ports.sandboxes.values())
    assert len(used) == len(set(used)), sorted(used)
