"""The options' documentation, made from the one table (options.OPTIONS): the argument groups
of `cosfs mount --help` (cli.py builds them with these texts), the README's options tables and
the man pages docs/man/cosfs.1 and docs/man/mount.cosfs.8.

Generated so that they cannot disagree with each other or with the table, whose defaults say
what cli.mount_settings applies. `python -m cosfs.optdocs --write` rewrites the README's
marked regions and the man pages; `--check` (and tests/compat/test_option_docs.py) fails when
the checked-in ones are stale.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cosfs import __version__, options
from cosfs.options import Option

REPO = Path(__file__).resolve().parent.parent
TITLES = {  # group -> (title, description)
    "common": ("common options", ""),
    "cache": ("caching", "What is kept where, and for how long."),
    "write-back": ("transfers and write-back", "How changes go up to COS."),
    "compatibility": ("COSFS and s3fs spellings", "Other names and switches of COSFS and s3fs command lines, with "
                      "the meaning cosfs gives them."),
    "kernel": ("kernel mount options", "Passed to the kernel mount as given."),
    "ignored": ("accepted and ignored", "Accepted so that COSFS, s3fs and FUSE command lines mount; the mount logs "
                "one line saying what cosfs does instead. The refused ones fail, saying why."),
}
METAVARS = {"int": "N", "float": "SECONDS", "size": "SIZE", "octal": "MODE", "choice": "VALUE", "str": "VALUE"}
# Options the Tencent COS CSI driver's cosfs command lines use (README, "Kubernetes").
CSI_OPTIONS = ("url", "passwd_file", "dbglevel", "allow_other", "nonempty", "ensure_diskfree", "use_cache",
               "del_cache", "compat_dir", "cam_role", "disable_content_md5", "parallel_count", "multireq_max",
               "multipart_size")
MAN_PAGES = ("cosfs.1", "mount.cosfs.8")


def default_text(opt: Option) -> str:
    """The default as the docs state it: what the mount does when the option is not given
    ("" for aliases, notes, kernel options and refusals, which have none of their own)."""
    if opt.target or opt.note or opt.kernel or opt.kind == "refuse":
        return ""
    if opt.shown:
        return opt.shown
    value = opt.default
    if opt.kind == "flag":
        return "on" if value else "off"
    if value in (None, ""):
        return "none"
    if opt.kind == "size":
        assert isinstance(value, int)  # a size's default is a byte count (or None, above)
        return options.human_size(value)
    if opt.kind == "float":
        return f"{value:g} s"
    if opt.kind == "octal":
        return f"{value:04o}"
    return str(value)


def metavar(opt: Option) -> str:
    """The value's placeholder: its choices when they are few (0|1), else its kind's."""
    choices = [c for c in opt.choices if c]
    return "|".join(choices) if opt.kind == "choice" and len(choices) <= 4 else METAVARS[opt.kind]


def does(opt: Option, name=str) -> str:
    """What cosfs does with the option; `name` formats the option names it mentions."""
    note = opt.note.partition(": ")[2]
    if opt.kind == "refuse":
        return f"refused: {opt.help}"
    if opt.target:
        return f"same as {name(opt.target)}" + (f"; {note}" if note else "")
    if opt.note:
        return f"accepted, logged{' (warning)' if opt.note_level == logging.WARNING else ''}: {note}"
    if opt.kernel:
        return f"passed to the kernel mount: {opt.help}"
    return opt.help


def help_text(opt: Option) -> str:
    """One option's line in --help (which leaves out "none", the default of most values)."""
    default = default_text(opt)
    text = opt.help if opt.kernel else does(opt)  # the kernel group's title says where those go
    return text + (f" (default: {default})" if default not in ("", "none") else "")


def ignored_summary() -> str:
    """--help's "accepted and ignored" group: the names only."""
    noted = [opt.name for opt in options.OPTIONS if opt.group == "ignored" and opt.kind != "refuse"]
    refused = [opt.name for opt in options.OPTIONS if opt.kind == "refuse"]
    return (f"{TITLES['ignored'][1]} Accepted: {', '.join(noted)}. Refused: {', '.join(refused)}. "
            "What each does: man cosfs, or the README's options table.")


# --- README ------------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def readme_options() -> str:
    """One table per group: option, whose it is, default, what cosfs does."""
    parts = []
    for group in options.GROUPS:
        title, description = TITLES[group]
        parts += [f"### {title[0].upper()}{title[1:]}", ""] + ([description, ""] if description else [])
        parts += ["| option | from | default | what cosfs does |", "|---|---|---|---|"]
        parts += [f"| `{opt.name}` | {opt.origin} | {_cell(default_text(opt))} | "
                  f"{_cell(does(opt, lambda n: f'`{n}`'))} |" for opt in options.OPTIONS if opt.group == group]
        parts.append("")
    return "\n".join(parts).rstrip("\n")


