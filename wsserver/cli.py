"""The `wsserver` command: `serve`, `token`, `admin`, `rotate-epoch` and `--version` (CONTRACT §6).

Configuration flags are generated from ``wsserver.config.Config``, so every key has its flag.
Errors are one plain line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import signal
import sys
from collections.abc import Sequence
from typing import Any

import trio

from wsserver import __version__
from wsserver.config import OPTION_FIELDS, Config, ConfigError, flag_name, load_config, parse_duration
from wsserver.credentials import credentials_path, resolve_credentials

log = logging.getLogger("wsserver.cli")


def version_text() -> str:
    build = "pyinstaller binary" if getattr(sys, "frozen", False) else "python package"
    try:
        from wsserver import _build_info  # written by the binary build

        build += f", built {_build_info.BUILT_AT} from {_build_info.COMMIT}"
    except ImportError:
        pass
    return (
        f"wsserver {__version__} ({build}; Python {platform.python_version()}, trio {trio.__version__}, "
        f"{platform.system()} {platform.machine()})"
    )


def _add_config_flags(parser: argparse.ArgumentParser, only: set[str] | None = None) -> None:
    group = parser.add_argument_group("configuration (each also WSSERVER_<KEY> or a key in --config)")
    group.add_argument("--config", metavar="FILE", help="TOML configuration file (also WSSERVER_CONFIG)")
    for a in OPTION_FIELDS:
        if only is not None and a.name not in only:
            continue
        kind = a.metadata["kind"]
        default = a.default if a.default is not None else "none"
        if isinstance(default, tuple):
            default = ",".join(default) or "none"
        group.add_argument(
            flag_name(a.name),
            dest=a.name,
            metavar=kind.upper() if kind not in ("bool",) else "BOOL",
            help=f"{a.metadata['help']} (default: {default})",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsserver",
        description="WebSocket server with per-channel sequence numbers and lossless replay on reconnect.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps --version on one line
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server (zero config: one node, embedded log under ./data)")
    _add_config_flags(serve)
    serve.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor

    token = sub.add_parser("token", help="mint a signed client token from the configured (or dev) secret")
    token.add_argument("--sub", required=True, help="the user id (`sub` claim)")
    token.add_argument("--channels", default="", help="comma-separated channel patterns the user may subscribe to")
    token.add_argument("--publish", default="", help="comma-separated channel patterns the user may publish to")
    token.add_argument("--ttl", default="1h", help="lifetime, e.g. 900, 15m, 1h, 7d (default: 1h)")
    _add_config_flags(token, only={"jwt_secret", "data_dir", "jwt_audience", "jwt_issuer"})

    admin = sub.add_parser("admin", help="the Textual admin console against a running server")
    admin.add_argument("--url", default=None, help="the server's internal API URL (default: http://127.0.0.1:8081)")
    admin.add_argument("--interval", default="1s", help="refresh interval (default: 1s)")
    _add_config_flags(admin, only={"data_dir", "api_key", "api_port"})
    rotate = sub.add_parser(
        "rotate-epoch",
        help="give channels of the embedded log a new epoch (run it, server stopped, after restoring ./data)",
        description="Gives channels a new epoch in the embedded event log, with the server stopped. Run it after "
        "restoring the data directory from a backup: clients that saw seqs beyond the restored head then get "
        "snapshot or reset instead of different events under numbers they already hold.",
    )
    rotate.add_argument("channels", nargs="*", metavar="CHANNEL", help="channels to rotate")
    rotate.add_argument("--all", action="store_true", help="rotate every channel of the log")
    _add_config_flags(rotate, only={"data_dir", "redis_url"})
    chaos = sub.add_parser(
        "chaos-proxy",
        help="a TCP proxy that injects mobile-network faults between clients and a server",
        add_help=False,
    )
    chaos.add_argument("chaos_args", nargs=argparse.REMAINDER)
    return parser


def _flags(ns: argparse.Namespace) -> dict[str, Any]:
    return {a.name: getattr(ns, a.name, None) for a in OPTION_FIELDS}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["chaos-proxy"]:  # its own parser takes every option after the command
        from wsserver.chaos_proxy import main as chaos_main

        return chaos_main(args[1:])
    parser = build_parser()
    ns = parser.parse_args(args)
    if ns.command is None:
        parser.print_help()
        return 2
    try:
        if ns.command == "serve":
            return _cmd_serve(ns)
        if ns.command == "token":
            return _cmd_token(ns)
        if ns.command == "admin":
            return _cmd_admin(ns)
        if ns.command == "rotate-epoch":
            return _cmd_rotate_epoch(ns, parser)
    except ConfigError as exc:
        print(f"wsserver: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {ns.command}")
    return 2


def _cmd_token(ns: argparse.Namespace) -> int:
    from wsserver.auth import mint_token
    from wsserver.config import parse_list

    config = load_config(config_file=ns.config, flags=_flags(ns))
    if config.jwt_secret is None:
        config, _ = resolve_credentials(config, create=False)
    try:
        ttl = parse_duration(ns.ttl)
    except ValueError as exc:
        raise ConfigError(f"invalid --ttl {ns.ttl!r}: {exc}") from None
    extra = {}
    if config.jwt_audience:
        extra["aud"] = config.jwt_audience
    if config.jwt_issuer:
        extra["iss"] = config.jwt_issuer
    assert config.jwt_secret is not None
    print(
        mint_token(
            config.jwt_secret,
            sub=ns.sub,
            ttl=ttl,
            channels=parse_list(ns.channels),
            publish=parse_list(ns.publish),
            extra=extra,
        )
    )
    return 0


def _cmd_rotate_epoch(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pathlib import Path

    from wsserver.store.base import StoreUnavailable
    from wsserver.store.sqlite import EpochRotation, rotate_epochs

    config = load_config(config_file=ns.config, flags=_flags(ns))
    if config.redis_url:
        print("wsserver: rotate-epoch is for the embedded log; with Redis the epoch follows what Redis kept "
              "(see docs/redis.md)", file=sys.stderr)
        return 2
    if bool(ns.channels) == bool(ns.all):
        parser.error("rotate-epoch: name the channels to rotate, or pass --all (not both)")
    path = Path(config.data_dir) / "events.sqlite3"

    def show(r: EpochRotation) -> None:
        print(f"{r.channel}: epoch {r.old_epoch} -> {r.new_epoch} ({r.events} stored events kept)", flush=True)

    try:
        done = rotate_epochs(path, None if ns.all else list(ns.channels), progress=show)
    except StoreUnavailable as exc:
        print(f"wsserver: cannot rotate epochs: {exc}", file=sys.stderr)
        return 1
    print(f"rotated {len(done)} channel(s); clients holding the old epochs get snapshot or reset on their next subscribe")
    return 0


def _cmd_admin(ns: argparse.Namespace) -> int:
    config = load_config(config_file=ns.config, flags=_flags(ns))
    api_key = config.api_key
    if api_key is None and credentials_path(config).exists():
        api_key = resolve_credentials(config, create=False)[0].api_key
    url = ns.url or f"http://127.0.0.1:{config.api_port}"
    try:
        interval = parse_duration(ns.interval)
    except ValueError as exc:
        raise ConfigError(f"invalid --interval {ns.interval!r}: {exc}") from None
    try:
        from admin_tui.app import run_admin
    except ImportError as exc:
        print(f"wsserver: the admin console is not available in this build ({exc})", file=sys.stderr)
        return 1
    return run_admin(url=url, api_key=api_key, interval=interval)


def _cmd_serve(ns: argparse.Namespace) -> int:
    from wsserver.logs import setup_logging

    config = load_config(config_file=ns.config, flags=_flags(ns))
    config, dev = resolve_credentials(config)
    setup_logging(config.log_level)
    log.info("starting %s", version_text())
    try:
        trio.run(_serve, config, dev, ns.worker_fd, _serve_args())
    except BaseException as exc:
        problem = _startup_problem(exc)
        if problem is None:
            raise
        print(f"wsserver: cannot start: {problem}", file=sys.stderr)
        return 1
    return 0


def _startup_problem(exc: BaseException) -> str | None:
    """The plain message of an expected start-up failure (port in use, unreadable data dir,
    bad TLS or key file), unwrapped from nursery exception groups; None for anything else."""
    from wsserver.store.base import StoreUnavailable

    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            problem = _startup_problem(sub)
            if problem is not None:
                return problem
        return None
    if isinstance(exc, (OSError, ValueError, StoreUnavailable, ConfigError)):
        return str(exc)
    return None


def _serve_args() -> list[str]:
    """The flags `serve` was given (a supervisor hands them on to its workers)."""
    argv = sys.argv[1:]
    return argv[argv.index("serve") + 1:] if "serve" in argv else []


async def _serve(config: Config, dev: bool, worker_fd: int | None = None, argv: list[str] | None = None) -> None:
    from wsserver.app import Server, ServerInfo

    started = trio.current_time()
    server: Any
    if config.worker_count > 1:
        from wsserver.supervisor import Supervisor

        server = Supervisor(config, argv=argv or [])
    else:
        server = Server(config, reuse_port=worker_fd is not None)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for signum in signals:
                    if server.shutdown_requested:
                        log.warning("second %s: stopping now", signal.Signals(signum).name)
                        nursery.cancel_scope.cancel()
                        return
                    log.info("%s received: draining", signal.Signals(signum).name)
                    server.request_shutdown()

            async def run_server(task_status: trio.TaskStatus[Any]) -> None:
                await server.run(task_status=task_status)
                nursery.cancel_scope.cancel()  # drained: stop watching signals

            nursery.start_soon(watch_signals)
            info = await nursery.start(run_server)
            log.info("accepting connections after %.0f ms", (trio.current_time() - started) * 1000)
            if worker_fd is not None:  # a worker: tell the supervisor where it serves, print nothing
                with os.fdopen(worker_fd, "wb") as report:
                    report.write(json.dumps({"pid": os.getpid(), "port": info.port, "api_port": info.api_port}).encode() + b"\n")
            else:
                if isinstance(info, dict):  # a supervisor of workers
                    tls = bool(config.tls_cert and config.tls_key)
                    info = ServerInfo(config.host, info["port"], config.api_host, info["api_port"], tls, config.worker_count)
                _print_banner(config, info, dev)
            _tune_gc()


def _tune_gc() -> None:
    """Keeps CPython's cyclic collector off the fan-out path. Each delivery allocates a few
    short-lived containers (a task wake-up), so with the default threshold a collection ran every
    ~70 deliveries and walked every connection's objects: CPU per delivery grew with the number
    of subscribers (74 µs at 1,000, 116 µs at 2,000; bench/results/profile.md). Start-up objects
    are frozen out of the collector's reach and young collections happen 140× less often; the
    server makes few reference cycles, so memory stays bounded."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    # The event log's writer thread gives the GIL back around every SQLite statement (and the
    # fsync) and must win it back from a busy event loop each time; CPython makes it wait up to
    # the switch interval (5 ms) for that. At 0.5 ms a group commit takes its few statements'
    # time instead of ~10 switch intervals (bench/results/profile.md, durable publishes).
    sys.setswitchinterval(0.0005)


