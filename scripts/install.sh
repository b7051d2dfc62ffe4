#!/usr/bin/env bash
# Installs cosfs as a tool, as root: a virtualenv of its own (default /opt/cosfs) holding
# cosfs from a wheel, and the links that mount(8), fstab, the systemd units and operators use
# (and the man pages cosfs(1), mount.cosfs(8) under /usr/local/share/man):
#
#   /usr/local/bin/cosfs     -> PREFIX/bin/cosfs
#   /sbin/mount.cosfs        -> PREFIX/bin/mount.cosfs   (fstab type cosfs)
#   /sbin/mount.fuse.cosfs   -> PREFIX/bin/mount.cosfs   (fstab type fuse.cosfs)
#
# The links point into PREFIX, never into a clone: deleting or moving the clone changes
# nothing, and installing from another clone replaces what PREFIX holds, not where the links
# point. A link or file at one of those paths that is not PREFIX's is left alone and nothing
# is changed (exit 1), unless --force. Run it again to upgrade.
#
# usage: scripts/install.sh [--prefix DIR] [--wheel FILE] [--force] [--no-deps] [--root DIR]
#   --prefix DIR   the virtualenv to install into (default /opt/cosfs; created if missing)
#   --wheel FILE   install this wheel (default: build one from this clone)
#   --force        replace links and files at the link paths whatever they point to
#   --no-deps      do not install dependencies (the virtualenv has them already)
#   --root DIR     make the links under DIR instead of / (packaging, tests)
# pip's own settings apply (PIP_INDEX_URL, PIP_NO_INDEX=1 with PIP_FIND_LINKS for an offline
# install...). PYTHON (default python3) creates the virtualenv.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

PREFIX=/opt/cosfs
WHEEL=
FORCE=0
DEPS=1
ROOT=
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --wheel) WHEEL=${2:?--wheel needs a file}; shift 2 ;;
        --force) FORCE=1; shift ;;
        --no-deps) DEPS=0; shift ;;
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$PREFIX" in /*) ;; *) PREFIX=$PWD/$PREFIX ;; esac
PREFIX=${PREFIX%/}
if [ -n "$WHEEL" ]; then
    [ -f "$WHEEL" ] || { echo "install: no wheel $WHEEL" >&2; exit 2; }
    WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
fi

# link path -> what it must point to
LINKS=("$ROOT/usr/local/bin/cosfs" "$PREFIX/bin/cosfs"
       "$ROOT/sbin/mount.cosfs" "$PREFIX/bin/mount.cosfs"
       "$ROOT/sbin/mount.fuse.cosfs" "$PREFIX/bin/mount.cosfs")

# Check every link before anything changes: refuse all or do all.
refused=()
for ((i = 0; i < ${#LINKS[@]}; i += 2)); do
    path=${LINKS[i]} want=${LINKS[i + 1]}
    if [ -L "$path" ]; then
        [ "$(readlink "$path")" = "$want" ] || refused+=("$path -> $(readlink "$path")")
    elif [ -e "$path" ]; then
        refused+=("$path (not a link)")
    fi
done
if [ ${#refused[@]} -gt 0 ] && [ "$FORCE" = 0 ]; then
    echo "install: these are not links to $PREFIX, so nothing was changed:" >&2
    printf '  %s\n' "${refused[@]}" >&2
    echo "install: run again with --force to replace them" >&2
    exit 1
fi

PYTHON=${PYTHON:-python3}
if [ ! -x "$PREFIX/bin/python" ]; then
    echo "install: creating the virtualenv $PREFIX with $($PYTHON --version)"
    "$PYTHON" -m venv "$PREFIX"
fi
VPY=$PREFIX/bin/python

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$WHEEL" ]; then
    # Built from a copy of what the wheel holds, so the clone gets no build/ or egg-info.
    echo "install: building a wheel of $REPO"
    mkdir "$work/src"
    cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/cosfs" "$work/src/"
    find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
    "$VPY" -m pip wheel -q --no-deps --wheel-dir "$work/dist" "$work/src"
    WHEEL=$(ls "$work"/dist/cosfs-*.whl)
fi

echo "install: installing $(basename "$WHEEL") into $PREFIX"
if [ "$DEPS" = 1 ]; then
    "$VPY" -m pip install -q "$WHEEL"
fi
"$VPY" -m pip install -q --no-deps --force-reinstall "$WHEEL"
"$PREFIX/bin/cosfs" --version >/dev/null

for ((i = 0; i < ${#LINKS[@]}; i += 2)); do
    path=${LINKS[i]} want=${LINKS[i + 1]}
    mkdir -p "$(dirname "$path")"
    ln -sfn "$want" "$path"
    echo "install: $path -> $want"
done
# The manual pages generated from the option table (python -m cosfs.optdocs --write).
for page in "$REPO"/docs/man/*.[18]; do
    [ -f "$page" ] || continue
    section=${page##*.}
    mkdir -p "$ROOT/usr/local/share/man/man$section"
    install -m 644 "$page" "$ROOT/usr/local/share/man/man$section/"
    echo "install: $ROOT/usr/local/share/man/man$section/$(basename "$page")"
done
echo "install: $("$PREFIX/bin/cosfs" --version)"
