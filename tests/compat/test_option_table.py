"""Every option COSFS's parser and s3fs's manual know, and the FUSE options of real fstab
lines, with what cosfs does with each: a check of the configuration it leads to, a logged
note (accepted; cosfs does something else), a kernel mount option, or a refusal. The lists are
facts taken from tencentyun/cosfs src/s3fs.cpp (my_fuse_opt_proc; v1.0.25 adds the options
marked so) and s3fs-fuse's doc/man/s3fs.1.in; the tests keep options.py and them in step."""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

import pytest

from cosfs import cli, options
from cosfs.credentials import AnonymousCredentials, CvmRoleCredentials, StaticCredentials
from cosfs.errors import ConfigError
from cosfs.mount import fuse_options

from .helpers import PASSWD, settings_for

MiB = 1 << 20

COSFS_PARSED = {
    "uid", "gid", "umask", "allow_other", "mp_umask", "default_acl", "retries", "use_cache", "del_cache",
    "multireq_max", "max_prefetch_bytes", "nonempty", "nomultipart", "noxattr", "use_rrs", "storage_class",
    "use_sse", "load_sse_c", "ssl_verify_hostname", "passwd_file", "cam_role", "public_bucket", "host",
    "servicepath", "no_check_certificate", "connect_timeout", "readwrite_timeout", "max_stat_cache_size",
    "stat_cache_expire", "enable_noobj_cache", "nodnscache", "nosscache", "parallel_count", "parallel_upload",
    "fd_page_size", "multipart_size", "ensure_diskfree", "singlepart_copy_limit", "ahbe_conf", "noxmlns", "xmlns",
    "nocopyapi", "norenameapi", "enable_content_md5", "url", "default_permission", "endpoint",
    "use_path_request_style", "dbglevel", "f2", "curldbg", "accessKeyId", "secretAccessKey",
    # added by later COSFS versions (up to v1.0.25)
    "cam_role_endpoint", "disable_content_md5", "noflush_in_other_proc", "enable_clientinfo", "instance_name",
    "list_object_max_keys", "tmpdir", "user_agent_suffix",
}
S3FS_PARSED = {
    "bucket", "default_acl", "retries", "tmpdir", "use_cache", "check_cache_dir_exist", "del_cache",
    "storage_class", "use_rrs", "use_sse", "load_sse_c", "passwd_file", "ahbe_conf", "profile", "public_bucket",
    "connect_timeout", "readwrite_timeout", "list_object_max_keys", "max_stat_cache_size", "stat_cache_expire",
    "stat_cache_interval_expire", "disable_noobj_cache", "enable_noobj_cache", "no_check_certificate",
    "ssl_verify_hostname", "ssl_client_cert", "nodnscache", "nosscache", "multireq_max", "parallel_count",
    "multipart_size", "multipart_copy_size", "max_dirty_data", "bucket_size", "ensure_diskfree",
    "free_space_ratio", "multipart_threshold", "singlepart_copy_limit", "host", "servicepath", "url", "endpoint",
    "sigv2", "sigv4", "mp_umask", "umask", "uid", "gid", "allow_other", "nonempty", "nomultipart",
    "streamupload", "max_thread_count", "enable_content_md5", "enable_unsigned_payload", "ecs", "iam_role",
    "imdsv1only", "ibm_iam_auth", "ibm_iam_endpoint", "credlib", "credlib_opts", "use_xattr", "noxmlns",
    "nomixupload", "nocopyapi", "norenameapi", "use_path_request_style", "listobjectsv2", "noua", "insecure_logging",
    "cipher_suites", "instance_name", "complement_stat", "compat_dir", "notsup_compat_dir", "use_wtf8",
    "use_session_token", "requester_pays", "mime", "proxy", "proxy_cred_file", "ipresolve", "logfile",
    "dbglevel", "curldbg", "no_time_stamp_msg", "set_check_cache_sigusr1", "update_parent_dir_stat",
    "enable_negative_cache",
}
FUSE_OPTIONS = {
    "allow_other", "allow_root", "default_permissions", "ro", "rw", "kernel_cache", "auto_cache",
    "noauto_cache", "attr_timeout", "entry_timeout", "negative_timeout", "ac_attr_timeout", "max_write",
    "max_read", "max_readahead", "direct_io", "fsname", "subtype", "auto_unmount", "use_ino", "readdir_ino",
    "intr", "intr_signal", "debug", "big_writes", "large_read", "hard_remove", "remember", "max_background",
    "congestion_threshold", "async_read", "sync_read", "atomic_o_trunc", "splice_read", "splice_write",
    "splice_move", "no_remote_lock", "writeback_cache", "noexec", "exec", "nosuid", "suid", "nodev", "dev",
    "sync", "async", "dirsync", "noatime", "atime",
}


