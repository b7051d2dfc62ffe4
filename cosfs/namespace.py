"""The tree as the mount shows it, derived from object keys, LIST pages and HEAD replies.

Rules:
- A key `a/b/c` is the file `c` in the directory `a/b`. A directory exists when a zero-byte
  marker `a/b/` exists (explicit, as COSFS writes) or when any key starts with `a/b/`
  (implicit). In a listing, an s3fs-era marker `a/b_$folder$` makes `b` a directory too.
- A directory shadows a file of the same name: if both `a/b` and `a/b/...` exist, `b` is a
  directory and the object `a/b` is not reachable through the mount.
- Keys whose segments cannot be file names (empty from `//`, `.`, `..`, NUL, over FUSE's
  1,024 bytes) are skipped with one warning per key. A new name whose key would pass COS's
  850 bytes is refused (ENAMETOOLONG) at lookup and create.
- A LIST gives each entry's size, time and ETag, never its type, mode, owner or stored
  times (x-cos-meta-*): no attribute reaches the kernel before that metadata is known, from
  a HEAD of the same version (or a directory's marker) within the stat TTL, or from our own
  write. readdir HEADs what it does not know, `multireq_max` at a time, in a pipeline up to
  DESCRIBE_WINDOW entries ahead of what it hands the kernel (describe.py); a walk's
  list-ahead HEADs the first entries of the folders it lists ahead.
- A lookup answers from the parent's listing when it can, and asks COS what the listing
  does not say (`_lookup_remote`): a name the listing lacks is absent only while the
  listing is younger than negative_cache_expire.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import enum
import itertools
import logging
import stat
import time
from collections.abc import Callable, Mapping
from typing import Final

import trio
from cachetools import LRUCache, TTLCache

from cosfs.config import FsConfig
from cosfs.describe import ListingDescriber
from cosfs.cos.store import MAX_KEY_BYTES, MAX_LIST_KEYS, ListEntry, ListPage, ObjectMeta, ObjectStore, WriteOptions
from cosfs.errors import (CosError, CosfsError, InvalidName, NameTooLong, NotADirectory, NotEmpty, NotFound, Stale,
                          one_error)
from cosfs.inodes import ROOT_INO, Attr, Inode, InodeTable, Kind, kind_of_mode
from cosfs.kernel_cache import KernelCache, NoKernel
from cosfs.write import ORPHAN_PREFIX, DirtyFile, StagingArea

log = logging.getLogger(__name__)

# A name's limit: FUSE's (the kernel's FUSE_NAME_MAX), not a local disk's 255, so that every
# key COS can store (850 bytes) shows, as in s3fs.
MAX_NAME_BYTES = 1024
# Sibling directories listed ahead of a tree walk, and how many LISTs of them run at once.
LISTING_AHEAD = 8
LISTING_AHEAD_PARALLEL = 4
DESCRIBE_AHEAD = 256  # entries of a folder listed ahead whose metadata is fetched with it
DESCRIBE_WINDOW = 4096  # how far readdir's metadata fetch runs ahead of the entries asked for
SCAN_ENTRIES = 1000  # how far from a directory its neighbours are looked for
PATH_MAX = 4096
DIRECTORY_CONTENT_TYPE = "application/x-directory"
LEGACY_DIR_SUFFIX = "_$folder$"


class Gone:
    """An entry whose object was deleted between its LIST and its HEAD."""


GONE = Gone()


class _Unknown(enum.Enum):
    """Not in the marker cache (where None means an implicit directory)."""

    UNKNOWN = enum.auto()


_UNKNOWN: Final = _Unknown.UNKNOWN


@dataclasses.dataclass(frozen=True, slots=True)
class DirEntry:
    """One name in a directory listing; a file's ETag names the version its metadata is
    cached under (`known_meta`)."""

    name: str
    kind: Kind
    key: str
    etag: str | None = None


def usable_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "\0" not in name and len(name.encode()) <= MAX_NAME_BYTES


def check_name(name: str, parent_key: str | None = None) -> None:
    """A name a new entry may have; with `parent_key`, also one whose object key (a
    directory's marker `name/` included) fits COS's key length."""
    if len(name.encode()) > MAX_NAME_BYTES:
        raise NameTooLong(f"name of {len(name.encode())} bytes")
    if not usable_name(name) or "/" in name:
        raise InvalidName(f"invalid name {name!r}")
    if parent_key is not None:
        key_bytes = len((parent_key + name + "/").encode("utf-8", "surrogateescape"))
        if key_bytes > MAX_KEY_BYTES:
            raise NameTooLong(f"the object key would be {key_bytes} bytes, more than COS's {MAX_KEY_BYTES}")


class Namespace:
    """Owner of the stat, negative and listing caches; turns COS answers into inodes.

    Invariants: a cached listing for prefix P holds every name under P as LIST returned it
    (after shadowing and skipping), sorted by name, with our own changes since; an unread
    listing (fetched before a readdir asked) answers readdir, tells lookup whether a name is
    absent, a file or a directory (not its metadata), and any change of ours under P drops
    it; the negative cache holds (prefix, name) pairs for which both HEAD and LIST found
    nothing, and is cleared for a name as soon as this mount creates it.

    What a listing lacks is "no such file", which COSFS and s3fs trust for
    negative_cache_expire: a name absent from a listing whose LIST started longer ago than
    that (or that changed under us while it was fetched) is asked for again, and a readdir
    lists again. Names a new listing lacks are forgotten, here and in the kernel.
    """

    def __init__(self, store: ObjectStore, inodes: InodeTable, config: FsConfig, staging: StagingArea,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._inodes = inodes
        self._staging = staging
        self._config = config
        self._clock = clock
        self._listings: TTLCache[str, list[DirEntry]] = TTLCache(
            maxsize=config.max_listed_dirs, ttl=config.stat_ttl_s, timer=clock)
        self._negative: TTLCache[tuple[str, str], bool] = TTLCache(
            maxsize=config.max_stat_entries, ttl=config.negative_ttl_s, timer=clock)
        self._warned: LRUCache[str, bool] = LRUCache(maxsize=10_000)
        self._link_targets: LRUCache[tuple[str, str | None], str] = LRUCache(maxsize=10_000)
        # Stored metadata of object versions, (key, ETag) -> HEAD's answer or our own write's.
        self._metas: TTLCache[tuple[str, str | None], ObjectMeta] = TTLCache(
            maxsize=config.max_stat_entries, ttl=config.stat_ttl_s, timer=clock)
        # Directory markers' metadata (None: no marker, an implicit directory), for the stat TTL.
        self._markers: TTLCache[str, ObjectMeta | None] = TTLCache(
            maxsize=config.max_stat_entries, ttl=config.stat_ttl_s, timer=clock)
        # Listings fetched before a readdir asked (a lookup's page, a walk's list-ahead):
        # readdir takes them over; a lookup learns from them what a name is, and still asks
        # for a file's or a directory's metadata (modes and owners are not in a LIST).
        self._unread: TTLCache[str, list[DirEntry]] = TTLCache(
            maxsize=config.max_listed_dirs, ttl=config.stat_ttl_s, timer=clock)
        # Subdirectories in a cached listing (for dir_links): (that listing, its count).
        self._dir_counts: LRUCache[str, tuple[list[DirEntry], int]] = LRUCache(maxsize=config.max_listed_dirs)
        self._listing_in_flight: dict[str, trio.Event] = {}
        # When each cached listing's LIST started (absent: its "absent" is not to be trusted),
        # and the prefixes this mount changed while their LIST was running.
        self._listed_at: LRUCache[str, float] = LRUCache(maxsize=2 * config.max_listed_dirs)
        self._changed_while_listing: set[str] = set()
        self.kernel: KernelCache = NoKernel()  # the mount attaches the kernel's
        self._describing: dict[str, trio.Event] = {}  # keys whose metadata is being fetched
        self._nursery: trio.Nursery | None = None
        self._listing_ahead = trio.CapacityLimiter(LISTING_AHEAD_PARALLEL)
        self._ahead: set[str] = set()  # prefixes a listing-ahead task was started for
        # Directories a LIST found to span pages: their own lookups ask for one key (a page
        # of a directory too big to be cached whole from it is wasted), and lookups in them
        # HEAD and LIST at once (their names are mostly files).
        self._big_dirs: LRUCache[str, bool] = LRUCache(maxsize=10_000)
        # Whether the server keeps directory markers (None: not known yet), and the empty
        # directories this mount made on one that does not.
        self._markers_work: bool | None = None
        self._local_dirs: set[str] = set()
        # Implicit directories have no object and so no time of their own: show the mount's.
        self._mounted_at_s = time.time()

    # --- attributes ----------------------------------------------------------------------

    def _mode(self, kind: Kind, stored_mode: int | None) -> int:
        if kind == Kind.SPECIAL and stored_mode is not None:
            type_bits = stat.S_IFMT(stored_mode)
        else:
            type_bits = {Kind.FILE: stat.S_IFREG, Kind.DIR: stat.S_IFDIR, Kind.SYMLINK: stat.S_IFLNK,
                         Kind.SPECIAL: stat.S_IFREG}[kind]
        if kind == Kind.SYMLINK:
            return type_bits | 0o777
        if self._config.umask is not None:
            return type_bits | (0o777 & ~self._config.umask)
        if stored_mode is not None:
            return type_bits | stat.S_IMODE(stored_mode)
        default = self._config.default_dir_mode if kind == Kind.DIR else self._config.default_file_mode
        return type_bits | default

    def attr_from_meta(self, kind: Kind, meta: ObjectMeta) -> Attr:
        return self._attr_from_user_meta(kind, meta.user_meta, 0 if kind == Kind.DIR else meta.size_bytes,
                                         meta.last_modified_s)

    def _attr_from_user_meta(self, kind: Kind, user: Mapping[str, str], size: int, default_mtime_s: float) -> Attr:
        """COSFS's headers (mode, uid, gid, mtime) plus cosfs's atime, ctime and rdev."""
        stored_mode = _int_or_none(user.get("mode")) or _int_or_none(user.get("permissions"))
        uid = _int_or_none(user.get("uid"))
        gid = _int_or_none(user.get("gid"))
        mtime = _ns_or_none(user.get("mtime"))
        mtime_ns = int(default_mtime_s * 1e9) if mtime is None else mtime
        atime, ctime = _ns_or_none(user.get("atime")), _ns_or_none(user.get("ctime"))
        return Attr(
            0,
            self._mode(kind, stored_mode),
            size,
            self._owner(uid, self._config.force_uid, self._config.uid),
            self._owner(gid, self._config.force_gid, self._config.gid),
            mtime_ns,
            nlink=2 if kind == Kind.DIR else 1,
            atime_ns=atime,
            ctime_ns=None if ctime is None else max(mtime_ns, ctime),
            rdev=_int_or_none(user.get("rdev")) or 0,
        )

    @staticmethod
    def _owner(stored: int | None, forced: int | None, default: int) -> int:
        """uid=/gid= own every entry (libfuse applies them in COSFS and s3fs); else the
        stored owner, else the default."""
        if forced is not None:
            return forced
        return default if stored is None else stored

    def implicit_dir_attr(self) -> Attr:
        """A directory with no marker object: COSFS's defaults, and the mount's time (it has
        no time of its own)."""
        return Attr(
            0,
            self._mode(Kind.DIR, None),
            0,
            self._owner(None, self._config.force_uid, self._config.uid),
            self._owner(None, self._config.force_gid, self._config.gid),
            int(self._mounted_at_s * 1e9),
            nlink=2,
        )

    def now(self) -> float:
        return self._clock()

    def _expiry(self) -> float:
        return self._clock() + self._config.stat_ttl_s

    # --- listing -------------------------------------------------------------------------

    def start(self, nursery: trio.Nursery) -> None:
        """Attach the nursery that runs listings ahead."""
        self._nursery = nursery

    async def list_dir(self, directory: Inode) -> list[DirEntry]:
        """The directory's entries: the listing (cached or from LIST, all pages), merged with
        files this mount has written but not committed yet."""
        if directory.kind != Kind.DIR:
            raise NotADirectory(directory.key)
        listing = await self._listing(directory.key)
        self._list_siblings_ahead(directory.key)
        return self._merge_dirty(directory.key, listing)

    def _list_siblings_ahead(self, prefix: str) -> None:
        """A tree walk (find, du, cp -r, tar, rsync) reads a folder, then its subdirectories
        one after the other, in listing order. Once the first subdirectory of a folder a
        readdir read, or two neighbours in a row, are read, LIST the next LISTING_AHEAD
        siblings in the background (a few at a time) and HEAD their first entries, so the
        walk finds them described instead of waiting for each in turn. A single `ls` of a
        folder whose parent was not read starts nothing."""
        if self._nursery is None or prefix == self._inodes.get(ROOT_INO).key:
            return
        parent = prefix[: prefix.rstrip("/").rfind("/") + 1]
        siblings = self._listings.get(parent)
        if siblings is None:
            return
        index = bisect.bisect_left(siblings, prefix[len(parent):-1], key=lambda e: e.name)
        window = range(max(0, index - SCAN_ENTRIES), index)
        previous = next((siblings[i] for i in reversed(window) if siblings[i].kind == Kind.DIR), None)
        if previous is not None and previous.key not in self._listings:
            return  # (the parent's listing is cached: a readdir read it)
        following = (e for e in siblings[index + 1:index + 1 + SCAN_ENTRIES] if e.kind == Kind.DIR)
        for entry in itertools.islice(following, LISTING_AHEAD):
            if not self._known(entry.key) and entry.key not in self._ahead:
                self._ahead.add(entry.key)
                self._nursery.start_soon(self._list_ahead, entry.key)

    async def _list_ahead(self, prefix: str) -> None:
        try:
            async with self._listing_ahead:
                if not self._known(prefix):
                    entries = await self._listing(prefix, unread=True)
                    await self.describe(entries[:DESCRIBE_AHEAD])
        except CosfsError as exc:  # the walk's own readdir will try again and report
            log.debug("listing %s ahead failed: %s", prefix, exc)
        except Exception:  # a bug: the walk lists it itself, the mount stays up
            log.exception("listing %s ahead crashed", prefix)
        finally:
            self._ahead.discard(prefix)

    def _merge_dirty(self, prefix: str, entries: list[DirEntry]) -> list[DirEntry]:
        """The listing plus what only this mount knows: staged files and, on a server that
        cannot store directory markers, the empty directories made here."""
        dirty = self._staging.under(prefix)
        local = [d for d in self._local_dirs if d.startswith(prefix) and d != prefix and "/" not in d[len(prefix):-1]]
        if not dirty and not local:
            return entries
        merged = {e.name: e for e in entries}
        for key in local:
            name = key[len(prefix):-1]
            merged[name] = DirEntry(name, Kind.DIR, key)
        for item in dirty:
            rest = item.key[len(prefix):]
            name, slash, _ = rest.partition("/")
            if not usable_name(name):
                continue
            if slash:
                merged.setdefault(name, DirEntry(name, Kind.DIR, prefix + name + "/"))
            elif merged.get(name, None) is None or merged[name].kind != Kind.DIR:
                merged[name] = DirEntry(name, Kind.FILE, item.key)
        return sorted(merged.values(), key=lambda e: e.name)

    def _known(self, prefix: str) -> bool:
        """Whether the listing of `prefix` is cached, unread or being fetched."""
        return prefix in self._listings or prefix in self._unread or prefix in self._listing_in_flight

    def note_entry(self, prefix: str, entry: DirEntry) -> None:
        """Our own change made `entry` exist: put it in the cached listing, drop negatives."""
        self.forget_negative(prefix, entry.name)
        self._changing(prefix)
        self._unread.pop(prefix, None)
        listing = self._listings.get(prefix)
        if listing is None:
            return
        index = bisect.bisect_left(listing, entry.name, key=lambda e: e.name)
        if index < len(listing) and listing[index].name == entry.name:
            self._count_dirs(prefix, listing, -(listing[index].kind == Kind.DIR))
            listing[index] = entry
        else:
            listing.insert(index, entry)
        self._count_dirs(prefix, listing, entry.kind == Kind.DIR)

    def note_removed(self, prefix: str, name: str) -> None:
        """Our own change removed `name`: drop it from the cached listing."""
        self._changing(prefix)
        self._unread.pop(prefix, None)
        listing = self._listings.get(prefix)
        if listing is None:
            return
        index = bisect.bisect_left(listing, name, key=lambda e: e.name)
        if index < len(listing) and listing[index].name == name:
            self._count_dirs(prefix, listing, -(listing[index].kind == Kind.DIR))
            del listing[index]

    def _changing(self, prefix: str) -> None:
        if prefix in self._listing_in_flight:
            self._changed_while_listing.add(prefix)

    def _count_dirs(self, prefix: str, listing: list[DirEntry], change: int) -> None:
        """Keep the subdirectory count of `listing` (if one is kept) through an edit."""
        counted = self._dir_counts.get(prefix)
        if counted is not None and counted[0] is listing and change:
            self._dir_counts[prefix] = (listing, counted[1] + change)

    async def _listing(self, prefix: str, *, unread: bool = False) -> list[DirEntry]:
        """The listing of `prefix`, fetched again when what it lacks is no longer trusted
        (`_absent_trusted`). Concurrent callers for one prefix share one LIST walk.
        `unread`: fetched ahead of any readdir (kept aside until one asks)."""
        while True:
            trusted = self._absent_trusted(prefix)
            cached = self._listings.get(prefix)
            if cached is not None and trusted:
                return cached
            early = self._unread.get(prefix)
            if early is not None and trusted:
                if not unread:
                    self._listings[prefix] = self._unread.pop(prefix)
                return early
            pending = self._listing_in_flight.get(prefix)
            if pending is None:
                break
            await pending.wait()
        done = trio.Event()
        self._listing_in_flight[prefix] = done
        started = self._clock()
        try:
            entries = await self._fetch_listing(prefix)
            previous = self._listings.pop(prefix, None) or self._unread.pop(prefix, None)
            (self._unread if unread else self._listings)[prefix] = entries
            if self._listed(prefix, started) and previous:
                self._forget_missing(previous, entries)
            return entries
        finally:
            del self._listing_in_flight[prefix]
            done.set()

    def _listed(self, prefix: str, started_s: float) -> bool:
        """A listing of `prefix` whose LIST started at `started_s` was stored. One that
        this mount changed while it ran may lack our change: its "absent" is not trusted
        (False)."""
        if prefix in self._changed_while_listing:
            self._changed_while_listing.discard(prefix)
            self._listed_at.pop(prefix, None)
            return False
        self._listed_at[prefix] = started_s
        return True

    def _absent_trusted(self, prefix: str) -> bool:
        """Whether a name the cached listing of `prefix` lacks may be answered "no such
        file": its LIST started less than negative_cache_expire ago."""
        started = self._listed_at.get(prefix)
        return started is not None and self._clock() - started < self._config.negative_ttl_s

    def _forget_missing(self, previous: list[DirEntry], current: list[DirEntry]) -> None:
        """Names another client removed since the previous listing: their inodes are
        asked for again, and the kernel forgets them (stat, mkdir and open(O_CREAT) then see
        that they are gone)."""
        now_listed = {entry.name for entry in current}
        for entry in previous:
            if entry.name not in now_listed and entry.key not in self._staging:
                self.vanished(entry.key)

    def vanished(self, key: str) -> None:
        """COS no longer holds `key` (nor anything below it, for a directory): the inodes
        standing for it are asked for again, and the kernel forgets their names."""
        for inode in self._inodes.children_with_key(key):
            inode.expires_at_s = 0.0
            self.kernel.forget_attributes(inode.ino)
            if self._inodes.child(inode.parent, inode.name) is inode:
                self.kernel.forget_entry(inode.parent, inode.name)

    async def _fetch_listing(self, prefix: str) -> list[DirEntry]:
        pages = [page async for page in self._store.list_all(prefix, delimiter="/")]
        if len(pages) > 1:
            self._big_dirs[prefix] = True
        return self._entries(prefix, pages)

    def _entries(self, prefix: str, pages: list[ListPage]) -> list[DirEntry]:
        """The listing of `prefix` from its LIST pages (delimiter "/")."""
        files: dict[str, DirEntry] = {}
        dirs: dict[str, DirEntry] = {}
        for page in pages:
            for common in page.common_prefixes:
                name = common[len(prefix):-1]
                if self._accept(name, common):
                    dirs[name] = DirEntry(name, Kind.DIR, common)
            for item in page.entries:
                self._add_listed_object(prefix, item, files, dirs)
        for name in dirs:
            files.pop(name, None)  # a directory shadows a file of the same name
        merged = list(files.values()) + list(dirs.values())
        merged.sort(key=lambda e: e.name)
        return merged

    def _add_listed_object(self, prefix: str, item: ListEntry, files: dict[str, DirEntry],
                           dirs: dict[str, DirEntry]) -> None:
        name = item.key[len(prefix):]
        if not name:
            return  # the directory's own marker
        if name.endswith(LEGACY_DIR_SUFFIX) and "/" not in name:
            base = name[: -len(LEGACY_DIR_SUFFIX)]
            if self._accept(base, item.key):
                dirs.setdefault(base, DirEntry(base, Kind.DIR, prefix + base + "/"))
            return
        if self._accept(name, item.key):
            files[name] = DirEntry(name, Kind.FILE, item.key, item.etag)

    def _accept(self, name: str, key: str) -> bool:
        if usable_name(name) and "/" not in name:
            return True
        if key not in self._warned:
            self._warned[key] = True
            log.warning("skipping key %r: %r cannot be a file name", key, name)
        return False

    def invalidate_listing(self, prefix: str) -> None:
        self._listings.pop(prefix, None)
        self._unread.pop(prefix, None)

    def forget_negative(self, prefix: str, name: str) -> None:
        self._negative.pop((prefix, name), None)

    # --- lookup --------------------------------------------------------------------------

    def _dir_inode(self, parent: Inode, name: str, key: str, marker: ObjectMeta | None) -> Inode:
        """A directory's inode from its marker's metadata (None: an implicit directory)."""
        attr = self.implicit_dir_attr() if marker is None else self.attr_from_meta(Kind.DIR, marker)
        inode = self._inodes.upsert(parent.ino, name, key, attr, etag=None, expires_at_s=self._expiry())
        if marker is not None:
            inode.user_meta = dict(marker.user_meta)
        return inode

    def known_meta(self, entry: DirEntry) -> tuple[bool, ObjectMeta | None]:
        """(known, metadata) of a listed entry without asking COS: a file's from a HEAD (or
        our own write) of the same version within the stat TTL; a directory's marker (None
        for an implicit directory)."""
        if entry.kind == Kind.DIR:
            marker = self._markers.get(entry.key, _UNKNOWN)
            return (False, None) if marker is _UNKNOWN else (True, marker)
        meta = self._metas.get((entry.key, entry.etag))
        return meta is not None, meta

    async def fetch_meta(self, entry: DirEntry) -> ObjectMeta | None:
        """What a listing does not say about `entry`: a file's HEAD (NotFound when it is gone
        since the LIST), a directory's marker (None: implicit). Remembered for later; callers
        asking for one entry at once share one request."""
        while (pending := self._describing.get(entry.key)) is not None:
            await pending.wait()
            known, meta = self.known_meta(entry)
            if known:
                return meta
        done = self._describing[entry.key] = trio.Event()
        try:
            if entry.kind == Kind.DIR:
                return await self._marker(entry.key)
            meta = await self._store.head_object(entry.key)
            self.remember_meta(meta)
            return meta
        finally:
            del self._describing[entry.key]
            done.set()

    def describer(self, entries: list[DirEntry]) -> ListingDescriber:
        """What fetches the stored metadata of a directory handle's entries ahead of readdir."""
        assert self._nursery is not None, "Namespace.start() attaches the nursery first"
        return ListingDescriber(entries, self._nursery, known=self.known_meta, fetch=self.fetch_meta, gone=GONE,
                                parallel=self._config.listing_parallel, window=DESCRIBE_WINDOW)

    async def describe(self, entries: list[DirEntry]) -> None:
        """Fetch the stored metadata of `entries` not known yet (`listing_parallel` at a
        time), for the readdir that will follow; failures are left for it to meet."""
        limiter = trio.CapacityLimiter(self._config.listing_parallel)

        async def fetch(entry: DirEntry) -> None:
            async with limiter:
                with contextlib.suppress(CosfsError):
                    await self.fetch_meta(entry)

        async with trio.open_nursery() as nursery:
            for entry in entries:
                if not self.known_meta(entry)[0]:
                    nursery.start_soon(fetch, entry)

    def inode_for_entry(self, parent: Inode, entry: DirEntry, meta: ObjectMeta | None) -> Inode:
        """The inode for a listed entry (readdirplus) whose stored metadata `meta` is known
        (`known_meta`, `describe`): a file's HEAD, a directory's marker or None."""
        if entry.kind == Kind.DIR:
            return self._dir_inode(parent, entry.name, entry.key, meta)
        assert meta is not None
        existing = self._inodes.child(parent.ino, entry.name)
        if (existing is not None and existing.key == meta.key and existing.etag == meta.etag
                and existing.expires_at_s > self._clock()):
            return existing
        return self.inode_from_head(parent, entry.name, meta)

    def remember_meta(self, meta: ObjectMeta) -> None:
        """Metadata of one object version, for listings of it (for the stat TTL)."""
        self._metas[(meta.key, meta.etag)] = meta

    async def _marker(self, prefix: str) -> ObjectMeta | None:
        """The metadata of a directory's marker object (COSFS keeps mode/uid/gid/mtime
        there), None for an implicit directory."""
        known = self._markers.get(prefix, _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        try:
            meta: ObjectMeta | None = await self._store.head_object(prefix)
        except NotFound:
            meta = None
        self._markers[prefix] = meta
        return meta

    async def lookup(self, parent: Inode, name: str) -> Inode:
        """The child `name` of `parent`, from caches when fresh, else from COS (_lookup_remote)."""
        if parent.kind != Kind.DIR:
            raise NotADirectory(parent.key)
        check_name(name)
        if len((parent.key + name).encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
            raise NameTooLong(f"the object key would be more than COS's {MAX_KEY_BYTES} bytes")
        existing = self._inodes.child(parent.ino, name)
        if existing is not None and existing.expires_at_s > self._clock():
            return existing
        dirty = self._staging.get(parent.key + name)
        if dirty is not None:
            return self.inode_for_dirty(parent, name, dirty)
        if parent.key + name + "/" in self._local_dirs:
            return self._dir_inode(parent, name, parent.key + name + "/", self._markers.get(parent.key + name + "/"))
        listing = self._listings.get(parent.key)
        if listing is None:
            listing = self._unread.get(parent.key)
        entry = None if listing is None else _find(self._merge_dirty(parent.key, listing), name)
        if entry is None:
            if (parent.key, name) in self._negative:
                raise NotFound(parent.key + name)
            if listing is not None and self._absent_trusted(parent.key):
                raise NotFound(parent.key + name)
            # Not listed, or listed too long ago for its absence to count: ask COS (the
            # listing stays, untrusted, for the next readdir to compare with the new one).
            return await self._lookup_remote(parent, name, None)
        known, meta = self.known_meta(entry)
        if known:
            return self.inode_for_entry(parent, entry, meta)
        return await self._lookup_remote(parent, name, entry.kind)

    async def _lookup_remote(self, parent: Inode, name: str, listed_as: Kind | None) -> Inode:
        """HEAD `name` and LIST `name/`: the LIST first, so a directory costs that one request
        (it shadows a file of its name, and its page is its listing); the HEAD first for what
        the parent's listing says is a file; both at once in a directory too big to list,
        where most names are files. Each asks the other only when it found nothing."""
        key = parent.key + name
        head: ObjectMeta | None = None
        has_children = False
        marker: ObjectMeta | None = None

        async def do_head() -> None:
            nonlocal head
            try:
                head = await self._store.head_object(key)
            except NotFound:
                pass

        async def do_list() -> None:
            nonlocal has_children, marker
            prefix = key + "/"
            started = self._clock()
            big = prefix in self._big_dirs
            page = await self._store.list_objects(prefix, delimiter="/", max_keys=1 if big else MAX_LIST_KEYS)
            has_children = bool(page.entries or page.common_prefixes)
            if page.is_truncated:
                self._big_dirs[prefix] = True
            elif has_children and not self._known(prefix):
                # The whole directory in one page: it is its listing too, for the readdir
                # that usually follows (ls, find and du list what they just looked up).
                self._unread[prefix] = self._entries(prefix, [page])
                self._listed_at[prefix] = started
            if page.entries and page.entries[0].key == prefix:
                marker = await self._marker(prefix)  # an explicit directory: its metadata
            else:
                self._markers[prefix] = None

        if listed_as is None and parent.key in self._big_dirs:
            with one_error():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(do_head)
                    nursery.start_soon(do_list)
        elif listed_as is not None and listed_as != Kind.DIR:
            await do_head()
            if head is None:
                await do_list()
        else:
            await do_list()
            if not has_children:
                await do_head()
        if has_children:
            return self._dir_inode(parent, name, key + "/", marker)
        if head is not None:
            return self.inode_from_head(parent, name, head)
        if listed_as in (None, Kind.DIR) and await self._legacy_dir_exists(key):
            return self._dir_inode(parent, name, key + "/", None)
        self._negative[(parent.key, name)] = True
        raise NotFound(key)

    async def _legacy_dir_exists(self, key: str) -> bool:
        """An empty directory made by old s3fs/COSFS is only its `name_$folder$` object."""
        try:
            await self._store.head_object(key + LEGACY_DIR_SUFFIX)
        except NotFound:
            return False
        return True

    def attr_for_dirty(self, dirty: DirtyFile) -> Attr:
        """A staged file: its size and mtime are the staged ones (a write changes ctime too);
        a file whose last name is gone (an orphan) has no link."""
        mode = _int_or_none(dirty.options.user_meta.get("mode"))
        kind = Kind.SYMLINK if mode is not None and stat.S_ISLNK(mode) else Kind.FILE
        attr = self._attr_from_user_meta(kind, dirty.options.user_meta, dirty.size, 0)
        attr = dataclasses.replace(attr, mtime_ns=dirty.mtime_ns,
                                   ctime_ns=max(dirty.mtime_ns, attr.ctime_ns or 0))
        if dirty.key.startswith(ORPHAN_PREFIX):
            attr = dataclasses.replace(attr, nlink=0)
        return attr

    def inode_for_dirty(self, parent: Inode, name: str, dirty: DirtyFile) -> Inode:
        existing = self._inodes.child(parent.ino, name)
        etag = existing.etag if existing is not None and existing.key == dirty.key else None
        inode = self._inodes.upsert(parent.ino, name, dirty.key, self.attr_for_dirty(dirty), etag=etag,
                                    expires_at_s=self._expiry())
        inode.user_meta = dict(dirty.options.user_meta)
        inode.content_type = dirty.options.content_type
        return inode

    def inode_from_head(self, parent: Inode, name: str, head: ObjectMeta) -> Inode:
        mode = _int_or_none(head.user_meta.get("mode"))
        kind = Kind.FILE if mode is None or stat.S_ISDIR(mode) else kind_of_mode(mode)
        self.remember_meta(head)
        inode = self._inodes.upsert(parent.ino, name, head.key, self.attr_from_meta(kind, head),
                                    etag=head.etag, expires_at_s=self._expiry())
        inode.user_meta = dict(head.user_meta)
        inode.content_type = head.content_type
        return inode

    async def refresh(self, inode: Inode) -> Inode:
        """Fresh attributes for a file from HEAD (after its TTL ran out, or at open); a file
        with uncommitted changes answers from its staged state."""
        if inode.kind == Kind.DIR or inode.ino == ROOT_INO:
            inode.expires_at_s = self._expiry()
            return inode
        dirty = self._staging.get(inode.key)
        if dirty is not None:
            inode.attr = dataclasses.replace(self.attr_for_dirty(dirty), ino=inode.ino)
            inode.expires_at_s = self._expiry()
            return inode
        head = await self._store.head_object(inode.key)
        parent = self._inodes.get(inode.parent)
        return self.inode_from_head(parent, inode.name, head)

    async def revalidate(self, inode: Inode) -> Inode:
        """Close-to-open, as s3fs: an open reads what COS holds now, not what this mount saw
        within the stat TTL. One HEAD; a new version replaces the attributes (and the
        kernel's, so a read is not cut at the old size), a deleted object is forgotten
        here and in the kernel (NotFound)."""
        parent = self._inodes.get(inode.parent)
        if self._inodes.child(parent.ino, inode.name) is not inode:
            return inode  # no longer named (unlinked or replaced here): the handle reads its version
        try:
            head = await self._store.head_object(inode.key)
        except NotFound:
            self.note_removed(parent.key, inode.name)
            self.vanished(inode.key)
            raise
        if head.etag == inode.etag:
            inode.expires_at_s = self._expiry()
            return inode
        fresh = self.inode_from_head(parent, inode.name, head)
        self.kernel.forget_attributes(inode.ino)
        if fresh is not inode:  # it is something else now (a symlink, a device): look it up again
            self.kernel.forget_entry(parent.ino, inode.name)
            raise Stale(f"{inode.key} was replaced by another kind of file")
        return fresh

    async def readlink(self, inode: Inode) -> str:
        """A symlink's target (kept per version: a version's bytes never change). Its size
        is checked before any GET and the GET asks for no more than PATH_MAX bytes, so a huge
        object posing as a symlink cannot fill memory."""
        known = self._link_targets.get((inode.key, inode.etag))
        if known is not None:
            return known
        size = inode.attr.size_bytes
        if size > PATH_MAX or size == 0:
            raise InvalidName(f"{inode.key} is {size} bytes: not a symbolic link target (at most {PATH_MAX})")
        _, body = await self._store.get_object(inode.key, byte_range=(0, size - 1), if_match=inode.etag)
        if len(body) != size:
            raise InvalidName(f"{inode.key}: the symbolic link's target changed size while it was read")
        target = body.decode("utf-8", "surrogateescape")
        self._link_targets[(inode.key, inode.etag)] = target
        return target

    async def is_empty(self, directory: Inode) -> bool:
        """No object below the prefix but its own marker, and nothing staged below it."""
        if self._staging.under(directory.key):
            return False
        page = await self._store.list_objects(directory.key, max_keys=2)
        keys = [e.key for e in page.entries if e.key != directory.key]
        return not keys and not page.common_prefixes

    # --- tree changes (the caller holds the keys in the write-back's locks) ----------------

    async def make_dir(self, parent: Inode, name: str, meta: dict[str, str]) -> Inode:
        """mkdir: a COSFS directory marker `name/` carrying the metadata. On a server that
        cannot store markers the directory lives in this mount until a file is put in it."""
        key = parent.key + name + "/"
        etag = ""
        if self._markers_work is not False:
            try:
                result = await self._store.put_object(key, b"", WriteOptions(content_type=DIRECTORY_CONTENT_TYPE,
                                                                             user_meta=meta))
            except CosError as exc:
                if self._markers_work is not None or exc.status < 500:
                    raise
                # The first marker of this mount refused by a server error: a server that
                # cannot store `dir/` objects (some answer 500 or 501 to them).
                self._markers_refused(key, f"PUT {key!r} answered {exc.status} {exc.code}")
            else:
                etag = result.etag
                if self._markers_work is None:
                    await self._check_markers_work(key)
        if self._markers_work is False:
            self._local_dirs.add(key)
        self.note_entry(parent.key, DirEntry(name, Kind.DIR, key))
        self._listings[key] = []  # new and empty: no LIST needed to show it
        self._listed_at[key] = self._clock()
        marker = self._markers[key] = ObjectMeta(key, 0, etag, time.time(), DIRECTORY_CONTENT_TYPE, None,
                                                 dict(meta))
        attr = self.attr_from_meta(Kind.DIR, marker)
        inode = self._inodes.upsert(parent.ino, name, key, attr, etag=None, expires_at_s=self._expiry())
        inode.user_meta = dict(meta)
        inode.content_type = DIRECTORY_CONTENT_TYPE
        return inode

    async def _check_markers_work(self, key: str) -> None:
        """Once per mount, after the first marker PUT: does the server keep `dir/` as a
        directory marker? Some S3 servers answer 200 and store a file `dir` instead (and
        then refuse every key below it)."""
        page = await self._store.list_objects(key, max_keys=1)
        if bool(page.entries) and page.entries[0].key == key:
            self._markers_work = True
            return
        await self._store.delete_object(key[:-1])  # the stray file it made of our marker
        self._markers_refused(key, f"PUT {key!r} made no {key!r}")

    def _markers_refused(self, key: str, why: str) -> None:
        self._markers_work = False
        log.warning("this server does not store directory markers (%s): empty directories made through this "
                    "mount exist in this mount only, until a file is put in them", why)

    async def remove_dir(self, parent: Inode, inode: Inode) -> None:
        """rmdir: only an empty directory; its marker (if any) goes."""
        if not await self.is_empty(inode):
            raise NotEmpty(inode.key)
        self._local_dirs.discard(inode.key)
        await self._store.delete_object(inode.key)
        self.note_removed(parent.key, inode.name)
        self.invalidate_listing(inode.key)
        self._markers.pop(inode.key, None)
        self._inodes.unlink_name(parent.ino, inode.name)

    async def remove_file(self, parent: Inode, name: str, key: str) -> None:
        """unlink: the object goes, then the name."""
        await self._store.delete_object(key)
        self.note_removed(parent.key, name)
        self._inodes.unlink_name(parent.ino, name)

    async def put_symlink(self, parent: Inode, name: str, target: str, meta: dict[str, str]) -> Inode:
        key = parent.key + name
        body = target.encode("utf-8", "surrogateescape")
        if len(body) >= PATH_MAX:
            raise NameTooLong(f"a symbolic link target of {len(body)} bytes")
        result = await self._store.put_object(key, body, WriteOptions(user_meta=meta))
        self._link_targets[(key, result.etag)] = target
        now = time.time()
        head = ObjectMeta(key, len(body), result.etag, now, "application/octet-stream", result.crc64, dict(meta))
        self.note_entry(parent.key, DirEntry(name, Kind.SYMLINK, key, result.etag))
        return self.inode_from_head(parent, name, head)

    async def put_special(self, parent: Inode, name: str, meta: dict[str, str]) -> Inode:
        """mknod of a FIFO, socket or device: a zero-byte object whose type and permissions
        are in x-cos-meta-mode and the device number in x-cos-meta-rdev (COSFS's format)."""
        key = parent.key + name
        result = await self._store.put_object(key, b"", WriteOptions(user_meta=meta))
        now = time.time()
        self.note_entry(parent.key, DirEntry(name, Kind.FILE, key, result.etag))
        return self.inode_from_head(parent, name, ObjectMeta(key, 0, result.etag, now, "application/octet-stream",
                                                              result.crc64, dict(meta)))

    def dir_links(self, directory: Inode) -> int:
        """st_nlink of a directory: 2 plus its subdirectories when this mount has its listing;
        1 otherwise, which find(1) and fts(3) read as "not counted" (2 would claim that
        it has no subdirectory). The kernel asks at every stat of the directory (after each
        create in it): the listing's count is kept, and only what `_merge_dirty` would add
        is looked at, so a create in a directory of N entries does not cost O(N)."""
        prefix = directory.key
        listing = self._listings.get(prefix)
        if listing is None:
            return 1
        counted = self._dir_counts.get(prefix)
        if counted is None or counted[0] is not listing:
            counted = (listing, sum(1 for entry in listing if entry.kind == Kind.DIR))
            self._dir_counts[prefix] = counted
        added: set[str] = set()
        for key in self._local_dirs:
            name = key[len(prefix):-1]
            if key.startswith(prefix) and key != prefix and "/" not in name:
                entry = _find(listing, name)
                if entry is None or entry.kind != Kind.DIR:
                    added.add(name)
        for item in self._staging.under(prefix):
            name, slash, _ = item.key[len(prefix):].partition("/")
            if slash and usable_name(name) and _find(listing, name) is None:
                added.add(name)
        return 2 + counted[1] + len(added)

    def moved(self, inode: Inode, old_parent: Inode, new_parent: Inode, new_name: str, new_key: str) -> None:
        """A rename finished in COS: names, keys and cached listings follow."""
        self.note_removed(old_parent.key, inode.name)
        if inode.kind == Kind.DIR:
            self._move_cached(inode.key, new_key)
            self._inodes.rekey_below(inode.key, new_key)
        self._inodes.move(inode.ino, new_parent.ino, new_name, new_key)
        self.note_entry(new_parent.key, DirEntry(new_name, inode.kind, new_key, inode.etag))

    def _move_cached(self, old_prefix: str, new_prefix: str) -> None:
        """A directory moved: the listings and markers cached below it move with it."""
        def rekeyed(key: str) -> str:
            return new_prefix + key[len(old_prefix):] if key.startswith(old_prefix) else key

        self.invalidate_listing(new_prefix)
        for prefix in [p for p in self._unread if p.startswith(old_prefix)]:
            self._unread.pop(prefix, None)
        for prefix in [p for p in self._listings if p.startswith(old_prefix)]:
            entries = self._listings.pop(prefix)
            self._listings[rekeyed(prefix)] = [dataclasses.replace(e, key=rekeyed(e.key)) for e in entries]
            started = self._listed_at.pop(prefix, None)
            if started is not None:
                self._listed_at[rekeyed(prefix)] = started
        for prefix in [p for p in self._markers if p.startswith(old_prefix)]:
            marker = self._markers.pop(prefix)
            self._markers[rekeyed(prefix)] = (None if marker is None
                                              else dataclasses.replace(marker, key=rekeyed(prefix)))

    async def rewrite_meta(self, inode: Inode, meta: dict[str, str]) -> None:
        """chmod/chown/utimens/xattrs of a committed object: a self-copy with the metadata
        Replaced (If-Match on the version we know), or a marker for an implicit directory."""
        if inode.kind == Kind.DIR:
            options = WriteOptions(content_type=DIRECTORY_CONTENT_TYPE, user_meta=meta)
            if self._markers_work is False:
                pass  # nowhere to store it on this server: this mount keeps it
            elif self._markers.get(inode.key) is None:
                # An implicit directory (or one whose marker we have not seen): a marker
                # holds the metadata from now on.
                await self._store.put_object(inode.key, b"", options)
            else:
                await self._store.copy_object(inode.key, inode.key, replace_metadata=options)
            self._markers[inode.key] = ObjectMeta(inode.key, 0, "", time.time(), DIRECTORY_CONTENT_TYPE, None,
                                                  dict(meta))
        else:
            options = WriteOptions(content_type=inode.content_type, user_meta=meta)
            result = await self._store.copy_object(inode.key, inode.key, replace_metadata=options,
                                                   source_if_match=inode.etag)
            # Same bytes: the kernel's cached pages stay valid under the new ETag.
            inode.page_cache_etag = result.etag if inode.page_cache_etag == inode.etag else None
            inode.etag = result.etag
            self.remember_meta(ObjectMeta(inode.key, inode.attr.size_bytes, result.etag, time.time(),
                                          inode.content_type, result.crc64, dict(meta)))
        inode.user_meta = dict(meta)

    def forget_version(self, key: str) -> None:
        """What this mount knew of `key`'s object is stale (a conflict): ask COS next time."""
        prefix, _, _ = key.rpartition("/")
        self.invalidate_listing(prefix + "/" if prefix else "")
        for inode in self._inodes.children_with_key(key):
            inode.expires_at_s = 0.0
            inode.page_cache_etag = None

    def committed(self, key: str, size: int, etag: str, crc64: int | None, options: WriteOptions) -> list[Inode]:
        """A staged file became the object `key`: listings and every inode of that key see
        the new version. Returns those inodes."""
        now = time.time()
        prefix, _, name = key.rpartition("/")
        self.note_entry(prefix + "/" if prefix else "", DirEntry(name, Kind.FILE, key, etag))
        self.remember_meta(ObjectMeta(key, size, etag, now, options.content_type, crc64, dict(options.user_meta)))
        inodes = self._inodes.children_with_key(key)
        for inode in inodes:
            inode.etag = etag
            inode.page_cache_etag = etag if inode.open_count else None
            inode.expires_at_s = self._expiry()
            inode.attr = dataclasses.replace(inode.attr, size_bytes=size)
        return inodes


def root_attr(config: FsConfig) -> Attr:
    """The mount point's own attributes, as COSFS gives them: 0777 with allow_other (0777 &
    ~mp_umask when mp_umask is given too), 0700 without; owned by uid=/gid= when given, else
    by who mounted; mounted now."""
    if config.allow_other:
        mode = 0o777 & ~config.mp_umask if config.mp_umask_set else 0o777
    else:
        mode = 0o700
    uid = config.owner_uid if config.force_uid is None else config.force_uid
    gid = config.owner_gid if config.force_gid is None else config.force_gid
    return Attr(ROOT_INO, stat.S_IFDIR | mode, 0, uid, gid, time.time_ns(), nlink=2)


def _find(entries: list[DirEntry], name: str) -> DirEntry | None:
    index = bisect.bisect_left(entries, name, key=lambda e: e.name)
    if index < len(entries) and entries[index].name == name:
        return entries[index]
    return None


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip(), 10)
    except ValueError:
        return None


def _ns_or_none(value: str | None) -> int | None:
    """A time header (decimal seconds, whole as COSFS writes them, or with a fraction) in ns."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1_000_000_000
    seconds = _float_or_none(value)
    return None if seconds is None else int(seconds * 1e9)


def _float_or_none(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None
