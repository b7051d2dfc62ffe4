"""`cosfs serve`: arguments, startup banner, signals.

    cosfs serve --root DIR [--address 127.0.0.1:9000] [--bucket NAME-APPID]...
                [--secret-id ID [--secret-key-file FILE]] [--security-token TOKEN]
                [--access-log FILE] [--fault SPEC]
                [--tls-cert FILE --tls-key FILE] [--allow-remote [--insecure-remote]]
                [--idle-timeout S] [--io-timeout S] [--max-connections N]

**Who can reach it.** It listens on loopback unless --allow-remote; a non-loopback address
also needs TLS (--tls-cert/--tls-key: trio's SSL streams, TLS 1.2 or later), because a q-sign
signature only authenticates a request: it does not hide the data, and over plain HTTP
anyone on the path could read objects and replay requests within their signature's lifetime.
``--insecure-remote`` accepts plain HTTP off loopback anyway (a trusted network, or TLS
terminated in front of it). The key file must not be readable by others.

The SecretKey for --secret-id comes from --secret-key-file (mode 0600 or stricter; white space
around the key is ignored) or from the environment variable COSFS_SERVE_SECRET_KEY, not from
the command line, which every local user can read in the process list; ``--secret-key KEY``
still works but warns. Without --secret-id a key pair is generated.

On start it prints (stdout, flushed, one per line) ``endpoint: http(s)://HOST:PORT``,
``bucket: NAME`` for each bucket, ``secret-id: ID``, ``secret-key: KEY`` only when the key was
generated here (``secret-key: (as given)`` otherwise) and finally ``ready``. It then serves
until SIGINT/SIGTERM and exits 0. Startup errors print one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import stat
import signal
import ssl
import string
import sys
from pathlib import Path

import trio

from cosfs.server.app import App
from cosfs.server.authn import Authenticator
from cosfs.server.common import BUCKET_RE
from cosfs.server.faults import FaultInjector, FaultSpecError, parse_fault_spec
from cosfs.server.http import Connection, Limits, serve_listener
from cosfs.server.storage import ForeignRoot, Storage

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:9000"
DEFAULT_BUCKET = "examplebucket-1250000000"
SECRET_KEY_ENV = "COSFS_SERVE_SECRET_KEY"


class StartupError(Exception):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True,
                        help="directory holding the buckets (created if missing; an existing one must be empty "
                             "or made by cosfs serve)")
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help="HOST:PORT to listen on (port 0: any free port)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow listening on a non-loopback address (needs --tls-cert/--tls-key, or "
                             "--insecure-remote)")
    parser.add_argument("--insecure-remote", action="store_true",
                        help="with --allow-remote: serve plain HTTP off loopback (requests and data travel "
                             "unencrypted)")
    parser.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM, not readable by others)")
    parser.add_argument("--bucket", action="append", default=[], metavar="NAME-APPID",
                        help=f"bucket to serve (repeatable; created if missing; default {DEFAULT_BUCKET})")
    parser.add_argument("--secret-id", help="SecretId clients must sign with (generated if omitted)")
    parser.add_argument("--secret-key-file", metavar="FILE",
                        help=f"file (mode 0600) holding the SecretKey for --secret-id; or set ${SECRET_KEY_ENV}")
    parser.add_argument("--secret-key", help=f"the SecretKey (visible in the process list: prefer --secret-key-file "
                                             f"or ${SECRET_KEY_ENV})")
    parser.add_argument("--security-token", help="require this x-cos-security-token on every request")
    parser.add_argument("--access-log", help="append one line per request to this file")
    parser.add_argument("--fault", default="", metavar="SPEC",
                        help="inject faults, e.g. 503=0.1,500=0.02,reset=0.02,truncate=0.01,delay=50ms,seed=1")
    defaults = Limits()
    parser.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout_s, metavar="SECONDS",
                        help="close a connection that takes longer to send the next request's head "
                             f"(default {defaults.idle_timeout_s:g})")
    parser.add_argument("--io-timeout", type=float, default=defaults.io_timeout_s, metavar="SECONDS",
                        help="answer RequestTimeout (or drop the connection) when a client sends no more of a body, "
                             f"or takes no more of a response, for this long (default {defaults.io_timeout_s:g})")
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections, metavar="N",
                        help=f"serve at most N connections at once; more wait (default {defaults.max_connections})")


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The server's TLS context from --tls-cert/--tls-key (both or neither); StartupError."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise StartupError("--tls-cert and --tls-key go together")
    try:
        mode = os.stat(key).st_mode
    except OSError as exc:
        raise StartupError(f"cannot read --tls-key {key}: {exc.strerror or exc}") from None
    if mode & 0o007:
        raise StartupError(f"--tls-key {key} is readable by others (mode {stat.S_IMODE(mode):04o}); chmod o-rwx it")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot use --tls-cert {cert} / --tls-key {key}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    return context


def parse_address(text: str, allow_remote: bool) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise StartupError(f"--address {text!r} must be HOST:PORT")
    port = int(port_text)
    if port > 65535:
        raise StartupError(f"--address port {port} is out of range")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise StartupError(f"--address host {host!r} must be an IP address or localhost") from None
    if not address.is_loopback and not allow_remote:
        raise StartupError(f"--address {host} is not a loopback address (pass --allow-remote to permit it)")
    return host, port


def secret_key(args: argparse.Namespace, environ) -> str | None:
    """The SecretKey from --secret-key-file, --secret-key (with a warning) or the environment;
    None when none is given."""
    if args.secret_key_file is not None and args.secret_key is not None:
        raise StartupError("give --secret-key-file or --secret-key, not both")
    if args.secret_key is not None:
        print(f"cosfs serve: warning: --secret-key shows the key to every local user in the process list; "
              f"use --secret-key-file or ${SECRET_KEY_ENV}", file=sys.stderr, flush=True)
        return args.secret_key
    if args.secret_key_file is None:
        return environ.get(SECRET_KEY_ENV) or None
    try:
        with open(args.secret_key_file, encoding="utf-8") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise StartupError(f"--secret-key-file {args.secret_key_file} is not a regular file")
            if mode & 0o077:
                raise StartupError(f"--secret-key-file {args.secret_key_file} is open to group or others "
                                   f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it")
            key = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(f"cannot read --secret-key-file {args.secret_key_file}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    if not key:
        raise StartupError(f"--secret-key-file {args.secret_key_file} is empty")
    return key


def _generated_secret(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="cosfs serve: %(levelname)s %(name)s: %(message)s")
    try:
        if args.insecure_remote and not args.allow_remote:
            raise StartupError("--insecure-remote only goes with --allow-remote")
        tls = tls_context(args.tls_cert, args.tls_key)
        if args.allow_remote and tls is None and not args.insecure_remote:
            raise StartupError("--allow-remote needs TLS (--tls-cert and --tls-key): signatures do not hide data "
                               "or stop replays on the network; add --insecure-remote to serve plain HTTP anyway")
        host, port = parse_address(args.address, args.allow_remote)
        bucket_names = list(dict.fromkeys(args.bucket or [DEFAULT_BUCKET]))
        for name in bucket_names:
            if not BUCKET_RE.fullmatch(name):
                raise StartupError(f"bad bucket name {name!r}: use <name>-<appid>, e.g. {DEFAULT_BUCKET}")
        try:
            spec = parse_fault_spec(args.fault or "")
        except FaultSpecError as exc:
            raise StartupError(f"bad --fault: {exc}") from None
        given_key = secret_key(args, os.environ)
        if args.secret_id is None and given_key is not None:
            raise StartupError(f"a secret key (--secret-key-file, ${SECRET_KEY_ENV} or --secret-key) "
                               f"needs --secret-id")
        if args.secret_id is not None and given_key is None:
            raise StartupError(f"--secret-id needs its secret key: --secret-key-file or ${SECRET_KEY_ENV}")
        limits = Limits(args.idle_timeout, args.io_timeout, args.max_connections)
        if min(limits.idle_timeout_s, limits.io_timeout_s) <= 0 or limits.max_connections < 1:
            raise StartupError("--idle-timeout, --io-timeout and --max-connections must be positive")
        root = Path(args.root)
        if root.exists() and not root.is_dir():
            raise StartupError(f"--root {root} is not a directory")
        storage = Storage(root)
        try:
            storage.load(BUCKET_RE)
            for name in bucket_names:
                storage.create_bucket(name)
        except ForeignRoot as exc:
            raise StartupError(f"refusing --root {exc}") from None
        except OSError as exc:
            raise StartupError(f"cannot use --root {root}: {exc.strerror or exc}") from None
        access_log = None
        if args.access_log:
            try:
                fd = os.open(args.access_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                access_log = open(fd, "a", buffering=1, encoding="utf-8")
            except OSError as exc:
                raise StartupError(f"cannot open --access-log {args.access_log}: {exc.strerror or exc}") from None
    except StartupError as exc:
        print(f"cosfs serve: {exc}", file=sys.stderr, flush=True)
        return 2
    secret_id = args.secret_id or "AKID" + _generated_secret(32)
    key = given_key or _generated_secret(32)
    app = App(storage, Authenticator({secret_id: key}, args.security_token),
              FaultInjector(spec) if spec.active else None, access_log)
    try:
        return trio.run(_serve, app, host, port, bucket_names, limits, secret_id,
                        None if given_key else key, tls)
    except StartupError as exc:
        print(f"cosfs serve: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        if access_log is not None:
            access_log.close()


async def _serve(app: App, host: str, port: int, bucket_names: list[str], limits: Limits, secret_id: str,
                 generated_key: str | None, tls: ssl.SSLContext | None = None) -> int:
    try:
        tcp_listeners = await trio.open_tcp_listeners(port, host=host, backlog=512)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    actual_port = tcp_listeners[0].socket.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    listeners: list = list(tcp_listeners)
    if tls is not None:
        # the handshake happens on the connection's first read, inside its own task and timeouts
        listeners = [trio.SSLListener(one, tls, https_compatible=True) for one in tcp_listeners]

    def make_connection(stream: trio.abc.Stream) -> Connection:
        return Connection(stream, app.handle, lambda status, code, message: app.error_response(status, code, message),
                          app.after_response, limits, app.faults)

    slots = trio.Semaphore(limits.max_connections)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for one in listeners:
                await nursery.start(serve_listener, one, make_connection, slots)
            scheme = "https" if tls is not None else "http"
            lines = [f"endpoint: {scheme}://{shown_host}:{actual_port}"]
            lines += [f"bucket: {name}" for name in bucket_names]
            lines.append(f"secret-id: {secret_id}")
            lines.append(f"secret-key: {generated_key}" if generated_key else "secret-key: (as given)")
            lines.append("ready")
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    return 0
