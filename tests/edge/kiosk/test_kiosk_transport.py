"""The kiosk's connection transport: a response's head and body leave in one write, and nothing is held back."""

from __future__ import annotations

import asyncio
import socket

from fixtures_asyncio import RunAsync

from edge.kiosk.server import _CoalescingTransport


class _CountingTransport:
    """A real transport that also notes each write it is given."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def close(self) -> None:
        self.transport.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self.transport, name)


def test_head_and_body_are_joined_a_lone_write_follows_on_the_next_turn_and_close_flushes(run_async: RunAsync) -> None:
    async def scenario() -> tuple[list[bytes], bytes]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        real, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        counting = _CountingTransport(real)
        transport = _CoalescingTransport(counting, loop)  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        transport.write(b"body")  # the same event-loop step: one write
        transport.write(bytearray(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # nothing joined it: sent on its own by the next turn
        streamed_head_sent = len(counting.writes) == 2
        transport.write(b"4\r\nlast\r\n0\r\n\r\n")
        assert transport.get_write_buffer_size() == 0  # the rest is the real transport's
        transport.close()  # sends what it holds first
        await asyncio.sleep(0.05)
        theirs.settimeout(5)
        received = b""
        while chunk := theirs.recv(65536):
            received += chunk
        theirs.close()
        assert streamed_head_sent
        return counting.writes, received

    writes, received = run_async(scenario)
    assert writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody",
                      b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                      b"4\r\nlast\r\n0\r\n\r\n"]
    assert received == b"".join(writes)
