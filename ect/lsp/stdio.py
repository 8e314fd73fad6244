"""Serve pygls over stdin/stdout with one thread that reads whole messages ahead.

pygls's own stdio reader asks its thread pool for every header line and every body (`run_in_executor`):
three or four hand-overs between threads per message, each a wake-up the operating system may delay on a
busy machine, and queued behind handlers that wait in the same pool (inline completion waiting for the
model, code actions waiting for fixes). Here one dedicated thread reads each message as it arrives and
passes its lines and body to pygls's message loop (`pygls.io_.run_async`, unchanged).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

_CONTENT_LENGTH = re.compile(rb"^Content-Length: (\d+)\r\n$")  # as pygls.io_.run_async reads it
MAX_HEADER_LINE = 64 << 10  # bytes; a longer header line ends the session
MAX_MESSAGE = 256 << 20  # bytes; a bigger message ends the session (bounded input)


class ReadAhead:
    """pygls's AsyncReader over a thread that reads messages as the loop expects them: header lines,
    then, after the blank line that ends headers with a Content-Length, the body. End of input: b""."""

    def __init__(self, stdin: BinaryIO) -> None:
        self.stdin = stdin
        self._queue: asyncio.Queue[bytes] | None = None

    def _start(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._queue = queue
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._pump, args=(loop, queue), name="ect-stdin", daemon=True).start()
        return queue

    def _pump(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes]) -> None:
        length = 0
        while True:
            try:
                line = self.stdin.readline(MAX_HEADER_LINE)
                body = None
                if len(line) >= MAX_HEADER_LINE:
                    log.error("ect: an editor header line is over %d bytes: stopping", MAX_HEADER_LINE)
                    line = b""
                if line:
                    match = _CONTENT_LENGTH.fullmatch(line)
                    if not length and match:
                        length = int(match.group(1))
                        if length > MAX_MESSAGE:
                            log.error("ect: an editor message is over %d bytes: stopping", MAX_MESSAGE)
                            line, length = b"", 0
                    elif length and not line.strip():
                        body = self.stdin.read(length)
                        length = 0
            except (OSError, ValueError):
                line, body = b"", None
            try:
                loop.call_soon_threadsafe(queue.put_nowait, line)
                if body is not None:
                    loop.call_soon_threadsafe(queue.put_nowait, body)
            except RuntimeError:  # the loop is closed: the server is ending
                return
            if not line or body == b"":
                return

    async def readline(self) -> bytes:
        queue = self._queue or self._start()
        return await queue.get()

    async def readexactly(self, n: int) -> bytes:
        queue = self._queue or self._start()
        return await queue.get()


def serve(server: Any) -> None:
    """What `server.start_io()` does, with `ReadAhead` as the reader (stdin and stdout of this process)."""
    from pygls.io_ import StdoutWriter, run_async

    server._stop_event = stop = threading.Event()
    server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
    try:
        asyncio.run(
            run_async(
                stop_event=stop,
                reader=ReadAhead(sys.stdin.buffer),
                protocol=server.protocol,
                logger=log,
                error_handler=server.report_server_error,
            )
        )
    except BrokenPipeError:
        log.error("ect: the connection to the editor is lost: stopping")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()
