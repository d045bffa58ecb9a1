"""README.md and docs/ say what the tree holds: its dashboards, paths, make targets and commands."""

from __future__ import annotations

import json
import re

import yaml

from agent.cli import _parser
from tests.conftest import PACKAGES, PACKAGES_DIR, ROOT

README = (ROOT / "README.md").read_text()
KIND_PAGES = sorted((PACKAGES_DIR / "collectors").glob("*/README.md"))  # where the wheel installed them
DOCS = {**{path.relative_to(ROOT).as_posix(): path.read_text()
           for path in [ROOT / "README.md", ROOT / "tests" / "lab" / "README.md", *(ROOT / "docs").rglob("*.md")]},
        **{path.relative_to(PACKAGES_DIR).as_posix(): path.read_text() for path in KIND_PAGES}}


def code(markdown: str) -> str:
    """The code blocks and inline code of a markdown text, where commands are written."""
    return "\n".join(re.findall(r"^```\w*\n(.*?)^```", markdown, re.M | re.S) + re.findall(r"`([^`\n]+)`", markdown))


def deploying(part: str) -> str:
    """The README's bullet on one part of deploy/, under "Deploying it"."""
    return re.search(rf"^- `deploy/{part}`:.*?(?=^\S)", README, re.M | re.S).group(0)


def test_the_readme_names_every_dashboard_and_rules_file():
    named = set(re.findall(r"`(vigil / [^`]+)`", deploying("grafana/")))
    shipped = {json.loads(path.read_text())["title"] for path in (ROOT / "deploy" / "grafana" / "dashboards").iterdir()}
    assert named == shipped
    named = set(re.findall(r"`(\w+\.yml)`", deploying("prometheus/vigil.yml")))
    assert named == {path.name for path in (ROOT / "deploy" / "prometheus" / "rules").iterdir()}


def test_every_path_the_docs_name_exists():
    """The packages' files where they are installed, the rest in the tree; `<area>` and the
    walk-through's kind `foo` (docs/contributing.md) stand for any, and the folder it shows,
    collectors/counting/, is tests/skeleton/."""
    top = "|".join((*PACKAGES, "deploy", "docs", "tests", "bench"))
    named = {(name, path.replace("collectors/counting", "tests/skeleton")) for name, text in DOCS.items()
             for path in re.findall(rf"(?<![\w/.-])((?:{top})/[\w./-]*[\w/])(?![\w./<-])", text) if "foo" not in path}
    missing = [f"{name}: {path}" for name, path in sorted(named)
               if not ((PACKAGES_DIR if path.split("/")[0] in PACKAGES else ROOT) / path).exists()]
    assert len(named) > 50 and not missing, missing


def test_every_kind_page_says_what_the_code_does():
    """Each collectors/<family>/README.md's sample config, metrics and alerts are made from the code."""
    from agent import kindpage, registry

    assert len(KIND_PAGES) == len({registry.COLLECTORS[kind].split(".")[1] for kind in registry.COLLECTORS})
    assert not kindpage.stale(), "a kind page is stale: run `make docs`"
    for kind in registry.COLLECTORS:
        sample = yaml.safe_load(kindpage.sample(registry.collector_class(kind).Config))
        assert sample["targets"][0]["kind"] == kind, "the sample is YAML, with the kind's required keys"


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([\w./$()-]+):", (ROOT / "Makefile").read_text(), re.M))
    targets = {target.replace("$(VENV)", ".venv") for target in targets}
    named = set(re.findall(r"^\s*make ([\w./-]*\w)", code(README), re.M))
    assert named and named <= targets, named - targets


def test_every_vigil_command_the_readme_names_exists():
    commands = set(_parser()._subparsers._group_actions[0].choices)
    named = set(re.findall(r"(?:^|[\s/`])vigil ([a-z][a-z-]+)", code(README), re.M))
    assert {"run", "check-config", "once", "web"} <= named <= commands, named - commands
