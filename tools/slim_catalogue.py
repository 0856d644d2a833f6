#!/usr/bin/env python3
"""Writes the filter's built-in model catalogue from a Codex catalogue.

Input: a `GET .../codex/models` answer, or the `models.json` a Codex CLI release bundles
(the same schema). Output: the same `{"models": [...]}` shape with only the fields the filter
reads or passes on to a Codex CLI (`CODEX_FIELDS` in src/core/catalogue/entry.rs, read from
there), so the module carries a few kilobytes instead of every model's prompt texts.

    python3 tools/slim_catalogue.py models.json > src/core/catalogue/builtin.json
"""

import json
import pathlib
import re
import sys

ENTRY_RS = pathlib.Path(__file__).resolve().parent.parent / "src/core/catalogue/entry.rs"


def kept_fields() -> list:
    """The field names of `CODEX_FIELDS` in entry.rs: the one list of what the filter keeps."""
    source = ENTRY_RS.read_text(encoding="utf-8")
    block = re.search(r"pub const CODEX_FIELDS: &\[&str\] = &\[(.*?)\];", source, re.S)
    if block is None:
        raise SystemExit(f"no CODEX_FIELDS list in {ENTRY_RS}")
    return re.findall(r'"([^"]+)"', block.group(1))


def slim(catalogue: dict) -> dict:
    kept = kept_fields()
    models = sorted(catalogue["models"], key=lambda m: (m.get("priority", 0), m["slug"]))
    return {"models": [{k: m[k] for k in kept if k in m} for m in models]}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        catalogue = json.load(f)
    json.dump(slim(catalogue), sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
