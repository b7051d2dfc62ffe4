"""The unit files in systemd/: systemd-analyze verify, and the lines that matter checked one by
one (the command lines are parsed with cosfs's own CLI parser)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cosfs import cli, options
from tests.service.units import UNIT_DIR, UNIT_FILES, command, escape_path, load, unescape_path

# Settings that give a unit its own mount namespace (systemd.exec(5), PrivateMounts=: "Other
# file system namespace unit settings ... also enable file system namespacing"): a FUSE mount
# made inside it would never be seen by the host.
MOUNT_NAMESPACE_SETTINGS = {
    "PrivateMounts", "PrivateTmp", "PrivateDevices", "ProtectSystem", "ProtectHome", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc", "ProcSubset",
    "ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths", "TemporaryFileSystem",
    "BindPaths", "BindReadOnlyPaths", "RootDirectory", "RootImage", "MountImages", "ExtensionImages",
    "ExtensionDirectories", "MountFlags", "LogNamespace", "DynamicUser", "PrivateUsers", "MountAPIVFS",
    "LoadCredential", "LoadCredentialEncrypted", "SetCredential", "SetCredentialEncrypted",
}

EXAMPLE_CONF = {"COSFS_BUCKET": "examplebucket-1250000000",
                "COSFS_OPTIONS": "url=https://cos.ap-guangzhou.myqcloud.com,allow_other"}


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (it verifies the units in systemd/ "
                    "offline; systemd need not be running)")
    for binary in ("/bin/fusermount3", "/bin/sh"):
        if not os.access(binary, os.X_OK):
            pytest.fail(f"{binary} is missing: the units run it (apt-get install fuse3 gives fusermount3)")
    # The template as is, and an instance of it (cosfs@mnt-cos.service, mounting /mnt/cos),
    # with /usr/local/bin/cosfs (where scripts/install.sh links it) replaced by this checkout's
    # cosfs: verify checks that the binary exists, and this checks the units, not the host.
    for name in UNIT_FILES:
        (tmp_path / name).write_text(_with_this_cosfs((UNIT_DIR / name).read_text()))
    (tmp_path / "cosfs@mnt-cos.service").write_text(_with_this_cosfs((UNIT_DIR / "cosfs@.service").read_text()))
    names = [*UNIT_FILES, "cosfs@mnt-cos.service"]
    result = _verify(analyze, tmp_path, names)
    assert result.returncode == 0 and not result.stderr.strip(), (
        f"systemd-analyze verify reported problems (exit {result.returncode}):\n{result.stderr}{result.stdout}")

    # The check is not vacuous: the same call reports a bad line and a missing binary.
    broken = tmp_path / "broken"
    broken.mkdir()
    text = (UNIT_DIR / "cosfs@.service").read_text()
    text = text.replace("Type=notify", "Type=notifyy").replace("/usr/local/bin/cosfs", "/nonexistent/cosfs")
    (broken / "cosfs@mnt-cos.service").write_text(text)
    result = _verify(analyze, broken, ["cosfs@mnt-cos.service"])
    assert "notifyy" in result.stderr and "/nonexistent/cosfs" in result.stderr, result.stderr


def _with_this_cosfs(text: str) -> str:
    return text.replace("/usr/local/bin/cosfs", str(Path(sys.executable).parent / "cosfs"))


def _verify(analyze: str, directory: Path, names: list[str]) -> subprocess.CompletedProcess:
    # --man=no: man pages of Documentation= are not looked up. --recursive-errors=no: only
    # these units are judged, not the host's copies of network-online.target and friends.
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "", "SYSTEMD_LOG_LEVEL": "notice"}
    return subprocess.run([analyze, "verify", "--man=no", "--recursive-errors=no", *[f"./{n}" for n in names]],
                          cwd=directory, env=env, capture_output=True, text=True, timeout=30)


def test_mount_service_runs_cosfs_in_the_foreground_as_a_notify_service() -> None:
    unit = load("cosfs@.service")
    assert unit.get("Service", "Type") == "notify"
    assert unit.get("Service", "NotifyAccess") == "main"
    assert unit.get("Service", "EnvironmentFile") == "/etc/cosfs/%i.conf"
    assert len(unit.all("Service", "ExecStart")) == 1
    raw = unit.get("Service", "ExecStart")
    assert raw == "/usr/local/bin/cosfs mount ${COSFS_BUCKET} %f -f -o ${COSFS_OPTIONS}"

    flags, argv = command(raw, instance="mnt-cos", environment=EXAMPLE_CONF)
    assert flags == ""
    assert argv == ["/usr/local/bin/cosfs", "mount", "examplebucket-1250000000", "/mnt/cos", "-f", "-o",
                    "url=https://cos.ap-guangzhou.myqcloud.com,allow_other"]
    # cosfs's own parser reads it as a foreground mount of that bucket on /mnt/cos.
    args = cli.build_parser().parse_args(argv[1:])
    assert args.command == "mount" and args.short_foreground
    assert args.bucket == "examplebucket-1250000000" and args.mountpoint == Path("/mnt/cos")
    values = options.parse_options(options.split_o(",".join(args.o)))
    assert values["url"] == "https://cos.ap-guangzhou.myqcloud.com" and values["allow_other"] is True
    # COSFS_OPTIONS unset: `-o ""`, which cosfs accepts as no options.
    _, argv = command(raw, instance="mnt-cos", environment={"COSFS_BUCKET": "b-1250000000"})
    assert argv[-2:] == ["-o", ""]
    assert options.split_o(cli.build_parser().parse_args(argv[1:]).o[0]) == []


def test_mount_service_lifecycle_lines() -> None:
    unit = load("cosfs@.service")
    service = "Service"
    # SIGTERM unmounts cleanly, so there is no ExecStop (fusermount3 -u would fail on a busy mount).
    assert not unit.all(service, "ExecStop")
    assert unit.get(service, "KillSignal") in (None, "SIGTERM")
    assert unit.get(service, "KillMode") == "mixed"
    assert unit.get(service, "Restart") == "on-failure"
    assert unit.get(service, "RestartSec") == "5"
    assert _seconds(unit.get(service, "TimeoutStopSec")) >= 10 * 60
    # A dead mount is always cleaned up after the daemon is gone, and before a start.
    for key in ("ExecStopPost", "ExecStartPre"):
        (line,) = unit.all(service, key)
        flags, argv = command(line, instance="mnt-cos")
        assert flags == "-", f"{key} must not fail the unit"
        assert "/bin/fusermount3 -uz" in argv[2] and argv[-1] == "/mnt/cos"
    assert "network-online.target" in unit.get("Unit", "After").split()
    assert "network-online.target" in unit.get("Unit", "Wants").split()
    assert unit.get(service, "CacheDirectory") == "cosfs"
    assert unit.get("Install", "WantedBy")


def test_mount_service_hardening_keeps_the_mount_visible_and_fuse_usable() -> None:
    unit = load("cosfs@.service")
    used = unit.keys("Service") & MOUNT_NAMESPACE_SETTINGS
    assert not used, f"{sorted(used)} would put the mount in a private namespace the host never sees"
    capabilities = unit.get("Service", "CapabilityBoundingSet").split()
    assert "CAP_SYS_ADMIN" in capabilities
    if unit.get("Service", "DevicePolicy") in ("closed", "strict"):
        assert "/dev/fuse rw" in unit.all("Service", "DeviceAllow")
    families = unit.get("Service", "RestrictAddressFamilies").split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)  # sd_notify, HTTP(S)


def test_mount_and_automount_units() -> None:
    mount = load("mnt-cos.mount")
    where = mount.get("Mount", "Where")
    assert where == "/mnt/cos" and escape_path(where) + ".mount" == "mnt-cos.mount"
    assert mount.get("Mount", "Type") == "fuse.cosfs"
    assert mount.get("Mount", "What") == "examplebucket-1250000000"
    mount_options = mount.get("Mount", "Options")
    assert "_netdev" in mount_options.split(",")
    # mount.fuse.cosfs gets these as -o: every one must be an option cosfs accepts.
    values = options.parse_options(options.split_o(mount_options))
    assert values["url"] and values["allow_other"] is True
    automount = load("mnt-cos.automount")
    assert automount.get("Automount", "Where") == where
    assert automount.get("Install", "WantedBy")


def test_escaping_matches_systemd_escape() -> None:
    paths = ["/mnt/cos", "/srv/cos-data/a b", "/home/alice/.cos"]
    for path in paths:
        assert unescape_path(escape_path(path)) == path
    tool = shutil.which("systemd-escape")
    if tool:
        out = subprocess.run([tool, "--path", *paths], capture_output=True, text=True, check=True).stdout.split()
        assert out == [escape_path(p) for p in paths]


def test_serve_unit_command_line() -> None:
    unit = load("cosfs-serve.service")
    service = "Service"
    assert unit.get(service, "EnvironmentFile") == "/etc/cosfs/serve.env"
    assert unit.get(service, "DynamicUser") == "yes"
    assert unit.get(service, "StateDirectory") == "cosfs-serve"
    assert unit.get(service, "CapabilityBoundingSet") == ""
    environment = {"COSFS_SERVE_SECRET_ID": "AKIDexample", "COSFS_SERVE_SECRET_KEY": "secret",
                   "COSFS_SERVE_ARGS": "--bucket a-1250000000 --bucket b-1250000000"}
    _, argv = command(unit.get(service, "ExecStart"), environment=environment)
    assert argv[:2] == ["/usr/local/bin/cosfs", "serve"]
    args = cli.build_parser().parse_args(argv[1:])
    assert args.root == "/var/lib/cosfs-serve" and args.address == "127.0.0.1:9000"
    # The key reaches the server through the environment the unit passes on, never argv.
    assert args.secret_id == "AKIDexample" and args.secret_key is None and "secret" not in argv
    assert args.bucket == ["a-1250000000", "b-1250000000"]
    # Without COSFS_SERVE_ARGS the extra words disappear instead of becoming an empty argument.
    del environment["COSFS_SERVE_ARGS"]
    _, argv = command(unit.get(service, "ExecStart"), environment=environment)
    assert "" not in argv and cli.build_parser().parse_args(argv[1:]).bucket == []


def test_serve_unit_refuses_to_start_without_keys() -> None:
    unit = load("cosfs-serve.service")
    (line,) = unit.all("Service", "ExecStartPre")
    flags, argv = command(line)
    assert flags == ""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    missing = subprocess.run(argv, env={**base, "COSFS_SERVE_SECRET_ID": "AKIDx"}, capture_output=True, text=True)
    assert missing.returncode != 0 and "COSFS_SERVE_SECRET_KEY" in missing.stderr
    given = subprocess.run(argv, env={**base, "COSFS_SERVE_SECRET_ID": "AKIDx", "COSFS_SERVE_SECRET_KEY": "k"},
                           capture_output=True, text=True)
    assert given.returncode == 0, given.stderr


def _seconds(text: str | None) -> float:
    assert text, "missing time span"
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*([a-z]*)", text):
        total += int(number) * units[unit or "s"]
    return total
