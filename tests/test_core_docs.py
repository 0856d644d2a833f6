"""Every public item of the core carries a `///` doc comment, and every core file a `//!` one.

Checked: `pub fn` (also `pub const fn`, `pub async fn`, `pub unsafe fn`, methods in `impl`
blocks), `pub struct`, `pub enum`, `pub trait`, `pub const`, `pub type`, `pub static`, and the
`fn`/`type`/`const` items declared inside a `pub trait`. `pub(crate)` and narrower items, fields
and variants are not. The doc comment must sit directly above the item; attributes
(`#[derive]`, `#[must_use]`, multi-line ones too) may come between.

Test code is left out: `*_tests.rs`, `test_support.rs`, and everything after a file's first
`#[cfg(test)]` (tests sit at the end of a file here).

Macro bodies are scanned like any other code: an item a `macro_rules!` generates (the error
catalogue's `Code` and its methods) is documented inside the macro, on the line above the
generated item, so the check reads the same text rustdoc does. The macro's invocation holds
table rows, not items.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.repo import REPO_ROOT

CORE = REPO_ROOT / "src" / "core"

_QUALIFIERS = r"(?:(?:const|async|unsafe|extern\s+\"[^\"]*\")\s+)*"
_PUB_ITEM = re.compile(rf"^\s*pub\s+{_QUALIFIERS}(fn|struct|enum|trait|const|type|static)\s+([A-Za-z_$][A-Za-z0-9_]*)")
_PUB_TRAIT = re.compile(r"^(\s*)pub\s+(?:unsafe\s+)?trait\s")
_TRAIT_MEMBER = re.compile(rf"^\s*{_QUALIFIERS}(fn|type|const)\s+([A-Za-z_][A-Za-z0-9_]*)")
_DOC = re.compile(r"^\s*///(?!/)")


def non_test_code(text: str) -> str:
    """The file up to its first `#[cfg(test)]`."""
    return text.split("#[cfg(test)]", 1)[0]


def core_files(root: Path) -> list[Path]:
    """The non-test `.rs` files under `root`."""
    return [
        file
        for file in sorted(root.rglob("*.rs"))
        if not file.name.endswith("_tests.rs") and file.name != "test_support.rs"
    ]


def _attribute_lines(lines: list[str]) -> list[bool]:
    """Which lines belong to an outer attribute (`#[...]`, possibly spread over lines)."""
    marks = [False] * len(lines)
    depth = 0
    for i, line in enumerate(lines):
        stripped = line.strip()
        if depth == 0 and not stripped.startswith("#["):
            continue
        marks[i] = True
        depth += stripped.count("[") - stripped.count("]")
        depth = max(depth, 0)
    return marks


def _trait_member_lines(lines: list[str]) -> list[int]:
    """Indexes of the `fn`/`type`/`const` lines directly inside a `pub trait` body.

    Relies on rustfmt's indentation: members sit one level (four spaces) deeper than the
    `pub trait` line, and the body ends at a `}` at the trait's own indentation.
    """
    found = []
    i = 0
    while i < len(lines):
        trait = _PUB_TRAIT.match(lines[i])
        if not trait or lines[i].rstrip().endswith("}"):
            i += 1
            continue
        indent = trait.group(1)
        member_indent = indent + "    "
        i += 1
        while i < len(lines) and lines[i].rstrip() != indent + "}":
            line = lines[i]
            at_member_depth = line.startswith(member_indent) and not line.startswith(member_indent + " ")
            if at_member_depth and _TRAIT_MEMBER.match(line):
                found.append(i)
            i += 1
    return found


def undocumented(file: Path, display_root: Path) -> list[str]:
    """`path:line: item` for every public item of `file` without a `///` directly above it."""
    lines = non_test_code(file.read_text(encoding="utf-8")).split("\n")
    attributes = _attribute_lines(lines)
    candidates = [i for i, line in enumerate(lines) if _PUB_ITEM.match(line)]
    candidates += _trait_member_lines(lines)
    missing = []
    for i in sorted(set(candidates)):
        above = i - 1
        while above >= 0 and attributes[above]:
            above -= 1
        if above < 0 or not _DOC.match(lines[above]):
            missing.append(f"{file.relative_to(display_root)}:{i + 1}: {lines[i].strip()}")
    return missing


def missing_module_doc(file: Path) -> bool:
    """Whether the file does not open with a `//!` module comment."""
    for line in file.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            return not line.startswith("//!")
    return True


def test_every_public_core_item_has_a_doc_comment():
    missing = [entry for file in core_files(CORE) for entry in undocumented(file, REPO_ROOT)]
    assert not missing, "public items of the core without a `///` doc comment:\n" + "\n".join(missing)


def test_every_core_file_has_a_module_doc():
    missing = [str(file.relative_to(REPO_ROOT)) for file in core_files(CORE) if missing_module_doc(file)]
    assert not missing, "core files without a `//!` module comment:\n" + "\n".join(missing)


_SYNTHETIC = """\
//! A synthetic module.

/// Documented.
#[derive(Debug)]
pub struct Documented;

pub struct Bare;

pub(crate) fn crate_only() {}

fn private() {}

// A plain comment is not a doc comment.
pub enum PlainComment {}

//// Four slashes are a plain comment too.
pub type FourSlashes = u8;

/// Documented, with a multi-line attribute between.
#[allow(
    dead_code
)]
pub const fn documented_const() -> u8 {
    0
}

impl Documented {
    /// Documented method.
    #[must_use]
    pub fn method(&self) -> u8 {
        0
    }

    pub const fn bare_method(&self) -> u8 {
        0
    }

    pub(crate) fn crate_method(&self) {}
}

/// Documented trait.
pub trait Port {
    /// Documented member.
    fn documented(&self);

    fn bare_member(&self) -> u8 {
        0
    }

    type BareType;
}

macro_rules! make {
    () => {
        /// Documented generated item.
        pub struct Generated;

        pub static BARE_GENERATED: u8 = 0;
    };
}

#[cfg(test)]
mod tests {
    pub fn after_cfg_test_is_ignored() {}
}
"""


def test_the_checker_finds_missing_docs(tmp_path):
    file = tmp_path / "core" / "synthetic.rs"
    file.parent.mkdir()
    file.write_text(_SYNTHETIC, encoding="utf-8")
    (tmp_path / "core" / "synthetic_tests.rs").write_text("pub fn skipped() {}\n", encoding="utf-8")
    (tmp_path / "core" / "bare.rs").write_text("pub fn no_module_doc() {}\n", encoding="utf-8")

    assert [f.name for f in core_files(tmp_path / "core")] == ["bare.rs", "synthetic.rs"]
    found = [entry.split(": ", 1)[1] for entry in undocumented(file, tmp_path)]
    assert found == [
        "pub struct Bare;",
        "pub enum PlainComment {}",
        "pub type FourSlashes = u8;",
        "pub const fn bare_method(&self) -> u8 {",
        "fn bare_member(&self) -> u8 {",
        "type BareType;",
        "pub static BARE_GENERATED: u8 = 0;",
    ]
    assert undocumented(file, tmp_path)[0].startswith("core/synthetic.rs:7: ")
    assert missing_module_doc(tmp_path / "core" / "bare.rs")
    assert not missing_module_doc(file)