def sse_keyfile() -> Path:
    path = PASSWD.with_name("sse.keys")
    path.write_text("k" * 32 + "\n")
    path.chmod(0o600)
    return path


def ahbe_file() -> Path:
    path = PASSWD.with_name("ahbe.conf")
    path.write_text(".gz Content-Encoding gzip\n")
    return path


def mime_file() -> Path:
    path = PASSWD.with_name("mime.types")
    path.write_text("application/x-cosfs-test cosfstest\n")
    return path


def fuse(settings) -> set[str]:
    return fuse_options(settings)


# name -> (option text, check of the MountSettings it gives). Noted, kernel and refused
# options are checked generically below.
CHECKS = {
    "uid": ("uid=1234", lambda s: s.fs.force_uid == 1234 and s.fs.uid == 1234),
    "gid": ("gid=99", lambda s: s.fs.force_gid == 99 and s.fs.gid == 99),
    "umask": ("umask=022", lambda s: s.fs.umask == 0o022),
    "allow_other": ("allow_other", lambda s: s.allow_other and s.fs.allow_other and "allow_other" in fuse(s)),
    "allow_root": ("allow_root", lambda s: "allow_root" in fuse(s)),
    "mp_umask": ("mp_umask=027", lambda s: s.fs.mp_umask == 0o027 and s.fs.mp_umask_set),
    "retries": ("retries=3", lambda s: s.cos.retries == 3),
    "use_cache": ("use_cache=/srv/cache", lambda s: s.cache_dir.parent == Path("/srv/cache")),
    "del_cache": ("del_cache", lambda s: not (s.cache_dir / "blocks").exists()),
    "max_prefetch_bytes": ("max_prefetch_bytes=1048576", lambda s: s.fs.max_readahead_bytes == MiB),
    "nonempty": ("nonempty", lambda s: s.nonempty),
    "nomultipart": ("nomultipart", lambda s: s.fs.multipart_threshold_bytes == 5 << 30),
    "noxattr": ("noxattr", lambda s: not s.fs.xattrs),
    "use_xattr": ("use_xattr", lambda s: s.fs.xattrs),
    "use_rrs": ("use_rrs", lambda s: s.cos.storage_class == "STANDARD" and warned(s, "storage_class")),
    "storage_class": ("storage_class=maz_intelligent_tiering", lambda s: s.cos.storage_class ==
                      "MAZ_INTELLIGENT_TIERING"),
    "use_sse": ("use_sse", lambda s: s.cos.server_side_encryption == "AES256"),
    "load_sse_c": (lambda: f"load_sse_c={sse_keyfile()}", lambda s: s.cos.sse_customer_key == b"k" * 32),
    "ssl_verify_hostname": ("ssl_verify_hostname=0", lambda s: s.cos.verify_hostname is False),
    "passwd_file": (f"passwd_file={PASSWD}", lambda s: isinstance(s.credentials, StaticCredentials)),
    "cam_role": ("cam_role=myrole", lambda s: isinstance(s.credentials, CvmRoleCredentials)
                 and s.credentials._role == "myrole"),
    "cam_role_endpoint": ("cam_role=auto,cam_role_endpoint=http://127.0.0.1:1/meta",
                          lambda s: s.credentials._base_url == "http://127.0.0.1:1/meta"),
    "iam_role": ("iam_role", lambda s: isinstance(s.credentials, CvmRoleCredentials) and s.credentials._role is None),
    "public_bucket": ("public_bucket=1", lambda s: isinstance(s.credentials, AnonymousCredentials)),
    "host": ("host=http://127.0.0.1:8000", lambda s: s.cos.endpoint_url == "http://127.0.0.1:8000"),
    "url": ("url=cos.ap-beijing.myqcloud.com", lambda s: s.cos.endpoint_url == "https://cos.ap-beijing.myqcloud.com"
            and warned(s, "no scheme")),
    "servicepath": ("servicepath=/gateway/", lambda s: s.cos.endpoint_url == "http://127.0.0.1:9/gateway"),
    "endpoint": ("endpoint=ap-beijing", lambda s: s.cos.region == "ap-beijing"),
    "no_check_certificate": ("no_check_certificate", lambda s: s.cos.verify_tls is False),
    "connect_timeout": ("connect_timeout=5", lambda s: s.cos.connect_timeout_s == 5),
    "readwrite_timeout": ("readwrite_timeout=7", lambda s: s.cos.read_timeout_s == 7),
    "max_stat_cache_size": ("max_stat_cache_size=500", lambda s: s.fs.max_stat_entries == 500),
    "stat_cache_expire": ("stat_cache_expire=30", lambda s: s.fs.stat_ttl_s == 30 and s.kernel_timeout_s == 30),
    "stat_cache_interval_expire": ("stat_cache_interval_expire=30", lambda s: s.fs.stat_ttl_s == 30),
    "enable_noobj_cache": ("enable_noobj_cache", lambda s: s.fs.negative_ttl_s > 0),
    "disable_noobj_cache": ("disable_noobj_cache", lambda s: s.fs.negative_ttl_s == 0),
    "enable_negative_cache": ("enable_negative_cache", lambda s: s.fs.negative_ttl_s > 0),
    "parallel_count": ("parallel_count=3", lambda s: s.fs.parallel_fetches == 3),
    "multireq_max": ("multireq_max=50", lambda s: s.fs.listing_parallel == 50 and s.cos.max_connections >= 50),
    "parallel_upload": ("parallel_upload=4", lambda s: s.fs.parallel_fetches == 4),
    "multipart_size": ("multipart_size=10", lambda s: s.fs.part_size_bytes == 10 * MiB),
    "multipart_threshold": ("multipart_threshold=50", lambda s: s.fs.multipart_threshold_bytes == 50 * MiB),
    "ensure_diskfree": ("ensure_diskfree=100", lambda s: s.fs.ensure_diskfree_bytes == 100 * MiB),
    "free_space_ratio": ("free_space_ratio=1", lambda s: s.fs.ensure_diskfree_bytes >= 8 * MiB),
    "ahbe_conf": (lambda: f"ahbe_conf={ahbe_file()}", lambda s: s.cos.extra_headers == ((".gz", "Content-Encoding",
                                                                                            "gzip"),)),
    "enable_content_md5": ("enable_content_md5", lambda s: s.cos.content_md5 == "always"),
    "disable_content_md5": ("disable_content_md5", lambda s: s.cos.content_md5 == "never"),
    "default_permission": ("default_permission=750", lambda s: s.fs.default_permission == 0o750
                           and s.fs.default_file_mode == 0o750),
    "use_path_request_style": ("use_path_request_style", lambda s: s.cos.path_style is True),
    "sigv4": ("sigv4", lambda s: s.cos.signature == "sigv4"),
    "dbglevel": ("dbglevel=information", lambda s: s.log_level == logging.INFO),
    "f2": ("f2", lambda s: s.log_level == logging.DEBUG),
    "curldbg": ("curldbg", lambda s: s.http_debug),
    "instance_name": ("instance_name=web1", lambda s: "web1" in s.cos.user_agent),
    "user_agent_suffix": ("user_agent_suffix=batch", lambda s: s.cos.user_agent.endswith(" batch")),
    "bucket_size": ("bucket_size=45TiB", lambda s: s.fs.bucket_size_bytes == 45 << 40),
    "check_cache_dir_exist": ("check_cache_dir_exist", lambda s: True),  # the cache dir exists; see below
    "cipher_suites": ("cipher_suites=HIGH:!aNULL", lambda s: s.cos.cipher_suites == "HIGH:!aNULL"),
    "ssl_client_cert": ("ssl_client_cert=/c.pem", lambda s: s.cos.client_cert == "/c.pem"),
    "mime": (lambda: f"mime={mime_file()}", lambda s: mimetypes.guess_type("x.cosfstest")[0] ==
             "application/x-cosfs-test"),
    "proxy": ("proxy=127.0.0.1:3128", lambda s: s.cos.proxy == "http://127.0.0.1:3128"),
    "proxy_cred_file": ("proxy=p:1", lambda s: True),  # with a file: test_client_compat
    "ipresolve": ("ipresolve=ipv6", lambda s: s.cos.local_address == "::"),
    "logfile": ("logfile=/var/log/cosfs.log", lambda s: s.log_file == "/var/log/cosfs.log"),
    "profile": None,  # the keys' section: test_credentials.py::test_profile_and_public_bucket
    "bucket": None,  # `cosfs MOUNTPOINT -o bucket=NAME`: test_bucket_option below
    "attr_timeout": ("attr_timeout=5", lambda s: s.kernel_timeout_s == 5),
    "entry_timeout": ("entry_timeout=3,attr_timeout=5", lambda s: s.kernel_timeout_s == 3),
    "negative_timeout": ("negative_timeout=2", lambda s: s.fs.negative_ttl_s == 2),
    "max_readahead": ("max_readahead=131072", lambda s: s.read_ahead_kb == 128
                      and s.fs.max_readahead_bytes == 64 * MiB),
    "direct_io": ("direct_io", lambda s: s.fs.direct_io),
    "fsname": ("fsname=mycos", lambda s: "fsname=mycos" in fuse(s)),
    "subtype": ("subtype=s3fs", lambda s: "subtype=s3fs" in fuse(s)),
    "debug": ("debug", lambda s: s.log_level == logging.DEBUG and "debug" in fuse(s)),
    "default_permissions": ("default_permissions", lambda s: "default_permissions" in fuse(s)),
    "ro": ("ro", lambda s: s.fs.read_only and "ro" in fuse(s)),
    "rw": ("rw", lambda s: not s.fs.read_only),
    "max_read": ("max_read=65536", lambda s: "max_read=65536" in fuse(s)),
}


