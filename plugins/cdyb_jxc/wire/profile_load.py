"""Reading a profile file for :mod:`cdyb_jxc.wire.profile` (no Airflow): size, UTF-8, nesting, TOML.

Every failure raises :class:`ProfileError` naming the file, never a traceback: a profile of megabytes or
nested thousands deep is a mistake, and ``tomllib`` recurses once per level.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from cdyb_jxc.exceptions import ProfileError

MAX_FILE_BYTES = 1024 * 1024  # the packaged profile is ~12 KB; a profile of megabytes is a mistake
MAX_NESTING = 32  # brackets deep; the packaged profile needs 3


def read_default() -> tuple[str, str]:
    """The packaged default profile's text and its name for messages."""
    ref = resources.files("cdyb_jxc").joinpath("data/default_profile.toml")
    return ref.read_text(encoding="utf-8"), "default_profile.toml"


def read_file(path: str) -> tuple[str, str]:
    """A profile file's text and its path for messages, refused above :data:`MAX_FILE_BYTES`.

    :param path: the TOML profile file
    """
    file = Path(path)
    if not file.is_file():
        raise ProfileError(f"profile file {path} does not exist")
    try:
        with file.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ProfileError(f"profile file {path} is larger than {MAX_FILE_BYTES} bytes")
        return data.decode("utf-8"), str(file)
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(f"profile file {path} cannot be read as UTF-8: {err}") from err


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """Parse a profile's TOML text, refusing nesting deeper than :data:`MAX_NESTING` first.

    :param text: the TOML text
    :param source: where it came from, for messages
    """
    depth, line = nesting_depth(text)
    if depth > MAX_NESTING:
        raise ProfileError(
            f"profile file {source} nests lists or tables {depth} deep at line {line} (at most {MAX_NESTING})"
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"profile file {source} is not valid TOML: {err}") from err
    except RecursionError as err:  # the depth scan should have caught it; never a traceback
        raise ProfileError(f"profile file {source} nests lists or tables too deep") from err


def nesting_depth(source: str) -> tuple[int, int]:
    """The deepest bracket nesting of a TOML text and the line where it is reached, ignoring strings and
    comments. Run before parsing: ``tomllib`` recurses once per level.

    :param source: the TOML text
    """
    depth = deepest = deepest_line = 0
    line, i, n = 1, 0, len(source)
    while i < n:
        char = source[i]
        if char == "\n":
            line += 1
        elif char == "#":
            end = source.find("\n", i)
            i = n if end < 0 else end
            continue
        elif char in "\"'":
            quote = source[i : i + 3] if source[i : i + 3] in ('"""', "'''") else char
            end = _string_end(source, i + len(quote), quote)
            line += source.count("\n", i, end)
            i = end
            continue
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest, deepest_line = depth, line
        elif char in "]}":
            depth -= 1
        i += 1
    return deepest, deepest_line


def _string_end(source: str, start: int, quote: str) -> int:
    """Index just past the string that opened before ``start`` (escapes only in ``"`` strings)."""
    i, n = start, len(source)
    while i < n:
        if quote[0] == '"' and source[i] == "\\":
            i += 2
            continue
        if source.startswith(quote, i):
            return i + len(quote)
        if len(quote) == 1 and source[i] == "\n":
            return i  # an unterminated one-line string: tomllib reports it
        i += 1
    return n
