#!/usr/bin/env python3
"""Writes the filter's built-in model catalogue from a Codex catalogue.

Input: a `GET .../codex/models` answer, or the `models.json` a Codex CLI release bundles
(the same schema). Output: the same `{"models": [...]}` shape with only the fields the filter
reads or passes on to a Codex CLI (`CODEX_FIELDS` in src/core/catalogue/entry.rs, kept equal
by a unit test), so the module carries a few kilobytes instead of every model's prompt texts.

    python3 tools/slim_catalogue.py models.json > src/core/catalogue/builtin.json
"""

import json
import sys

KEPT = (
    "slug",
    "display_name",
    "description",
    "visibility",
    "priority",
    "default_reasoning_level",
    "supported_reasoning_levels",
    "default_reasoning_summary",
    "supports_reasoning_summaries",
    "supports_reasoning_summary_parameter",
    "context_window",
    "max_context_window",
    "minimal_client_version",
    "use_responses_lite",
    "support_verbosity",
    "default_verbosity",
    "supports_parallel_tool_calls",
    "input_modalities",
    "default_service_tier",
    "service_tiers",
    "additional_speed_tiers",
    "shell_type",
    "supported_in_api",
    "truncation_policy",
    "apply_patch_tool_type",
    "web_search_tool_type",
    "supports_search_tool",
    "supports_image_detail_original",
)


def slim(catalogue: dict) -> dict:
    models = sorted(catalogue["models"], key=lambda m: (m.get("priority", 0), m["slug"]))
    return {"models": [{k: m[k] for k in KEPT if k in m} for m in models]}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        catalogue = json.load(f)
    json.dump(slim(catalogue), sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
