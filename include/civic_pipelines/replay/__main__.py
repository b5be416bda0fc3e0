"""``python -m civic_pipelines.replay [--host H] [--port P]``: the replay server in the foreground."""

from __future__ import annotations

import argparse

from civic_pipelines.replay.server import serve_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m civic_pipelines.replay")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    serve_forever(args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
