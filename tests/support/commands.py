"""``colorize ...`` command lines as people read them in help examples and the README: joined over
``\\`` continuations, cut at ``&&``, ``|``, ``>``, ``#`` or an explanation after two spaces, split
like a shell."""

from __future__ import annotations

import re
import shlex
from typing import List


def colorize_commands(text: str) -> List[List[str]]:
    """Every ``colorize`` command in ``text`` as its argv after ``colorize``."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        for part in re.split(r"&&|;|\|", line):
            part = part.strip()
            if not part.startswith("colorize "):
                continue
            part = re.split(r"\s{2,}|\s#|\s->\s|\s>\s", part)[0]
            found.append(shlex.split(part)[1:])
    return found
