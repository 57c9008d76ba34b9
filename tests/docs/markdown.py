"""Code blocks of the documentation, found the way a reader finds them: by the heading they sit under."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A fence may be indented (a block inside a list item); its lines are dedented by the same amount.
_FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^ *```\s*$", re.S | re.M)


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` (a whole line such as ``## Quick start``) up to the next heading of the
    same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = markdown.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == heading]
    assert len(starts) == 1, f"{heading!r} appears {len(starts)} times"
    body: list[str] = []
    in_fence = False
    for line in lines[starts[0] + 1 :]:
        if line.lstrip(" ").startswith("```"):
            in_fence = not in_fence
        hashes = len(line) - len(line.lstrip("#"))
        if not in_fence and 0 < hashes <= level and line[hashes : hashes + 1] == " ":
            break
        body.append(line)
    return "".join(body)


def code_block(path: Path, heading: str, language: str = "python") -> str:
    """The first ``language`` code block under ``heading`` in ``path``."""
    found: list[tuple[str, str, str]] = _FENCE.findall(section(path.read_text(), heading))
    blocks = [textwrap.dedent(code) if indent else code for indent, lang, code in found if lang == language]
    assert blocks, f"no {language} block under {heading!r} in {path}"
    return blocks[0]
