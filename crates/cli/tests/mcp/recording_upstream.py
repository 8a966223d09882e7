"""A recording MCP upstream for the gateway tests.

A real MCP server (the official Python SDK's ``MCPServer`` over Streamable
HTTP, speaking 2025-11-25 and 2026-07-28) wrapped in an ASGI layer that appends
every HTTP request it receives, before the server sees it, to a JSON-lines
file: ``{"method", "path", "headers": [[name, value], ...], "body"}``. The
test reads that file to see what the gateway forwarded and what it did not.

    python recording_upstream.py RECORD_FILE

prints ``recording upstream listening on port N`` once it accepts connections.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("recording-upstream")


@server.tool(name="echo", description="Echoes back the input")
def echo(message: str) -> str:
    return f"Echo: {message}"


@server.tool(name="get-sum", description="Returns the sum of two numbers")
def get_sum(a: float, b: float) -> str:
    total = a + b
    return f"The sum of {a:g} and {b:g} is {total:g}."


@server.tool(name="get-env", description="Returns the server's environment (never to be reached)")
def get_env() -> str:
    return "UPSTREAM-ENVIRONMENT-LEAKED"


class Recorder:
    """ASGI middleware: records each HTTP request whole, then hands it on."""

    def __init__(self, app, path: str) -> None:
        self.app = app
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        record = {
            "method": scope["method"],
            "path": scope["path"],
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": body.decode("utf-8", "replace"),
        }
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def main(record_path: str) -> None:
    app = Recorder(server.streamable_http_app(), record_path)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    # Announce once uvicorn serves (its lifespan, which starts the session
    # manager, has run).
    async def announce() -> None:
        while not uv.started:
            await asyncio.sleep(0.02)
        print(f"recording upstream listening on port {sock.getsockname()[1]}", flush=True)

    await asyncio.gather(uv.serve(sockets=[sock]), announce())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
