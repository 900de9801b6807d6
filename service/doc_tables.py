"""Docs generated from their one declaration: the README's contents (from its headings),
route, settings and error tables, and docs/metadata.schema.json. Tests fail when a generated
part is stale.

    python -m service.doc_tables --write
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import typing
from pathlib import Path

from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from classifier.metadata import json_schema
from service.errors import ERRORS
from service.settings import Settings

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
METADATA_SCHEMA = REPO / "docs" / "metadata.schema.json"


def _allowed(field: FieldInfo) -> str:
    """What a value may be, read from the field's type and bounds."""
    choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) else ()
    if choices and all(isinstance(c, str) for c in choices):
        return ", ".join(f"`{c}`" for c in choices)
    kind = {int: "integer", float: "number", bool: "`true` or `false`", str: "text"}.get(
        field.annotation, "text"
    )
    bounds = []
    for rule in field.metadata:
        for cls, sign, attr in ((Ge, "≥", "ge"), (Gt, ">", "gt"), (Le, "≤", "le"), (Lt, "<", "lt")):
            if isinstance(rule, cls):
                bounds.append(f"{sign} {getattr(rule, attr)}")
    return f"{kind} {', '.join(bounds)}".strip()


def _default(value: object) -> str:
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def settings_table() -> str:
    rows = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(
            f"| `{name.upper()}` | {_default(field.default)} | {_allowed(field)} "
            f"| {field.description} |"
        )
    return "\n".join(rows)


def errors_table() -> str:
    rows = ["| status | gRPC status | code | when |", "|---|---|---|---|"]
    for kind in sorted(ERRORS, key=lambda k: k.status):
        codes = ", ".join(f"`{code}`" for code in kind.codes)
        rows.append(f"| {kind.status} | `{kind.grpc}` | {codes} | {kind.when} |")
    return "\n".join(rows)


def routes_table() -> str:
    from service.http.routes import ROUTES

    rows = ["| method and path | what it does | protocol |", "|---|---|---|"]
    for route in ROUTES:
        what = route.summary + (f": {route.description}" if route.description else "")
        rows.append(f"| `{route.method} {route.path}` | {what} | {', '.join(route.tags)} |")
    return "\n".join(rows)


TABLES = {"routes": routes_table, "settings": settings_table, "errors": errors_table}

WALKTHROUGH = re.compile(r"<!-- walkthrough:begin.*?-->(.*?)<!-- walkthrough:end -->", re.DOTALL)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces made '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str) -> list[str]:
    """The `## ` headings outside code blocks, in order."""
    prose = re.sub(r"(?ms)^```.*?^```", "", text)
    return [line[3:].strip() for line in prose.splitlines() if line.startswith("## ")]


def contents(text: str) -> str:
    """The README's table of contents: the walk-through's sections, in order, then the rest."""
    walk = WALKTHROUGH.search(text)
    first = headings(walk.group(1)) if walk else []
    rest = [h for h in headings(text) if h not in first and h != "Contents"]
    lines = [
        "Getting started, in order (every `sh` block runs as written, one after the other):",
        "",
    ]
    lines += [f"{i}. [{h}](#{anchor(h)})" for i, h in enumerate(first, 1)]
    lines += ["", "Reference:", ""]
    lines += [f"- [{h}](#{anchor(h)})" for h in rest]
    return "\n".join(lines)


def render_readme(text: str) -> str:
    """`text` with every generated part between its markers replaced by the current one."""
    tables = {**TABLES, "contents": lambda: contents(text)}
    for name, render in tables.items():
        pattern = re.compile(
            rf"(<!-- {name}:begin[^>]*-->\n).*?(\n<!-- {name}:end -->)", flags=re.DOTALL
        )
        if not pattern.search(text):
            raise ValueError(f"README.md lacks the markers of the {name} table (or its body)")
        text = pattern.sub(lambda m, r=render: m.group(1) + r() + m.group(2), text)
    return text


def metadata_schema() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m service.doc_tables", description=__doc__)
    p.add_argument(
        "--write",
        action="store_true",
        help="rewrite README.md's tables and docs/metadata.schema.json (else: exit 1 if stale)",
    )
    args = p.parse_args(argv)
    readme = README.read_text()
    try:
        fresh = render_readme(readme)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = fresh != readme or METADATA_SCHEMA.read_text() != metadata_schema()
    if args.write:
        README.write_text(fresh)
        METADATA_SCHEMA.write_text(metadata_schema())
        return 0
    print("stale: run python -m service.doc_tables --write" if stale else "up to date")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