def warned(settings, fragment: str) -> bool:
    return any(fragment in text for level, text in settings.notes if level == logging.WARNING)


def check(name: str) -> None:
    """What cosfs does with option `name`, asserted."""
    opt = options.BY_NAME[name]
    if opt.kind == "refuse":
        with pytest.raises(ConfigError) as info:
            settings_for(f"{name}=AKIDsecretvalue")
        assert name in str(info.value) and "AKIDsecretvalue" not in str(info.value)
        return
    if name in CHECKS:
        if CHECKS[name] is None:
            return
        text, predicate = CHECKS[name]
        settings = settings_for(text() if callable(text) else text)
        assert predicate(settings), (name, settings)
        return
    sample = name if opt.kind == "flag" else f"{name}={ {'int': '1', 'float': '1'}.get(opt.kind, 'x') }"
    settings = settings_for(sample)
    if opt.kernel:
        assert sample in fuse(settings), name
    else:
        assert opt.note and (opt.note_level, opt.note) in settings.notes, name
        assert opt.note.startswith(name + ":"), "a note names its option"


@pytest.mark.parametrize("name", sorted(COSFS_PARSED))
def test_every_cosfs_option(name):
    check(name)


@pytest.mark.parametrize("name", sorted(S3FS_PARSED))
def test_every_s3fs_option(name):
    check(name)


