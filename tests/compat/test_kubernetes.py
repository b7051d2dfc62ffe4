"""The command lines Tencent's COS CSI driver runs (README, "Kubernetes"): its launcher runs
`sh -c "cosfs BUCKET[:PATH] TARGET -ourl=URL -odbglevel=LEVEL -opasswd_file=FILE
ADDITIONAL_ARGS"` (facts from TencentCloud/kubernetes-csi-tencentcloud, driver/cosfs/mount.go
and cmd/cosfs/launcher/launcher.go). cosfs must take them as they are: parsed here, nothing is
mounted."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from cosfs import cli, optdocs, options

TARGET = "/var/lib/kubelet/pods/0f3c/volumes/kubernetes.io~csi/pv-cos/mount"
DRIVER_LINE = ("cosfs examplebucket-1250000000:/data " + TARGET + " -ourl=http://cos.ap-guangzhou.myqcloud.com "
               "-odbglevel=info -opasswd_file=/etc/csi-cos/cosfs/0f3c/examplebucket-1250000000_9a1b "
               "-oensure_diskfree=20480 -oallow_other")  # additional_args as the driver's README shows them
LAUNCH_SCRIPT_ARGS = ("-ocam_role=sts -oallow_other -ononempty -ocompat_dir -ouse_cache={cache} -odel_cache "
                      "-odisable_content_md5 -oensure_diskfree=128 -oparallel_count=32 -omultireq_max=32 "
                      "-omultipart_size=32 -f")


def parse(line: str):
    """What `cosfs` does with the launcher's command line up to the mount: argv, options."""
    argv = shlex.split(line)[1:]
    assert cli._first_positional(argv) not in cli.SUBCOMMANDS  # COSFS's form: `cosfs mount`
    args = cli.parse_command_line(cli.build_parser(), ["mount", *argv])
    return args, cli.parse_arguments(args)


def test_the_drivers_command_line_is_accepted():
    args, parsed = parse(DRIVER_LINE)
    assert cli.parse_source(args.bucket) == ("examplebucket-1250000000", "data/")
    assert args.mountpoint == Path(TARGET)
    values = parsed.values
    assert values["url"] == "http://cos.ap-guangzhou.myqcloud.com" and values["dbglevel"] == "info"
    assert values["ensure_diskfree"] == 20480 << 20 and values["allow_other"] is True
    assert values["passwd_file"].startswith("/etc/csi-cos/cosfs/")


def test_a_launch_scripts_options_mount_with_their_meaning(tmp_path):
    passwd = tmp_path / "passwd-sts"  # cam_role=sts: COSFS's STS form
    passwd.write_text("COSAccessKeyId=AKIDsts\nCOSSecretKey=stskey\nCOSAccessToken=token\n"
                      "COSAccessTokenExpire=2030-08-29T20:30:00\n")
    passwd.chmod(0o600)
    line = (f"cosfs examplebucket-1250000000 {TARGET} -ourl=http://cos.ap-guangzhou.myqcloud.com "
            f"-opasswd_file={passwd} " + LAUNCH_SCRIPT_ARGS.format(cache=tmp_path / "cache"))
    args, parsed = parse(line)
    settings = cli.mount_settings(args)  # settings only: nothing is mounted
    assert settings.cache_dir == tmp_path / "cache" / "examplebucket-1250000000" and settings.foreground
    assert settings.allow_other and settings.nonempty and settings.cos.content_md5 == "never"
    assert settings.fs.ensure_diskfree_bytes == 128 << 20 and settings.fs.part_size_bytes == 32 << 20
    assert settings.fs.parallel_fetches == 32 and settings.fs.listing_parallel == 32
    assert (logging.INFO, options.BY_NAME["compat_dir"].note) in settings.notes


def test_the_readme_table_covers_every_option_those_lines_use():
    used = {name for line in (DRIVER_LINE, LAUNCH_SCRIPT_ARGS) for word in shlex.split(line)
            if word.startswith("-o") for name, _ in options.split_o(word[2:])}
    assert used <= set(optdocs.CSI_OPTIONS)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert all(f"| `-o{name}` |" in readme for name in optdocs.CSI_OPTIONS)
