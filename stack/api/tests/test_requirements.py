"""The Python requirements are pinned with hashes (the image installs with pip --require-hashes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_every_requirement_is_pinned_with_a_sha256_hash(path: Path):
    requirements = [line for line in logical_lines(path) if not line.startswith("-r ")]
    assert requirements, f"{path.name} lists nothing"
    for line in requirements:
        name = line.split()[0]
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[^=\s]+", name), f"{path.name}: `{name}` is not an exact pin"
        digests = re.findall(r"--hash=sha256:([0-9a-f]+)", line)
        assert digests, f"{path.name}: {name} has no --hash"
        assert all(len(digest) == 64 for digest in digests), f"{path.name}: {name} has a malformed hash"
        assert len(re.findall(r"--hash=", line)) == len(digests), f"{path.name}: {name}: only sha256 hashes"


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
