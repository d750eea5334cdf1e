"""The API's reference page (``docs/serving_api.md``), generated from its OpenAPI document: every route with its
description, request body, parameters and answers. ``mlops serve --reference`` writes it; a test keeps it current."""

from typing import Any

from fastapi import FastAPI


def _schema_name(content: dict[str, Any]) -> str:
    schema = next(iter(content.values()), {}).get("schema", {})
    ref = schema.get("$ref", "")
    return ref.rsplit("/", 1)[-1] or schema.get("type", "")


def render(app: FastAPI) -> str:
    """Markdown: one section per route, then the body models and their fields."""
    spec = app.openapi()
    lines = [
        "# Serving API reference",
        "",
        "Generated from the OpenAPI document by `mlops serve --reference` (do not edit). The live document, with",
        "a console to try the routes, is at `/docs` of a running server (`make serve`). Errors are problem",
        "documents (`Problem` below).",
        "",
    ]
    for path, methods in spec["paths"].items():
        for method, route in methods.items():
            lines += [f"## `{method.upper()} {path}`", "", " ".join(route.get("description", "").split()), ""]
            params = [f"`{p['name']}` ({p['in']})" for p in route.get("parameters", [])]
            if params:
                lines += [f"Parameters: {', '.join(params)}.", ""]
            body = route.get("requestBody", {}).get("content")
            if body:
                lines += [f"Body: `{_schema_name(body)}`.", ""]
            answers = [
                f"{code} `{_schema_name(r.get('content', {})) or '-'}` ({r.get('description', '')})"
                for code, r in route.get("responses", {}).items()
            ]
            lines += ["Answers: " + "; ".join(answers) + ".", ""]
    lines += ["## Models", ""]
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        if name in ("HTTPValidationError", "ValidationError"):
            continue
        lines += [f"### `{name}`", "", " ".join(schema.get("description", "").split()), ""]
        lines += ["| field | type | required | description |", "|---|---|---|---|"]
        required = set(schema.get("required", []))
        for field, prop in schema.get("properties", {}).items():
            kinds = [p.get("type") or p.get("$ref", "").rsplit("/", 1)[-1] for p in prop.get("anyOf", [prop])]
            kind = " or ".join(k for k in kinds if k) or "any"
            described = " ".join(prop.get("description", "").split()).replace("|", "\\|")
            lines.append(f"| `{field}` | {kind} | {'yes' if field in required else 'no'} | {described} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