@pytest.mark.parametrize("name", sorted(FUSE_OPTIONS))
def test_every_fuse_option(name):
    check(name)


def test_the_table_and_the_lists_agree():
    """An option options.py says comes from COSFS, s3fs or FUSE is in that list, and back."""
    for origin, names in (("COSFS", COSFS_PARSED), ("s3fs", S3FS_PARSED), ("FUSE", FUSE_OPTIONS)):
        claimed = {opt.name for opt in options.OPTIONS if origin in opt.origin.split("/")}
        assert claimed == names, (origin, sorted(claimed ^ names))
    assert all(name in CHECKS or options.BY_NAME[name].note or options.BY_NAME[name].kernel
               or options.BY_NAME[name].kind == "refuse" for name in COSFS_PARSED | S3FS_PARSED | FUSE_OPTIONS)


@pytest.mark.parametrize("text,fragment", [
    ("parallel_count=0", "parallel_count"), ("multipart_size=0", "at least 5 MiB"),
    ("multipart_size=4", "at least 5 MiB"), ("multipart_threshold=1", "at least 5 MiB"),
    ("dbglevel=loud", "dbglevel"), ("storage_class=cold", "storage_class"), ("public_bucket=2", "public_bucket"),
    ("ssl_verify_hostname=5", "ssl_verify_hostname"), ("bucket_size=lots", "bucket_size"),
    ("use_cache=/nonexistent/dir,check_cache_dir_exist", "does not exist"),
])
def test_bad_values_are_errors(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        settings_for(text)


@pytest.mark.parametrize("level,expected", [("silent", logging.CRITICAL), ("crit", logging.CRITICAL),
                                            ("err", logging.ERROR), ("wan", logging.WARNING),
                                            ("inf", logging.INFO), ("information", logging.INFO),
                                            ("dbg", logging.DEBUG), ("DEBUG", logging.DEBUG)])
def test_every_dbglevel_spelling(level, expected):
    assert settings_for(f"dbglevel={level}").log_level == expected


@pytest.mark.parametrize("name,cos_class", [("standard", "STANDARD"), ("standard_ia", "STANDARD_IA"),
                                            ("intelligent_tiering", "INTELLIGENT_TIERING"),
                                            ("maz_standard", "MAZ_STANDARD"), ("maz_standard_ia", "MAZ_STANDARD_IA"),
                                            ("maz_intelligent_tiering", "MAZ_INTELLIGENT_TIERING"),
                                            ("archive", "ARCHIVE"), ("deep_archive", "DEEP_ARCHIVE"),
                                            ("reduced_redundancy", "STANDARD"), ("onezone_ia", "STANDARD_IA"),
                                            ("glacier_ir", "STANDARD_IA"), ("glacier", "ARCHIVE")])
def test_every_storage_class(name, cos_class):
    settings = settings_for(f"storage_class={name}")
    assert settings.cos.storage_class == cos_class
    assert warned(settings, "COS has no such class") == (name in options.STORAGE_CLASS_EQUIVALENTS)


def test_bucket_option_with_the_mount_point_alone():
    args = cli.build_parser().parse_args(["mount", "/mnt/s3", "-o", "bucket=mybucket-1250000000,url=http://h:1,"
                                          f"passwd_file={PASSWD}"])
    settings = cli.mount_settings(args)
    assert (settings.cos.bucket, settings.mountpoint) == ("mybucket-1250000000", Path("/mnt/s3"))


def test_del_cache_empties_the_block_cache():
    settings = settings_for()
    (settings.cache_dir / "blocks").mkdir(parents=True, exist_ok=True)
    (settings.cache_dir / "blocks" / "x").write_text("cached")
    assert not (settings_for("del_cache").cache_dir / "blocks").exists()


def test_kernel_options_pass_through_and_security_ones_are_never_dropped():
    settings = settings_for("noexec,nosuid,nodev,sync,dirsync,auto_unmount,noatime,_netdev,x-systemd.automount")
    assert {"noexec", "nosuid", "nodev", "sync", "dirsync", "auto_unmount", "noatime"} <= fuse(settings)
    assert "_netdev" not in str(fuse(settings)) and "x-systemd" not in str(fuse(settings))