def treatment(opt: Option) -> str:
    """Implemented (aliases too), accepted with a note, passed to the kernel, or refused."""
    if opt.kind == "refuse":
        return "refused"
    if opt.note and not opt.target:
        return "accepted with a note"
    return "passed to the kernel" if opt.kernel else "implemented"


def readme_csi() -> str:
    rows = [f"| `-o{opt.name}` | {treatment(opt)} | {_cell(does(opt, lambda n: f'`{n}`'))} |"
            for opt in (options.BY_NAME[name] for name in CSI_OPTIONS)]
    return "\n".join(["| option | cosfs | what cosfs does |", "|---|---|---|", *rows])


REGIONS = {"options": readme_options, "csi-options": readme_csi}


def render_readme(text: str) -> str:
    """`text` (the README) with every generated region made anew."""
    for region, make in REGIONS.items():
        begin = f"<!-- {region}:begin (generated by `python -m cosfs.optdocs --write` from cosfs/options.py) -->"
        end = f"<!-- {region}:end -->"
        start, stop = text.find(begin), text.find(end)
        if start < 0 or stop < start:
            raise SystemExit(f"README.md: the markers {begin!r} ... {end!r} are missing")
        text = text[:start + len(begin)] + "\n" + make() + "\n" + text[stop:]
    return text


# --- man pages ---------------------------------------------------------------------------

def _roff(text: str) -> str:
    text = text.replace("\\", "\\e")
    return "\\&" + text if text.startswith((".", "'")) else text


def _flag(text: str) -> str:
    return text.replace("-", "\\-")


def _man_options() -> list[str]:
    lines = [".SH OPTIONS", "Every option is given as \\fB\\-o\\fR \\fIname\\fR[=\\fIvalue\\fR] (several "
             "separated by commas, as in fstab) or, to cosfs, as \\fB\\-\\-name\\fR [\\fIvalue\\fR] with dashes "
             "for underscores. Sizes take K, M, G, T suffixes."]
    for group in options.GROUPS:
        title, description = TITLES[group]
        lines += [f".SS {title[0].upper()}{title[1:]}"] + ([_roff(description)] if description else [])
        for opt in (o for o in options.OPTIONS if o.group == group):
            value = "" if opt.kind in ("flag", "refuse") else f"=\\fI{metavar(opt)}\\fR"
            long_value = "" if opt.kind in ("flag", "refuse") else f" \\fI{metavar(opt)}\\fR"
            default = default_text(opt)
            lines += [".TP", f"\\fB\\-o {_flag(opt.name)}\\fR{value}, "
                             f"\\fB\\-\\-{_flag(opt.name.replace('_', '-'))}\\fR{long_value}",
                      _roff(does(opt)), ".br", _roff((f"Default: {default}. " if default else "")
                                                      + f"From: {opt.origin}.")]
    return lines


def _commands() -> list[str]:
    """The subcommands' one-line usages and help, from cli.build_parser."""
    from cosfs import cli

    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = [".SH COMMANDS"]
    for choice in action._choices_actions:
        sub = action.choices[choice.dest]
        sub.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=10_000)
        first, *more = [_flag(_roff(line.strip())) for line in sub.format_usage().removeprefix("usage: ").splitlines()]
        assert choice.help is not None  # every command has its help line
        lines += [".TP", f".B {first}"] + [f".B {line}\n.br" for line in more] + [_roff(choice.help)]
    return lines


_EXIT = [".SH EXIT STATUS", ".TP", "0", "Done; for a mount, once the mount is live.", ".TP", "1",
         "Failed; also a configuration error of the COSFS form and of mount.cosfs, as COSFS exits.", ".TP", "2",
         "A command line the command cannot take (not cosfs mount).", ".TP", "78",
         "A configuration error of cosfs mount (EX_CONFIG: the systemd unit does not restart on it).",
         ".PP", "Every error is one line on standard error, starting with \\(lqcosfs:\\(rq."]
_FILES = [".SH FILES", ".TP", "/etc/passwd\\-cosfs, ~/.passwd\\-cosfs",
          "Keys: \\fIbucket\\-appid\\fR:\\fISecretId\\fR:\\fISecretKey\\fR or \\fISecretId\\fR:\\fISecretKey\\fR "
          "lines, no permission bits for others (s3fs's /etc/passwd\\-s3fs, ~/.passwd\\-s3fs and "
          "~/.aws/credentials are read too).", ".TP", "/var/cache/cosfs/\\fIBUCKET\\fR",
          "The cache directory of root's mounts (~/.cache/cosfs/\\fIBUCKET\\fR for other users): blocks, staged "
          "writes and the journal a crashed mount is finished from."]


