"""The Python requirements are pinned with hashes (the image installs with pip --require-hashes)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement

API = Path(__file__).resolve().parents[1]
FILES = sorted(API.glob("requirements*.txt"))


def logical_lines(path: Path) -> list[str]:
    """The file's lines as pip reads them: continuations joined, comments and blanks dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [line for line in (re.sub(r"(^|\s)#.*", "", raw).strip() for raw in text.splitlines()) if line]


def test_the_dockerfile_installs_every_requirements_file_with_require_hashes():
    dockerfile = (API / "Dockerfile").read_text()
    installs = re.findall(r"pip install ([^\n\\]*)", dockerfile)
    assert installs, "no pip install in the Dockerfile"
    for install in installs:
        assert "--require-hashes" in install, install
    used = {name for install in installs for name in re.findall(r"-r (\S+)", install)}
    assert used == {"requirements.txt", "requirements-train.txt"}
    copied = re.search(r"^COPY (requirements[^\n]*) \./$", dockerfile, re.MULTILINE)
    assert copied, "the Dockerfile copies no requirements files"
    assert set(copied[1].split()) == used


def requirement_and_hashes(line: str) -> tuple[Requirement, list[str]]:
    """One requirement line, read with packaging's parser: the requirement and its --hash values."""
    words = shlex.split(line)
    options = [word for word in words if word.startswith("-")]
    spec = " ".join(word for word in words if not word.startswith("-"))
    hashes = []
    for option in options:
        name, _, value = option.partition("=")
        assert name == "--hash", f"unexpected option {option!r} in `{line}`"
        hashes.append(value)
    return Requirement(spec), hashes


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_every_requirement_is_pinned_with_a_sha256_hash(path: Path):
    requirements = [line for line in logical_lines(path) if not line.startswith("-r ")]
    assert requirements, f"{path.name} lists nothing"
    for line in requirements:
        requirement, hashes = requirement_and_hashes(line)
        (pin,) = requirement.specifier  # exactly one version clause
        assert pin.operator == "==", f"{path.name}: `{requirement}` is not an exact pin"
        assert "*" not in pin.version, f"{path.name}: `{requirement}` is not an exact pin"
        assert requirement.url is None, f"{path.name}: `{requirement}` is a URL"
        assert hashes, f"{path.name}: {requirement.name} has no --hash"
        for value in hashes:
            algorithm, _, digest = value.partition(":")
            assert algorithm == "sha256", f"{path.name}: {requirement.name}: only sha256 hashes"
            assert re.fullmatch(r"[0-9a-f]{64}", digest), f"{path.name}: {requirement.name} has a malformed hash"


def test_the_line_reader_refuses_ranges_and_other_hashes():
    digest = "a" * 64
    requirement, hashes = requirement_and_hashes(f"foo[extra]==1.0 --hash=sha256:{digest}")
    assert (requirement.name, str(requirement.specifier), hashes) == ("foo", "==1.0", [f"sha256:{digest}"])
    assert len(requirement_and_hashes(f"foo>=1,<2 --hash=sha256:{digest}")[0].specifier) == 2
    with pytest.raises(InvalidRequirement):
        requirement_and_hashes("foo = 1.0")


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_included_files_exist_and_are_hashed_too(path: Path):
    for line in logical_lines(path):
        if line.startswith("-r "):
            included = API / line.split()[1]
            assert included in FILES, f"{path.name} includes {included.name}, which is not a hashed requirements file"


def test_the_parser_sees_continuations_and_comments(tmp_path: Path):
    sample = tmp_path / "requirements-x.txt"
    sample.write_text("# header\n-r other.txt\nfoo==1.0 \\\n    --hash=sha256:" + "a" * 64 + "  # why\n\n")
    assert logical_lines(sample) == ["-r other.txt", "foo==1.0      --hash=sha256:" + "a" * 64]
