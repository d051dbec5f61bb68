"""The set-up files agree: environment.yml pins what requirements.txt pins, and the Makefile is what the
README and CI run."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins(lines: list[str]) -> dict[str, str]:
    """name -> version of every ``name==version`` line (comments and blanks ignored)."""
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"unpinned requirement {line!r}"
            out[name.strip().lower()] = version.strip()
    return out


def test_environment_yml_pins_requirements_txt() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pins(pip_section) == pins((ROOT / "requirements.txt").read_text().splitlines())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11"


def test_nodeps_requirements_stay_out_of_the_conda_pins() -> None:
    env_text = (ROOT / "environment.yml").read_text()
    for name in pins((ROOT / "requirements-nodeps.txt").read_text().splitlines()):
        assert f"{name}==" not in env_text  # installed with --no-deps, after the environment


def test_readme_quick_start_is_the_two_make_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quick, flags=re.S)
    commands = [line.split("#", 1)[0].strip() for b in blocks for line in b.splitlines() if line.strip()]
    assert commands == ["make book", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^book:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\s*phase .*make test", ci, flags=re.M)