def man_page(name: str) -> str:
    """The text of the man page `name` (cosfs.1, mount.cosfs.8) in docs/man."""
    header = [f'.TH {name.rsplit(".", 1)[0].upper()} {name.rsplit(".", 1)[1]} "" "cosfs {__version__}"',
              ".\\\" Generated by `python -m cosfs.optdocs --write` from cosfs/options.py and cosfs/cli.py."]
    if name == "cosfs.1":
        body = [".SH NAME", "cosfs \\- mount a Tencent Cloud COS bucket as a directory (FUSE)", ".SH SYNOPSIS",
                ".B cosfs", "[\\fB\\-o\\fR \\fIOPTION\\fR[=\\fIVALUE\\fR],...] \\fIBUCKET\\fR[:/\\fIPREFIX\\fR] "
                "\\fIMOUNTPOINT\\fR [\\fB\\-f\\fR] [\\fB\\-d\\fR]", ".br", ".B cosfs",
                "\\fICOMMAND\\fR ...", ".SH DESCRIPTION",
                "cosfs mounts a COS bucket (or a folder of it) on \\fIMOUNTPOINT\\fR and returns once the mount "
                "is live. It takes the options, passwd files and fstab lines of COSFS and s3fs with their "
                "meanings. The first form is COSFS's and is the same as \\fBcosfs mount\\fR.",
                *_commands(), *_man_options(), *_EXIT, *_FILES, ".SH SEE ALSO",
                "\\fBmount.cosfs\\fR(8), \\fBfusermount3\\fR(1), \\fBfstab\\fR(5)"]
    else:
        body = [".SH NAME", "mount.cosfs \\- mount helper for fuse.cosfs file systems", ".SH SYNOPSIS",
                ".B mount.cosfs", "\\fISOURCE\\fR \\fIMOUNTPOINT\\fR [\\fB\\-sfnvrw\\fR] [\\fB\\-N\\fR "
                "\\fINAMESPACE\\fR] [\\fB\\-o\\fR \\fIOPTIONS\\fR]", ".SH DESCRIPTION",
                "mount(8) runs it (also as mount.fuse.cosfs) for file systems of type fuse.cosfs, as fstab "
                "names them:", ".PP", ".nf",
                "examplebucket\\-1250000000 /mnt/cos fuse.cosfs "
                "_netdev,url=https://cos.ap\\-guangzhou.myqcloud.com,allow_other 0 0", ".fi", ".PP",
                "\\fISOURCE\\fR is \\fIBUCKET\\-APPID\\fR[:/\\fIPREFIX\\fR]. \\fB\\-f\\fR checks the options and "
                "mounts nothing; \\fB\\-r\\fR and \\fB\\-w\\fR are ro and rw; \\fB\\-N\\fR mounts in the mount "
                "namespace of a PID or a namespace file; \\fB\\-o setuid=\\fR\\fIUSER\\fR runs the daemon as "
                "USER; \\fB\\-n\\fR, \\fB\\-s\\fR, \\fB\\-v\\fR and \\fB\\-t\\fR are mount's own. mount(8)'s "
                "options (_netdev, noauto, nofail, x\\-systemd.*, defaults...) are accepted and ignored.",
                *_man_options(), ".SH EXIT STATUS", "0 once the mount is live (or, with \\fB\\-f\\fR, the options "
                "are good); 1 otherwise, with one line on standard error.", ".SH SEE ALSO",
                "\\fBcosfs\\fR(1), \\fBmount\\fR(8), \\fBfstab\\fR(5)"]
    return "\n".join(header + body) + "\n"


def stale() -> list[Path]:
    """The generated files whose checked-in text is not what the table gives now."""
    files = {REPO / "README.md": render_readme((REPO / "README.md").read_text(encoding="utf-8"))}
    files |= {REPO / "docs" / "man" / name: man_page(name) for name in MAN_PAGES}
    return [path for path, text in files.items() if not path.exists() or path.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cosfs.optdocs", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite README.md's regions and docs/man/")
    action.add_argument("--check", action="store_true", help="exit 1 naming the files that are stale")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale()
        for path in outdated:
            print(f"{path.relative_to(REPO)} is stale: run python -m cosfs.optdocs --write", file=sys.stderr)
        return 1 if outdated else 0
    readme = REPO / "README.md"
    readme.write_text(render_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")
    (REPO / "docs" / "man").mkdir(exist_ok=True)
    for name in MAN_PAGES:
        (REPO / "docs" / "man" / name).write_text(man_page(name), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
