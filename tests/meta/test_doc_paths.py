"""Every repository path that README.md and SECURITY.md name exists, and every test or
function they cite by name (`path::name`, `path::tests::name`) is defined in that file.

What counts as a path: a `backticked` token whose first segment is a top-level entry of
the repository (crates/…, tests/…, scripts/…, fuzz/…, .ci/run, requirements-dev.txt),
with an optional `::item` suffix; the file names in the README's architecture table
(`sqlite/writer.rs`, `session/{hello,auth}.rs`), which are relative to that row's crate;
and relative Markdown links. Tokens such as `data_dir/tls` (a runtime path) are not
repository paths and are left alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "SECURITY.md"]
TOP = {p.name for p in REPO.iterdir() if p.name not in {".git", "target", ".pytest_cache"}}

TICK = re.compile(r"`([^`\s]+)`")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
CRATE_ROW = re.compile(r"^\|\s*`(crates/[\w-]+)`\s*\|")


def expand(token: str) -> list[str]:
    """`session/{a,b}.rs` -> [`session/a.rs`, `session/b.rs`] (one brace group)."""
    m = re.search(r"\{([^}]*)\}", token)
    if not m:
        return [token]
    return [token[:m.start()] + alt + token[m.end():] for alt in m.group(1).split(",")]


def references(doc: str) -> list[tuple[int, str, str | None, list[Path]]]:
    """(line, token, cited item or None, candidate paths: any one existing suffices)."""
    out = []
    for lineno, line in enumerate((REPO / doc).read_text().splitlines(), 1):
        row = CRATE_ROW.match(line)
        cells = line.split("|")
        for token in TICK.findall(line):
            path, _, item = token.partition("::")
            first = path.split("/", 1)[0]
            if row and len(cells) >= 4 and f"`{token}`" in cells[-2] \
                    and re.search(r"\.(rs|toml|json)$|/$", path):
                # The "look at" cell of the crate table: relative to that crate.
                crate = REPO / row.group(1)
                for p in expand(path):
                    out.append((lineno, token, item or None,
                                [crate / "src" / p, crate / p, REPO / p]))
            elif first in TOP and (("/" in path) or (REPO / path).is_file()):
                for p in expand(path):
                    out.append((lineno, token, item or None, [REPO / p]))
        for target in LINK.findall(line):
            if not re.match(r"^[a-z]+:", target):
                out.append((lineno, target, None, [REPO / target]))
    return out


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_named_in_the_doc_exists(doc):
    refs = references(doc)
    assert len(refs) > 20, f"{doc}: only {len(refs)} path references found - is the parser broken?"
    missing = [f"{doc}:{n}: {tok}" for n, tok, _, cands in refs
               if not any(c.exists() for c in cands)]
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("doc", DOCS)
def test_every_test_named_in_the_doc_is_defined(doc):
    bad = []
    for n, tok, item, cands in references(doc):
        found = [c for c in cands if c.is_file()]
        if not item or not found:
            continue
        name = item.split("::")[-1]
        text = found[0].read_text()
        # A store conformance test is defined by `conformance!(name, ...)` (one test per
        # backend, `name::sqlite` and `name::postgres`).
        if not re.search(rf"^\s*(async\s+)?(pub(\([^)]*\))?\s+)?(async\s+)?(fn|def)\s+{re.escape(name)}\b",
                         text, re.M) and \
                not re.search(rf"conformance(_db)?!\(\s*{re.escape(name)}\b", text):
            bad.append(f"{doc}:{n}: {tok} (no fn/def {name} in {found[0].relative_to(REPO)})")
    assert not bad, "tests or functions named in the docs that are not defined:\n" + "\n".join(bad)


def test_the_checker_catches_a_stale_path(tmp_path, monkeypatch):
    """The parser is not vacuous: a stale path, a crate-relative file and a vanished
    test name are all reported."""
    (tmp_path / "crates" / "demo" / "src").mkdir(parents=True)
    (tmp_path / "crates" / "demo" / "src" / "lib.rs").write_text("fn real_test() {}\n")
    (tmp_path / "DOC.md").write_text(
        "See `crates/demo/src/gone.rs` and `crates/demo/src/lib.rs::tests::vanished`.\n"
        "| `crates/demo` | owns | `lib.rs`, `missing.rs` |\n")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    monkeypatch.setattr(__import__(__name__), "TOP", {"crates", "DOC.md"})
    refs = references("DOC.md")
    missing = sorted(tok for _, tok, _, c in refs if not any(x.exists() for x in c))
    assert missing == ["crates/demo/src/gone.rs", "missing.rs"], refs
    items = [(tok, item) for _, tok, item, _ in refs if item]
    assert items == [("crates/demo/src/lib.rs::tests::vanished", "tests::vanished")], refs
