"""``/docs``: the API reference as one self-contained HTML page rendered from the OpenAPI
schema on the server, so it works offline (no CDN, no JavaScript). The schema itself is at
``/openapi.json``."""

from __future__ import annotations

import html
import json
from typing import Any

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
    "h2{border-bottom:1px solid #ccc}code,pre{background:#f4f4f4;padding:0 .2em}"
    "pre{padding:.5em;overflow:auto}td,th{text-align:left;padding:.2em .6em;"
    "vertical-align:top}.m{font-weight:bold;text-transform:uppercase}"
)


def _e(value: Any) -> str:
    return html.escape(str(value))


def render(schema: dict[str, Any]) -> str:
    info = schema.get("info", {})
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(info.get('title'))}"
        f" API</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(info.get('title'))} {_e(info.get('version'))}</h1>",
        f"<p>{_e(info.get('description', ''))}</p>",
        "<p>Machine-readable schema: <a href='/openapi.json'>/openapi.json</a></p>",
    ]
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            parts.append(f"<h2><span class='m'>{_e(method)}</span> <code>{_e(path)}</code></h2>")
            parts.append(f"<p>{_e(op.get('summary', ''))}</p>")
            params = op.get("parameters", [])
            if params:
                parts.append("<table><tr><th>parameter</th><th>in</th><th>schema</th></tr>")
                for p in params:
                    parts.append(
                        f"<tr><td><code>{_e(p.get('name'))}</code></td>"
                        f"<td>{_e(p.get('in'))}</td>"
                        f"<td><code>{_e(json.dumps(p.get('schema', {})))}</code></td>"
                        f"</tr>"
                    )
                parts.append("</table>")
            body = op.get("requestBody")
            if body:
                parts.append(
                    f"<p>Body:</p><pre>{_e(json.dumps(body.get('content', {}), indent=1))}</pre>"
                )
            parts.append("<table><tr><th>status</th><th>meaning</th></tr>")
            for status, response in op.get("responses", {}).items():
                parts.append(
                    f"<tr><td>{_e(status)}</td><td>{_e(response.get('description', ''))}</td></tr>"
                )
            parts.append("</table>")
    components = schema.get("components", {}).get("schemas", {})
    if components:
        parts.append("<h2>Schemas</h2>")
        for name, body in components.items():
            parts.append(
                f"<h3 id='{_e(name)}'>{_e(name)}</h3><pre>{_e(json.dumps(body, indent=1))}</pre>"
            )
    parts.append("</body></html>")
    return "".join(parts)
