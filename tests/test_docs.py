"""The docs hold together (issue 10): the system model is in the repository and every reference
points at it, links resolve, the papers are cited, LICENSE and CITATION.cff are valid, and the
notebook builder and notebook 03's legend behave."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from sfsim import __version__

from .conftest import load_module

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "docs" / "model.md"
PAPERS = {  # arXiv id -> a piece of the title
    "2506.02940": "Memory-Efficient Split Federated Learning for LLM Fine-Tuning",
    "2508.06765": "Fed MobiLLM",
    "2503.18986": "SplitFrozen",
}


def _sources() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for folder, pattern in (("sfsim", "*.py"), ("analysis", "*.py"), ("scenarios", "*.yaml"),
                            ("notebooks", "*.py"), ("benchmarks", "*.py")):
        files += sorted((ROOT / folder).rglob(pattern))
    return files


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _model_sections() -> set[int]:
    return {int(m) for m in re.findall(r"^## (\d+)\. ", MODEL.read_text(), flags=re.M)}


def test_no_reference_to_a_model_page_outside_the_repository() -> None:
    stale = re.compile(r"shared/design|design/model\.md|model page|of the system model")
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in _sources()
            for i, line in enumerate(p.read_text().splitlines(), 1) if stale.search(line)]
    assert not hits, "\n".join(hits)


def test_every_model_section_reference_exists() -> None:
    sections = _model_sections()
    assert sections >= set(range(1, 10))
    refs = re.compile(r"model(?:\.md)?\]?(?:\([^)]*\))? §(\d+)|model \[?§(\d+)")
    seen = 0
    for p in _sources():
        for i, line in enumerate(p.read_text().splitlines(), 1):
            for m in refs.finditer(line):
                seen += 1
                n = int(m.group(1) or m.group(2))
                assert n in sections, f"{p.relative_to(ROOT)}:{i}: model §{n} does not exist"
    assert seen >= 8  # README, docs and docstrings cite sections of the model


def test_relative_links_and_anchors_resolve() -> None:
    link = re.compile(r"\]\(([^)\s]+)\)")
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in link.findall(doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            assert dest.exists(), f"{doc.name}: broken link {target}"
            if anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.M)
                assert anchor in {_slug(h) for h in headings}, f"{doc.name}: no anchor {target}"


@pytest.mark.parametrize("doc", ["README.md", "docs/schemes.md", "docs/model.md"])
def test_the_three_papers_are_cited(doc: str) -> None:
    text = " ".join((ROOT / doc).read_text().split())  # titles wrap across lines
    for arxiv, title in PAPERS.items():
        assert arxiv in text and title in text, (doc, arxiv)
    for author in ("Xiaopei Chen", "Xingke Yang", "Miao Pan", "Jian Ma", "Xiaofeng Tao"):
        assert author in text, (doc, author)


def test_license_is_mit_as_pyproject_says() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text


def test_citation_cff_is_complete() -> None:
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):  # required by CFF 1.2.0
        assert cff[key], key
    assert all(isinstance(a, dict) and (a.get("name") or a.get("family-names"))
               for a in cff["authors"])
    assert cff["version"] == __version__ and cff["license"] == "MIT"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", cff["date-released"])
    allowed = {"abstract", "authors", "cff-version", "commit", "contact", "date-released", "doi",
               "identifiers", "keywords", "license", "license-url", "message",
               "preferred-citation", "references", "repository", "repository-artifact",
               "repository-code", "title", "type", "url", "version"}
    assert set(cff) <= allowed
    cited = set()
    for ref in cff["references"]:
        assert ref["type"] and ref["title"] and ref["authors"]
        assert all(a["family-names"] and a["given-names"] for a in ref["authors"])
        cited |= {i["value"].removeprefix("arXiv:") for i in ref["identifiers"]}
    assert cited == set(PAPERS)


def test_build_notebooks_help() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "notebooks" / "build_notebooks.py"),
                           "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and "folder" in done.stdout


def test_notebook_03_server_legend_lists_every_kind_shown() -> None:
    """Run notebook 03's cells here up to its per-scheme server-memory figure."""
    import matplotlib

    matplotlib.use("Agg")
    builder = load_module(ROOT / "notebooks" / "build_notebooks.py", "_build_notebooks")
    ns: dict[str, object] = {}
    for src in builder.MEMORY:
        if builder._is_markdown(src):
            continue
        code = "\n".join(line for line in src.splitlines() if not line.startswith("%"))
        exec(compile(code, "notebook 03", "exec"), ns)  # our own notebook cells
        if "stackplot" in src:
            break
    fig, runs = ns["fig"], ns["runs"]
    legend = [t.get_text() for leg in [*fig.legends, *(a.get_legend() for a in fig.axes)]
              if leg is not None for t in leg.get_texts()]
    drawn = set()  # kinds the server holds at some time, in any scheme's run
    for r in runs.values():  # type: ignore[attr-defined]
        server = r.memory[r.memory["owner"] == "server"]
        for kind, rows in server.groupby("kind"):
            if (rows["delta_bytes"].cumsum() > 0).any():
                drawn.add(kind)
    assert len(drawn) > 2  # the schemes together show more kinds than any one of them
    assert sorted(legend) == sorted(drawn)
