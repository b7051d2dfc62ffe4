"""The write side: everything between a write(2) and an object in COS.

    owner.py     WriteBack: the one owner. Every change of a file's bytes, size or options,
                 every acknowledgement, commit, rename, unlink and recovery goes through it;
                 it holds the key locks and decides what the journal records.
    locks.py     KeyLocks: per-key locks, and barriers over prefixes (directory renames)
    staging.py   StagingArea: the staged bytes on the local disk; sealed (acknowledged)
                 snapshots that are never written again
    journal.py   Journal: records of acknowledged states (by file id), and the multipart
                 uploads of ours a crash could leave behind
    uploader.py  Uploader: a state to an object (PUT, multipart with part copy, streamed parts)
    renames.py   RenameJournal: journaled directory renames (the key walk)

Imports point down this list and never up: owner -> locks, staging, journal, uploader,
renames; journal -> staging; uploader -> staging; staging, locks and renames import none of
them (tests/unit/test_write_layers.py checks it). Nothing outside the package imports more
than what this module exports, and the filesystem core calls only the owner.
"""

from cosfs.write.owner import Origin, Target, WriteBack, check_user_meta_fits
from cosfs.write.staging import ORPHAN_PREFIX, DirtyFile, Snapshot, StagingArea

__all__ = ["ORPHAN_PREFIX", "DirtyFile", "Origin", "Snapshot", "StagingArea", "Target", "WriteBack",
           "check_user_meta_fits"]
