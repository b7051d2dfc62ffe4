"""Real-world mount lines for COSFS and s3fs: command lines, fstab lines, systemd units and
CSI `additional_args`, as their documentation and users write them (the option strings are
facts quoted from the named sources; bucket names, paths and endpoints are theirs too).
tests/compat/test_corpus.py parses every line and mounts the ones marked `mount` against a
local `cosfs serve` (endpoint, keys and cache directory swapped for the test's own)."""

from __future__ import annotations

import dataclasses
import shlex


@dataclasses.dataclass(frozen=True)
class Line:
    source: str  # where the line comes from
    kind: str  # command | fstab | csi
    text: str  # for csi: "BUCKET URL ADDITIONAL_ARGS..."
    mount: bool = False  # also mounted by the tests
    sts: bool = False  # needs a passwd file in COSFS's STS form


CORPUS = (
    # tencentyun/cosfs README.md
    Line("cosfs README", "command", "cosfs my-bucket-1250000000 /tmp/cosfs -ourl=http://cn-south.myqcloud.com "
         "-odbglevel=info -ouse_cache=/path/to/local_cache", mount=True),
    Line("cosfs README (mount a folder)", "command", "cosfs my-bucket-1250000000:/my-dir /tmp/cosfs "
         "-ourl=http://cn-south.myqcloud.com -odbglevel=info -ouse_cache=/path/to/local_cache", mount=True),
    Line("cosfs README (old APPID:BUCKET form, STS)", "command", "./cosfs 1252448703:rabbitliu /mnt/rabbit/ "
         "-ourl=http://cn-south.myqcloud.com -odbglevel=info -oallow_other -ocam_role=sts "
         "-opasswd_file=/tmp/passwd-jimmy-sts", sts=True),
    Line("cosfs README (STS)", "command", "./cosfs rabbitliu-1252448703 /mnt/rabbit/ "
         "-ourl=http://cn-south.myqcloud.com -odbglevel=info -oallow_other -ocam_role=sts "
         "-opasswd_file=/tmp/passwd-jimmy-sts", mount=True, sts=True),
    # Tencent Cloud COSFS documentation (product/436/6883) and its FAQ (product/436/30587)
    Line("COSFS doc", "command", "cosfs examplebucket-1250000000 /mnt/cosfs "
         "-ourl=http://cos.ap-guangzhou.myqcloud.com -odbglevel=info -onoxattr -oallow_other", mount=True),
    Line("COSFS FAQ (disk space)", "command", "cosfs examplebucket-1250000000 /mnt/cosfs "
         "-ourl=http://cos.ap-guangzhou.myqcloud.com -odbglevel=info -oensure_diskfree=10240"),
    Line("COSFS FAQ (STS)", "command", "cosfs examplebucket-1250000000 /mnt/cosfs "
         "-ourl=http://cos.ap-guangzhou.myqcloud.com -odbglevel=info -oallow_other -ocam_role=sts "
         "-opasswd_file=/tmp/passwd-sts", sts=True),
    Line("COSFS FAQ (folder)", "command", "cosfs examplebucket-1250000000:/my-dir /mnt/cosfs "
         "-ourl=http://cos.ap-guangzhou.myqcloud.com -odbglevel=info"),
    Line("COSFS doc (fstab)", "fstab", "cosfs#examplebucket-1250000000 /mnt/cosfs fuse "
         "_netdev,allow_other,url=http://cos.ap-guangzhou.myqcloud.com,dbglevel=info 0 0", mount=True),
    # A systemd unit and an incident report found in public repositories
    Line("systemd unit (public bucket)", "command", "/usr/local/bin/cosfs sg-xxx:/lhcos-data /lhcos-data "
         "-ourl=http://cos.ap-yyy.myqcloud.com -odbglevel=err -oallow_other -opublic_bucket=1 "
         "-oensure_diskfree=5120 -f"),
    Line("incident report", "command", "cosfs lhcos-368f6-1256345599:/lhcos-data /lhcos-data "
         "-ourl=http://cos.ap-singapore.myqcloud.com -odbglevel=err -oallow_other -opublic_bucket=1 "
         "-oensure_diskfree=1024"),
    # TencentCloud/kubernetes-csi-tencentcloud (volumeAttributes url, bucket, additional_args)
    Line("CSI README", "csi", "testbucket-1010101010 http://cos.ap-guangzhou.myqcloud.com -oallow_other",
         mount=True),
    Line("CSI volume attributes", "csi", "testbucket-1010101010 http://cos.ap-guangzhou.myqcloud.com "
         "-oensure_diskfree=20480 -oallow_other"),
    Line("CSI launcher script", "csi", "testbucket-1010101010 http://cos.ap-guangzhou.myqcloud.com "
         "-ocam_role=sts -oallow_other -ouse_cache=/cos_tmpfs -odel_cache -odisable_content_md5 "
         "-oensure_diskfree=128 -oparallel_count=32 -omultireq_max=32 -omultipart_size=32", mount=True, sts=True),
    Line("CSI launcher script (disk cache)", "csi", "testbucket-1010101010 http://cos.ap-guangzhou.myqcloud.com "
         "-oallow_other -ononempty -ocompat_dir -oensure_diskfree=1024 -ouse_cache=/cos_tmpfs -odel_cache "
         "-oensure_diskfree=64 -odbglevel=warn", mount=True),
    # s3fs-fuse README.md and man page
    Line("s3fs README", "command", "s3fs mybucket /path/to/mountpoint -o passwd_file=${HOME}/.passwd-s3fs"),
    Line("s3fs README (debug)", "command", "s3fs mybucket /path/to/mountpoint -o passwd_file=${HOME}/.passwd-s3fs "
         "-o dbglevel=info -f -o curldbg"),
    Line("s3fs README (fstab)", "fstab", "mybucket /path/to/mountpoint fuse.s3fs _netdev,allow_other 0 0"),
    Line("s3fs README (non-Amazon)", "command", "s3fs mybucket /path/to/mountpoint "
         "-o passwd_file=${HOME}/.passwd-s3fs -o url=https://url.to.s3/ -o use_path_request_style", mount=True),
    Line("s3fs README (non-Amazon fstab)", "fstab", "mybucket /path/to/mountpoint fuse.s3fs "
         "_netdev,allow_other,use_path_request_style,url=https://url.to.s3/ 0 0", mount=True),
    Line("s3fs man page (utility mode)", "command", "s3fs --incomplete-mpu-list mybucket"),
    Line("s3fs man page (mount point only)", "command", "s3fs /path/to/mountpoint -o bucket=mybucket"),
    # s3fs lines in public repositories: a cloud provider's docs, a NixOS config, a CSI driver
    Line("EO data docs (fstab)", "fstab", "s3fs#eodata /eodata fuse passwd_file=/root/.passwd-s3fs,_netdev,"
         "allow_other,use_path_request_style,uid=0,umask=0222,mp_umask=0222,gid=0,stat_cache_expire=20,"
         "url=http://data.cloudferro.com,use_cache=1,max_stat_cache_size=60000,list_object_max_keys=10000 0 0",
         mount=True),
    Line("NixOS config", "fstab", "s3fs#media-s3fs:/tv /s3/s3fs fuse _netdev,curldbg,use_cache=/tmp/s3/s3fs,"
         "passwd_file=/run/agenix/s3,allow_other,mp_umask=022,uid=3000,gid=3000,url=http://cluster.home.arpa:3900,"
         "use_path_request_style,list_object_max_keys=10000,parallel_count=5,multipart_size=1024,"
         "multipart_copy_size=1024,max_dirty_data=1024 0 0", mount=True),
    Line("cds-csi-driver defaults", "command", "s3fs mybucket /mnt/oss -o dbglevel=info -o curldbg -o allow_other "
         "-o use_path_request_style"),
)


def argv_of(line: Line) -> list[str]:
    """The arguments `cosfs` gets for a line: a command line without its program, an fstab
    line as mount(8) hands it to the helper (`cosfs#`/`s3fs#` sources lose the prefix, as
    mount.fuse strips it), a CSI volume as the driver runs cosfs."""
    if line.kind == "command":
        words = shlex.split(line.text)
        return words[1:]
    if line.kind == "fstab":
        source, mountpoint, _type, opts = line.text.split()[:4]
        return [source.split("#", 1)[-1], mountpoint, "-o", opts]
    bucket, url, *extra = shlex.split(line.text)
    return [bucket, "/var/lib/kubelet/pods/x/volumes/cos", f"-ourl={url}", *extra]
