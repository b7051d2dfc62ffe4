import logging

import pytest

from cosfs import options
from cosfs.errors import ConfigError


def test_split_o():
    assert options.split_o("allow_other,url=http://h:1,uid=5") == [("allow_other", None), ("url", "http://h:1"),
                                                                 ("uid", "5")]
    assert options.split_o("a=x\\,y,,b") == [("a", "x,y"), ("b", None)]


def test_defaults_and_overrides():
    values = options.parse_options([("stat_cache_expire", "5"), ("umask", "027"), ("cache_size", "512M"),
                                    ("multipart_size", "16"), ("ro", None), ("_netdev", None),
                                    ("x-systemd.automount", None), ("dbglevel", "info")])
    assert values["stat_cache_expire"] == 5.0
    assert values["umask"] == 0o027
    assert values["cache_size"] == 512 * 1024 * 1024
    assert values["multipart_size"] == 16 * 1024 * 1024  # COSFS: bare multipart_size is MB
    assert values["ro"] is True
    assert values["dbglevel"] == "info"
    assert values["allow_other"] is False


@pytest.mark.parametrize("pairs,fragment", [
    ([("no_such_option", None)], "unknown option 'no_such_option'"),
    ([("uid", "abc")], "uid"),
    ([("umask", "9")], "octal"),
    ([("url", None)], "needs a value"),
    ([("allow_other", "maybe")], "flag"),
    ([("dbglevel", "loud")], "dbglevel"),
])
def test_errors_name_the_option(pairs, fragment):
    with pytest.raises(ConfigError) as info:
        options.parse_options(pairs)
    assert fragment in str(info.value)


def test_sizes():
    assert options.parse_size("1G") == 1 << 30
    assert options.parse_size("64k") == 65536
    assert options.parse_size("2TiB") == 2 << 40
    assert options.parse_size("10", 1 << 20) == 10 << 20
    with pytest.raises(ValueError):
        options.parse_size("ten")


def test_aliases_notes_kernel_options():
    parsed = options.parse_options([("use_cache", "/c"), ("parallel_upload", "3"), ("nodnscache", None),
                                    ("nocopyapi", None), ("noexec", None), ("nosuid", "0"), ("max_read", "4096"),
                                    ("iam_role", None)])
    assert parsed["cache_dir"] == "/c" and parsed["parallel_count"] == 3 and parsed["cam_role"] == "auto"
    assert {"cache_dir", "parallel_count", "cam_role"} <= parsed.given
    assert [level for level, _ in parsed.notes] == [logging.INFO, logging.WARNING]
    assert parsed.kernel == ["noexec", "max_read=4096"]  # nosuid=0 asks for nothing


def test_max_readahead_is_bytes_as_in_libfuse():
    assert options.parse_options([("max_readahead", "131072")])["max_readahead"] == 131072  # not 128 GiB


def test_every_option_is_in_the_readme_table_with_what_cosfs_does():
    """One row per option (COSFS's, s3fs's, FUSE's and cosfs's own), saying which of the five
    treatments it gets: implemented, alias, logged note, kernel option, refusal."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in readme.splitlines()
            if line.startswith("| `")}
    missing = [opt.name for opt in options.OPTIONS if opt.name not in rows]
    assert missing == []
    for opt in options.OPTIONS:
        does = rows[opt.name].split("|")[4]
        if opt.kind == "refuse":
            assert "refused" in does, opt.name
        elif opt.target:
            assert f"same as `{opt.target}`" in does, opt.name
        elif opt.note:
            assert "accepted, logged" in does and ("(warning)" in does) == (opt.note_level == logging.WARNING), opt.name
        elif opt.kernel:
            assert "passed to the kernel mount" in does, opt.name
        assert opt.origin in rows[opt.name].split("|")[2], opt.name
