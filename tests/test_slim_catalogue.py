"""tools/slim_catalogue.py writes the built-in catalogue with the fields the filter keeps
(`CODEX_FIELDS` in src/core/catalogue/entry.rs): slimming the built-in copy again changes
nothing, and a field outside that list is dropped."""

from __future__ import annotations

import json
import subprocess
import sys

from harness.repo import REPO_ROOT as ROOT

SCRIPT = ROOT / "tools" / "slim_catalogue.py"
BUILTIN = ROOT / "src" / "core" / "catalogue" / "builtin.json"


def slim(path) -> str:
    return subprocess.run([sys.executable, str(SCRIPT), str(path)], check=True, capture_output=True, text=True).stdout


def test_the_builtin_copy_is_what_the_script_writes():
    assert slim(BUILTIN) == BUILTIN.read_text(encoding="utf-8")


def test_prompt_texts_and_unknown_fields_are_dropped(tmp_path):
    document = json.loads(BUILTIN.read_text(encoding="utf-8"))
    for entry in document["models"]:
        entry["model_messages"] = {"instructions_template": "You are Codex. " * 100}
        entry["future_field"] = 1
    source = tmp_path / "models.json"
    source.write_text(json.dumps(document), encoding="utf-8")
    assert slim(source) == BUILTIN.read_text(encoding="utf-8")
