"""POSIX conformance of the mount (IEEE Std 1003.1 and the Linux man pages), table-driven."""
