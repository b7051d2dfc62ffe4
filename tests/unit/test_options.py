import pytest

from cosfs import options
from cosfs.errors import ConfigError


def test_split_o():
    assert options.split_o("allow_other,url=http://h:1,uid=5") == [("allow_other", None), ("url", "http://h:1"), ("uid", "5")]
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
    assert options.parse_size("10", 1 << 20) == 10 << 20
    with pytest.raises(ValueError):
        options.parse_size("ten")


def test_every_option_is_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [opt.name for opt in options.OPTIONS if f"| `{opt.name}` |" not in readme]
    assert missing == []