def _print_banner(config: Config, info: Any, dev: bool) -> None:
    if config.redis_url:
        workers = getattr(info, "workers", 1)
        mode = f"{workers} worker processes" if workers > 1 else "one process"
        where = f"a node on the Redis log and backplane, {mode}"
    else:
        where = f"one node, embedded event log in {config.data_dir}"
    lines = [
        f"wsserver {__version__} is running ({where})",
        f"  WebSocket: {info.ws_url}",
        f"  HTTP API:  {info.api_url}   (internal: health, metrics, publish, stats)",
    ]
    if dev:
        lines += [
            "",
            f"Development credentials (kept in {credentials_path(config)}; configure api_key and",
            "jwt_secret or jwt_public_key for production):",
            f"  API key:    {config.api_key}",
            f"  JWT secret: {config.jwt_secret}",
        ]
    lines += [
        "",
        "Try it:",
        f"  TOKEN=$(wsserver token --data-dir {config.data_dir} --sub alice --channels 'chat.*' --publish 'chat.*')"
        if dev
        else "  TOKEN=$(wsserver token --sub alice --channels 'chat.*' --publish 'chat.*')",
        f"  python -m websockets {info.ws_url}    # then send:",
        '  {"type":"auth","id":"1","timestamp":0,"payload":{"token":"<TOKEN>"}}',
        '  {"type":"subscribe","id":"2","timestamp":0,"payload":{"channel":"chat.lobby","lastSeq":0}}',
        f"  curl -s -H 'Authorization: Bearer {config.api_key if dev else '<api key>'}' "
        f"-d '{{\"channel\":\"chat.lobby\",\"event\":\"message.new\",\"data\":{{\"text\":\"hi\"}}}}' "
        f"{info.api_url}/api/v1/publish",
        "Stop with Ctrl-C (drains: clients get 1001 and reconnect elsewhere).",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
