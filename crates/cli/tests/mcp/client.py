"""An agent driving Mandate's MCP gateway with the official MCP Python SDK.

The SDK's own Streamable HTTP client, with ``mandate_client.MandateAuth`` as
its HTTP auth: every request carries the task token and a fresh DPoP proof.

    python client.py PLAN_JSON

PLAN_JSON:
    {"url": "http://127.0.0.1:PORT/mcp/everything",
     "key": "/path/to/svid.key",
     "token": "<task token>",                      # a fixed token, or:
     "svid_dir": "...", "token_url": "https://.../oauth/token",
     "authorization_details": [...],               # TaskTokenSource
     "mode": "auto" | "legacy" | "2026-07-28",     # the SDK's Client(mode=...)
     "steps": [{"op": "list_tools"},
               {"op": "call_tool", "name": "echo", "arguments": {...}}]}

Prints one JSON object: {"protocol_version", "task_id", "steps": [...]}, each
step {"tools": [names]} or {"ok": true, "is_error", "text": [...]} or
{"ok": false, "code", "message", "data"} (a JSON-RPC error from the gateway).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mandate_client import DpopKey, MandateAuth, TaskTokenSource


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    key = DpopKey.from_pem(plan["key"])
    source: Any
    if "token" in plan:
        source = plan["token"]
    else:
        source = TaskTokenSource(plan["svid_dir"], plan["token_url"], plan["authorization_details"], key=key)
    auth = MandateAuth(source, key)
    out: dict[str, Any] = {"steps": []}
    async with httpx2.AsyncClient(auth=auth, timeout=httpx2.Timeout(30.0, read=60.0)) as http:
        transport = streamable_http_client(plan["url"], http_client=http)
        async with Client(transport, mode=plan.get("mode", "auto")) as client:
            out["protocol_version"] = client.protocol_version
            for step in plan["steps"]:
                out["steps"].append(await run_step(client, step))
    if isinstance(source, TaskTokenSource):
        out["task_id"] = source.task_id
    return out


async def run_step(client: Client, step: dict[str, Any]) -> dict[str, Any]:
    try:
        if step["op"] == "list_tools":
            result = await client.list_tools()
            return {"tools": [t.name for t in result.tools]}
        if step["op"] == "call_tool":
            result = await client.call_tool(step["name"], step.get("arguments", {}))
            return {
                "ok": True,
                "is_error": bool(result.is_error),
                "text": [c.text for c in result.content if getattr(c, "type", None) == "text"],
            }
        raise ValueError(f"unknown op {step['op']!r}")
    except MCPError as e:
        return {"ok": False, "code": e.code, "message": e.message, "data": e.data}


def main() -> None:
    plan = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(run(plan))), flush=True)


if __name__ == "__main__":
    main()
