"""The inode table: inode numbers <-> names in the bucket, their attributes and lookup counts.

Everything here is synchronous, so each method is an atomic section under trio.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import stat
import types
from collections.abc import Mapping

from cachetools import LRUCache

from cosfs.errors import NotFound

log = logging.getLogger(__name__)

ROOT_INO = 1


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    SPECIAL = "special"  # FIFO, socket, character or block device: a zero-byte object


def kind_of_mode(mode: int) -> Kind:
    if stat.S_ISDIR(mode):
        return Kind.DIR
    if stat.S_ISLNK(mode):
        return Kind.SYMLINK
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return Kind.SPECIAL
    return Kind.FILE


@dataclasses.dataclass(frozen=True, slots=True)
class Attr:
    """What stat() shows; built by the namespace from a HEAD (or a directory's marker), this
    mount's own writes, or the mount's defaults."""

    ino: int
    mode: int
    size_bytes: int
    uid: int
    gid: int
    mtime_ns: int
    nlink: int = 1
    atime_ns: int | None = None  # None: the same as mtime
    ctime_ns: int | None = None  # None: the same as mtime
    rdev: int = 0

    @property
    def kind(self) -> Kind:
        return kind_of_mode(self.mode)

    @property
    def shown_atime_ns(self) -> int:
        return self.mtime_ns if self.atime_ns is None else self.atime_ns

    @property
    def shown_ctime_ns(self) -> int:
        return self.mtime_ns if self.ctime_ns is None else self.ctime_ns

    def touched(self, now_ns: int, *, modified: bool) -> Attr:
        """ctime (and with `modified`, mtime) set to now: an entry's own change or, for a
        directory, a change of its entries."""
        if modified:
            return dataclasses.replace(self, mtime_ns=now_ns, ctime_ns=now_ns)
        return dataclasses.replace(self, ctime_ns=now_ns)


NO_USER_META: Mapping[str, str] = types.MappingProxyType({})


@dataclasses.dataclass(slots=True)
class Inode:
    """One name in the tree. `key` is the object key of a file or symlink, and the prefix
    (ending in '/', or '' for the bucket root) of a directory; it changes only through
    InodeTable, which indexes inodes by key."""

    ino: int
    parent: int
    name: str
    key: str
    attr: Attr
    etag: str | None = None
    expires_at_s: float = 0.0
    lookup_count: int = 0
    open_count: int = 0
    # The ETag whose bytes the kernel may hold in its page cache for this inode.
    page_cache_etag: str | None = None
    # From the last HEAD (or our own write): needed to rewrite metadata in place. Replaced,
    # never changed in place (the default is one shared empty mapping: 100,000 inodes; a
    # factory, as dataclasses refuse an unhashable default).
    user_meta: Mapping[str, str] = dataclasses.field(default_factory=lambda: NO_USER_META)
    content_type: str = "application/octet-stream"

    @property
    def kind(self) -> Kind:
        return self.attr.kind


class InodeTable:
    """Owner of every live inode.

    Invariants:
    - `_by_ino[ino].ino == ino`; the root (ROOT_INO) is always present and never freed.
    - `_by_key[k]` holds exactly the live inodes whose key is k, each once (keys change only
      here); a tuple, as a key almost always has one inode (a set costs 216 bytes per key).
    - `_by_name[(parent, name)]` names an inode whose `parent`/`name` are those values; an
      inode whose name was removed (unlink, rename over) stays in `_by_ino` until the kernel
      forgets it and no handle has it open.
    - `lookup_count` equals the kernel's count: +1 per lookup/create/accepted readdirplus
      entry, -n per forget; never negative. An inode is freed only at lookup_count == 0 with
      no open handle.
    """

    def __init__(self, root_key: str, root_attr: Attr, retired_max: int = 100_000) -> None:
        self._next_ino = ROOT_INO + 1
        root = Inode(ROOT_INO, ROOT_INO, "", root_key, dataclasses.replace(root_attr, ino=ROOT_INO),
                     expires_at_s=float("inf"))
        self._by_ino: dict[int, Inode] = {ROOT_INO: root}
        self._by_key: dict[str, tuple[int, ...]] = {root_key: (ROOT_INO,)}
        self._by_name: dict[tuple[int, str], int] = {}
        # Numbers of inodes the kernel forgot while they still had a name, by (key, kind).
        self._retired: LRUCache[tuple[str, Kind], int] = LRUCache(maxsize=retired_max)

    def __len__(self) -> int:
        return len(self._by_ino)

    def get(self, ino: int) -> Inode:
        try:
            return self._by_ino[ino]
        except KeyError:
            raise NotFound(f"inode {ino} is not known") from None

    def child(self, parent: int, name: str) -> Inode | None:
        ino = self._by_name.get((parent, name))
        return None if ino is None else self._by_ino[ino]

    def new_ino(self) -> int:
        ino = self._next_ino
        self._next_ino += 1
        return ino

    def upsert(self, parent: int, name: str, key: str, attr_without_ino: Attr, *, etag: str | None,
               expires_at_s: float) -> Inode:
        """The inode for (parent, name) with fresh attributes, reusing its number while the
        kind and key stay the same (so the kernel's view stays stable), else a new number."""
        existing = self.child(parent, name)
        if existing is not None and existing.kind == attr_without_ino.kind and existing.key == key:
            existing.attr = dataclasses.replace(attr_without_ino, ino=existing.ino)
            existing.etag = etag
            existing.expires_at_s = expires_at_s
            return existing
        if existing is not None:
            self.unlink_name(parent, name)
        # The number a name had before the kernel forgot it, so st_ino stays the same for the
        # same key (tar, rsync and find compare it across calls).
        ino = self._retired.pop((key, attr_without_ino.kind), None) or self.new_ino()
        inode = Inode(ino, parent, name, key, dataclasses.replace(attr_without_ino, ino=ino), etag=etag,
                      expires_at_s=expires_at_s)
        self._by_ino[ino] = inode
        self._index_key(key, ino)
        self._by_name[(parent, name)] = ino
        return inode

    def _index_key(self, key: str, ino: int) -> None:
        self._by_key[key] = self._by_key.get(key, ()) + (ino,)

    def _unindex_key(self, key: str, ino: int) -> None:
        rest = tuple(other for other in self._by_key[key] if other != ino)
        if rest:
            self._by_key[key] = rest
        else:
            del self._by_key[key]

    def _rekey(self, inode: Inode, key: str) -> None:
        self._unindex_key(inode.key, inode.ino)
        inode.key = key
        self._index_key(key, inode.ino)

    def rekey(self, ino: int, key: str) -> None:
        """Give an inode another object key, its name unchanged (an open file losing its name)."""
        self._rekey(self._by_ino[ino], key)

    def unlink_name(self, parent: int, name: str) -> None:
        """Remove a name; the inode lives on until forgotten and closed."""
        ino = self._by_name.pop((parent, name), None)
        if ino is not None:
            self._maybe_free(self._by_ino[ino])

    def remember(self, ino: int, n: int = 1) -> None:
        self._by_ino[ino].lookup_count += n

    def forget(self, ino: int, n: int) -> None:
        """Never raises: the kernel may forget what we already dropped."""
        inode = self._by_ino.get(ino)
        if inode is None:
            return
        if n > inode.lookup_count:
            log.warning("forget(%d, %d) exceeds lookup count %d", ino, n, inode.lookup_count)
            n = inode.lookup_count
        inode.lookup_count -= n
        self._maybe_free(inode)

    def drop_if_unused(self, ino: int) -> None:
        """Free an inode made for a reply the kernel did not take (readdirplus stopped)."""
        inode = self._by_ino.get(ino)
        if inode is not None:
            self._maybe_free(inode)

    def opened(self, ino: int) -> None:
        self._by_ino[ino].open_count += 1

    def closed(self, ino: int) -> None:
        inode = self._by_ino.get(ino)
        if inode is not None:
            inode.open_count -= 1
            self._maybe_free(inode)

    def _maybe_free(self, inode: Inode) -> None:
        if inode.ino == ROOT_INO or inode.lookup_count > 0 or inode.open_count > 0:
            return
        if self._by_name.get((inode.parent, inode.name)) == inode.ino:
            del self._by_name[(inode.parent, inode.name)]
            self._retired[(inode.key, inode.kind)] = inode.ino  # still named: keep its number
        del self._by_ino[inode.ino]
        self._unindex_key(inode.key, inode.ino)

    def move(self, ino: int, new_parent: int, new_name: str, new_key: str) -> None:
        """Give an inode a new name (rename); whatever had that name loses it."""
        inode = self._by_ino[ino]
        if self._by_name.get((inode.parent, inode.name)) == ino:
            del self._by_name[(inode.parent, inode.name)]
        self.unlink_name(new_parent, new_name)
        inode.parent, inode.name = new_parent, new_name
        self._rekey(inode, new_key)
        self._by_name[(new_parent, new_name)] = ino

    def rekey_below(self, old_prefix: str, new_prefix: str) -> None:
        """After a directory rename: every inode whose key starts with old_prefix, and the
        numbers kept for names below it that the kernel forgot (so st_ino of everything
        under a renamed directory stays what it was, as POSIX requires)."""
        for inode in list(self._by_ino.values()):
            if inode.ino != ROOT_INO and inode.key.startswith(old_prefix):
                self._rekey(inode, new_prefix + inode.key[len(old_prefix):])
        for key, kind in [entry for entry in self._retired if entry[0].startswith(old_prefix)]:
            self._retired[(new_prefix + key[len(old_prefix):], kind)] = self._retired.pop((key, kind))

    def children_with_key(self, key: str) -> list[Inode]:
        """Inodes (named or not) that stand for `key`: after a commit all of them see it."""
        return [self._by_ino[ino] for ino in self._by_key.get(key, ())]

    def check_invariants(self) -> None:
        for ino, inode in self._by_ino.items():
            assert inode.ino == ino
            assert inode.lookup_count >= 0 and inode.open_count >= 0
            if ino != ROOT_INO:
                assert inode.lookup_count > 0 or inode.open_count > 0, f"inode {ino} should have been freed"
        for (parent, name), ino in self._by_name.items():
            inode = self._by_ino[ino]
            assert (inode.parent, inode.name) == (parent, name)
        assert sorted((k, i) for k, inos in self._by_key.items() for i in inos) == sorted(
            (inode.key, ino) for ino, inode in self._by_ino.items())
