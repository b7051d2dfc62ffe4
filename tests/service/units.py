"""Reading the unit files in systemd/ as systemd does, closely enough for the tests: sections,
repeated keys, and command lines split into words with specifiers (%i, %f) and environment
variables (${VAR} stays one word, $VAR alone splits on spaces, $$ is a literal $) expanded."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

UNIT_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNIT_FILES = ("cosfs@.service", "mnt-cos.mount", "mnt-cos.automount", "cosfs-serve.service")


class Unit:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[tuple[str, str, str]] = []
        section = ""
        pending = ""
        for raw in path.read_text().splitlines():
            line = pending + raw.strip() if pending else raw.strip()
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not a key=value line: {line!r}"
            self.entries.append((section, key.strip(), value.strip()))

    def all(self, section: str, key: str) -> list[str]:
        return [value for sec, k, value in self.entries if sec == section and k == key]

    def get(self, section: str, key: str) -> str | None:
        values = self.all(section, key)
        return values[-1] if values else None

    def keys(self, section: str) -> set[str]:
        return {k for sec, k, _ in self.entries if sec == section}


def load(name: str) -> Unit:
    return Unit(UNIT_DIR / name)


_VARIABLE = re.compile(r"\$\$|\$\{(\w+)\}|\$(\w+)")


def command(line: str, *, instance: str = "", environment: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """An Exec*= value -> (prefix flags such as '-', argv) as systemd would run it."""
    environment = environment or {}
    flags = ""
    while line and line[0] in "-@+!:|":
        flags, line = flags + line[0], line[1:]
    argv: list[str] = []
    for word in shlex.split(line):
        word = _specifiers(word, instance)
        whole = re.fullmatch(r"\$(\w+)", word)
        if whole:  # $VAR as a word of its own: split on whitespace, gone when empty
            argv.extend(environment.get(whole.group(1), "").split())
            continue

        def substitute(match: re.Match) -> str:
            if match.group(0) == "$$":
                return "$"
            return environment.get(match.group(1) or match.group(2), "")

        argv.append(_VARIABLE.sub(substitute, word))
    return flags, argv


def _specifiers(word: str, instance: str) -> str:
    def replace(match: re.Match) -> str:
        letter = match.group(1)
        if letter == "%":
            return "%"
        if letter == "i":
            return instance
        if letter == "I":
            return unescape_path(instance).lstrip("/")
        if letter == "f":
            return unescape_path(instance)
        raise AssertionError(f"specifier %{letter} is not handled by this test helper")

    return re.sub(r"%(.)", replace, word)


def unescape_path(instance: str) -> str:
    """systemd-escape --unescape --path, for the escapes systemd-escape produces."""
    text = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), instance.replace("-", "/"))
    return "/" + text.strip("/")


def escape_path(path: str) -> str:
    """systemd-escape --path."""
    path = path.strip("/") or "-"
    if path == "-":
        return path
    out = []
    for index, char in enumerate(path):
        if char == "/":
            out.append("-")
        elif char.isascii() and (char.isalnum() or char in ":_" or (char == "." and index > 0)):
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(out)
