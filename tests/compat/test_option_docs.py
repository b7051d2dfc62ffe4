"""--help, the README's options tables and the man pages come from the one option table
(issue 21, section 5): the checked-in README region and man pages are what cosfs.optdocs makes
now, every option is in all three with the same default, and the defaults they state are what
cli.mount_settings applies."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from cosfs import cli, optdocs, options
from cosfs.namespace import root_attr

from .helpers import settings_for

REPO = Path(__file__).resolve().parents[2]


def mount_help(monkeypatch, capsys) -> str:
    monkeypatch.setenv("COLUMNS", "10000")  # one line per option
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["mount", "--help"])
    return capsys.readouterr().out


def help_entries(text: str) -> dict[str, str]:
    """--flag -> its --help entry (the flag's line and the help lines under it, joined)."""
    entries: dict[str, str] = {}
    flag = ""
    for line in text.splitlines():
        if line.startswith("  -"):
            flag = line.split()[0]
            entries[flag] = line
        elif line.startswith("    ") and flag:
            entries[flag] += " " + line.strip()
        else:
            flag = ""
    return entries


def readme_rows() -> dict[str, list[str]]:
    """Option name -> its README row's cells (option, from, default, what cosfs does)."""
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells
    return rows


def man_entries(name: str) -> dict[str, str]:
    """Option name -> its .TP entry in docs/man/NAME."""
    text = (REPO / "docs" / "man" / name).read_text()
    entries = {}
    for block in text.split(".TP\n")[1:]:
        match = re.match(r"\\fB\\-o ([\w\\-]+)\\fR", block)
        if match:
            entries[match.group(1).replace("\\-", "-")] = block
    return entries


def test_the_checked_in_docs_are_what_the_table_gives():
    assert optdocs.stale() == [], "run: .venv/bin/python -m cosfs.optdocs --write"


def test_every_option_is_in_help_readme_and_man_pages_with_one_default(monkeypatch, capsys):
    help_text = mount_help(monkeypatch, capsys)
    help_lines = help_entries(help_text)
    ignored = help_text[help_text.index("accepted and ignored:"):]
    rows = readme_rows()
    pages = [man_entries(name) for name in optdocs.MAN_PAGES]
    for opt in options.OPTIONS:
        default = optdocs.default_text(opt)
        flag = "--" + opt.name.replace("_", "-")
        if opt.group == "ignored":
            assert re.search(rf"\b{opt.name}\b", ignored) and flag not in help_lines, opt.name
            assert default == ""
        else:
            shown = f"(default: {default})" if default not in ("", "none") else "(default:"
            assert (shown in help_lines[flag]) == (default not in ("", "none")), (opt.name, help_lines[flag])
        assert rows[opt.name][2] == default.replace("|", "\\|"), opt.name
        for entries in pages:
            assert (f"Default: {default}." in entries[opt.name]) == bool(default), opt.name


def test_help_shows_sizes_and_leaves_the_ignored_options_compact(monkeypatch, capsys):
    text = mount_help(monkeypatch, capsys)
    assert "(default: 64 MiB)" in text and "(default: 2 GiB)" in text and "67108864" not in text
    groups = re.findall(r"^(\S[^\n]*):$", text, re.MULTILINE)
    assert [optdocs.TITLES[g][0] for g in options.GROUPS] == [g for g in groups if g not in ("options",
                                                                                            "positional arguments")]
    shown = help_entries(text)
    assert not any("--" + opt.name.replace("_", "-") in shown for opt in options.OPTIONS if opt.group == "ignored")
    assert len(shown) < len(options.OPTIONS) - 50  # the ~60 ignored ones are names in one paragraph


def test_the_stated_defaults_are_what_a_mount_applies():
    """Modes, owners and sizes: the docs' defaults against cli.mount_settings's settings."""
    plain = settings_for()
    assert optdocs.default_text(options.BY_NAME["default_permission"]) == "0777"
    assert plain.fs.default_file_mode == plain.fs.default_dir_mode == 0o777
    assert "0777 with allow_other, else 0700" in optdocs.default_text(options.BY_NAME["mp_umask"])
    assert stat.S_IMODE(root_attr(settings_for("allow_other").fs).mode) == 0o777
    assert stat.S_IMODE(root_attr(plain.fs).mode) == 0o700
    assert "else 0 (root)" in optdocs.default_text(options.BY_NAME["uid"]) and plain.fs.uid == plain.fs.gid == 0
    assert plain.fs.umask is None and optdocs.default_text(options.BY_NAME["umask"]).startswith("none")
    sizes = {"cache_size": plain.fs.cache_size_bytes, "block_size": plain.fs.block_size_bytes,
             "max_prefetch_bytes": plain.fs.max_readahead_bytes, "multipart_size": plain.fs.part_size_bytes,
             "max_readahead": plain.read_ahead_kb * 1024}
    for name, value in sizes.items():
        assert optdocs.default_text(options.BY_NAME[name]) == options.human_size(value), name
    assert optdocs.default_text(options.BY_NAME["ensure_diskfree"]) == "multipart_size"
    assert plain.fs.ensure_diskfree_bytes == plain.fs.part_size_bytes
    assert optdocs.default_text(options.BY_NAME["multipart_threshold"]) == "twice multipart_size"
    assert plain.fs.multipart_threshold_bytes == 2 * plain.fs.part_size_bytes
    assert optdocs.default_text(options.BY_NAME["stat_cache_expire"]) == f"{plain.fs.stat_ttl_s:g} s"
    assert optdocs.default_text(options.BY_NAME["attr_timeout"]) == "stat_cache_expire"
    assert plain.kernel_timeout_s == plain.fs.stat_ttl_s
    assert optdocs.default_text(options.BY_NAME["negative_cache_expire"]) == f"{plain.fs.negative_ttl_s:g} s"
    assert plain.cos.retries == 5 and optdocs.default_text(options.BY_NAME["retries"]) == "5"


def test_every_subcommand_is_in_the_man_page():
    page = (REPO / "docs" / "man" / "cosfs.1").read_text()
    for command in ("serve", "mount", "umount", "status", "sync", "discard"):
        assert f".B cosfs {command}" in page, command
    assert "\\-\\-retry\\-failed" in page and "\\-\\-watch" in page
