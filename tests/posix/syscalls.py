"""One system call per case, described as JSON, answered as JSON: the same code runs inside
the test process (as root) and, as another user, under /usr/bin/python3 (the virtualenv's
interpreter is not executable by other users): `python3 -c SOURCE < cases.json`.

Standard library only (this file's source is handed to another interpreter). A call is
`{"op": NAME, "args": [...]}`; the answer is `{"errno": "ENOENT"}` when the call failed, else
`{"ok": true, "value": ...}` (stat fields for stat/lstat/fstat-like calls, None otherwise).
File descriptors never outlive one case: ops that need one open, act and close.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import sys

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec), ctypes.c_int]
_libc.utimensat.restype = ctypes.c_int


def flags_of(names) -> int:
    value = 0
    for name in names:
        value |= getattr(os, name)
    return value


def stat_fields(st: os.stat_result) -> dict:
    return {"mode": st.st_mode, "ino": st.st_ino, "nlink": st.st_nlink, "uid": st.st_uid, "gid": st.st_gid,
            "size": st.st_size, "rdev": st.st_rdev, "atime_ns": st.st_atime_ns, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def _timespec(spec) -> _Timespec:
    """[sec, nsec], "NOW" or "OMIT"."""
    if spec == "NOW":
        return _Timespec(0, UTIME_NOW)
    if spec == "OMIT":
        return _Timespec(0, UTIME_OMIT)
    return _Timespec(int(spec[0]), int(spec[1]))


def utimensat(path: str, atime, mtime, nofollow: bool = False) -> None:
    """utimensat(2) with times = NULL when both specs are None."""
    if atime is None and mtime is None:
        times = None
    else:
        times = (_Timespec * 2)(_timespec(atime), _timespec(mtime))
    result = _libc.utimensat(AT_FDCWD, os.fsencode(path), times, AT_SYMLINK_NOFOLLOW if nofollow else 0)
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)


def _with_fd(path: str, flags, action, mode: int = 0o644):
    fd = os.open(path, flags_of(flags), mode)
    try:
        return action(fd)
    finally:
        os.close(fd)


def _closed_fd() -> int:
    fd = os.open("/", os.O_RDONLY)
    os.close(fd)
    return fd


def _bind(path: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    finally:
        sock.close()


def _write(path: str, data: str) -> int:
    return _with_fd(path, ["O_WRONLY", "O_APPEND"], lambda fd: os.write(fd, data.encode()))


def _read(path: str) -> str:
    return _with_fd(path, ["O_RDONLY"], lambda fd: os.read(fd, 1 << 20).decode(errors="replace"))


def _unlinked_open_fstat(path: str) -> dict:
    """Open, unlink the last name, fstat the still-open file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.unlink(path)
        return stat_fields(os.fstat(fd))
    finally:
        os.close(fd)


OPS = {
    "open": lambda path, flags, mode=0o644: _with_fd(path, flags, lambda fd: None, mode),
    "open_fstat": lambda path, flags, mode=0o644: _with_fd(path, flags, lambda fd: stat_fields(os.fstat(fd)), mode),
    "mkdir": lambda path, mode=0o755: os.mkdir(path, mode),
    "rmdir": os.rmdir,
    "unlink": os.unlink,
    "rename": os.rename,
    "symlink": lambda target, path: os.symlink(target, path),
    "link": lambda old, new: os.link(old, new, follow_symlinks=False),
    "readlink": os.readlink,
    "chmod": lambda path, mode: os.chmod(path, mode),
    "chown": lambda path, uid, gid: os.chown(path, uid, gid),
    "lchown": lambda path, uid, gid: os.lchown(path, uid, gid),
    "truncate": lambda path, size: os.truncate(path, size),
    "ftruncate": lambda path, flags, size: _with_fd(path, flags, lambda fd: os.ftruncate(fd, size)),
    "fchmod": lambda path, flags, mode: _with_fd(path, flags, lambda fd: os.fchmod(fd, mode)),
    "fchown": lambda path, flags, uid, gid: _with_fd(path, flags, lambda fd: os.fchown(fd, uid, gid)),
    "ftruncate_closed_fd": lambda size: os.ftruncate(_closed_fd(), size),
    "fchmod_closed_fd": lambda mode: os.fchmod(_closed_fd(), mode),
    "fstat_closed_fd": lambda: stat_fields(os.fstat(_closed_fd())),
    "utimensat": utimensat,
    "stat": lambda path: stat_fields(os.stat(path)),
    "lstat": lambda path: stat_fields(os.lstat(path)),
    "mkfifo": lambda path, mode=0o644: os.mkfifo(path, mode),
    "mknod": lambda path, mode, major=0, minor=0: os.mknod(path, mode, os.makedev(major, minor)),
    "bind": _bind,
    "write": _write,
    "read": _read,
    "listdir": lambda path: sorted(os.listdir(path)),
    "unlinked_open_fstat": _unlinked_open_fstat,
}


def run(case: dict) -> dict:
    try:
        value = OPS[case["op"]](*case.get("args", []))
    except OSError as exc:
        return {"errno": errno.errorcode.get(exc.errno, str(exc.errno))}
    except Exception as exc:  # noqa: BLE001  (a broken case must not hide the other answers)
        return {"errno": f"PYTHON {type(exc).__name__}: {exc}"}
    return {"ok": True, "value": value}


def main() -> None:
    os.umask(0o022)
    cases = json.load(sys.stdin)
    json.dump([run(case) for case in cases], sys.stdout)


if __name__ == "__main__":
    main()
