"""A desktop-style MCP client: the official MCP Python SDK's stdio client
spawning `mandate mcp stdio` and speaking MCP to it over stdin/stdout.

    python stdio_client.py PLAN_JSON

PLAN_JSON:
    {"command": "/path/to/mandate", "args": ["mcp", "stdio", ...],
     "mode": "auto" | "legacy" | "2026-07-28",     # the SDK's Client(mode=...)
     "steps": [{"op": "list_tools"},
               {"op": "call_tool", "name": "echo", "arguments": {...}}]}

Prints one JSON object: {"protocol_version", "steps": [...]}, each step
{"tools": [names]} or {"ok": true, "is_error", "text": [...]} or
{"ok": false, "code", "message", "data"} (a JSON-RPC error).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

# The steps are run as for the Streamable HTTP client, next to this script.
from client import run_step


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    params = StdioServerParameters(command=plan["command"], args=plan["args"])
    out: dict[str, Any] = {"steps": []}
    async with Client(stdio_client(params), mode=plan.get("mode", "auto")) as client:
        out["protocol_version"] = client.protocol_version
        for step in plan["steps"]:
            out["steps"].append(await run_step(client, step))
    return out


def main() -> None:
    plan = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(run(plan))), flush=True)


if __name__ == "__main__":
    main()
