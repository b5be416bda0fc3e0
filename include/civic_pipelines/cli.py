"""The ``civic`` command line: the extractor's contract, identical in the container and in-process.

civic extract --source seattle_crime --month 2023-01 [--part P] [--lake PATH_OR_URL] [--force] [--dry-run]
              [--skipped-exit-code N]
civic replay [--host 127.0.0.1] [--port 8765]
civic sources
civic dashboard [--host 127.0.0.1] [--port 8050]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

# The exit code docker mode asks for when the block was skipped (nothing landed: unchanged, not
# published yet): DockerOperator's ``skip_on_exit_code`` turns it into a skipped task. Outside 1
# (errors), 2 (usage) and the shells' 126-165.
SKIPPED_EXIT_CODE = 99


def _extract(args) -> int:
    from civic_pipelines import sources
    from civic_pipelines.extract import run_block
    from civic_pipelines.planning import validate_month, validate_part

    # What the DAG's planner refuses (a month not complete yet, one before the source's first
    # month, a malformed one, an unknown part) is refused here too, with the planner's own message.
    spec = sources.spec(args.source)
    validate_month(spec, args.month)
    validate_part(spec, args.part)
    manifest = run_block(
        args.source, args.month, lake=args.lake, force=args.force, dry_run=args.dry_run, part=args.part
    )
    print(json.dumps(manifest, sort_keys=True, default=str), flush=True)
    # A skip is a success by default (scripts); the orchestrator asks for a distinct code.
    return args.skipped_exit_code if manifest.get("skipped") else 0


def _replay(args) -> int:
    from civic_pipelines.replay.server import serve_forever

    serve_forever(args.host, args.port)
    return 0


def _dashboard(args) -> int:
    from civic_pipelines.dashboard.app import serve

    serve(args.host, args.port)
    return 0


def _sources(args) -> int:
    from civic_pipelines import sources

    rows = [
        {
            "source": spec.name,
            "cadence": spec.cadence,
            "cron": spec.cron,
            "first_month": spec.first_month,
            "connection": spec.conn_id,
            "default_endpoint": spec.default_base_url,
        }
        # get(): each source loaded whole (a dataset file's [adapter] table too), which is the check
        # before a deploy that parsing the DAG files no longer makes.
        for spec in (sources.get(name).SPEC for name in sources.names())
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'source':<16} {'cadence':<8} {'first':<8} {'connection':<24} endpoint")
        for row in rows:
            print(
                f"{row['source']:<16} {row['cadence']:<8} {row['first_month']:<8} {row['connection']:<24} {row['default_endpoint']}"
            )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from civic_pipelines import sources

    parser = argparse.ArgumentParser(
        prog="civic", description="civic-pipelines: civic open data, one source-month at a time"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level on stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    extract = commands.add_parser(
        "extract", help="extract and land one source-month block; prints its JSON manifest last"
    )
    names = sorted(sources.names())
    # Not argparse's choices: an unknown source is refused by the registry in one line (the contract).
    extract.add_argument(
        "--source",
        required=True,
        metavar="SOURCE",
        help=f"one of: {', '.join(names)} (`civic sources` lists them with their first month)",
    )
    extract.add_argument(
        "--month",
        required=True,
        help="YYYY-MM: a complete month (before the current one), not before the source's first month",
    )
    extract.add_argument("--part", help="the table, for a source that publishes several per month (e.g. permit)")
    extract.add_argument("--lake", help="lake root folder or URL (default $CIVIC_LAKE or ./data/lake)")
    extract.add_argument("--force", action="store_true", help="land even if the source's watermark is unchanged")
    extract.add_argument("--dry-run", action="store_true", help="plan only: fetch nothing, write nothing")
    extract.add_argument(
        "--skipped-exit-code",
        type=int,
        default=0,
        metavar="N",
        help=f"exit with N when the block was skipped (the manifest still prints); default 0. "
        f"Docker mode passes {SKIPPED_EXIT_CODE}, which its operator maps to a skipped task",
    )
    extract.set_defaults(func=_extract)

    replay = commands.add_parser("replay", help="serve the bundled data in each API's wire format (offline)")
    replay.add_argument("--host", default="127.0.0.1")
    replay.add_argument("--port", type=int, default=8765)
    replay.set_defaults(func=_replay)

    dashboard = commands.add_parser("dashboard", help="serve the dashboard alone (the Airflow plugin's app) at /civic/")
    dashboard.add_argument("--host", default="127.0.0.1")
    dashboard.add_argument("--port", type=int, default=8050)
    dashboard.set_defaults(func=_dashboard)

    listing = commands.add_parser("sources", help="list sources, cadence, first month and connection id")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_sources)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - the contract is one line on stderr and a non-zero exit
        from civic_pipelines.planning import PlanError

        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, PlanError):  # the planner's line, exactly as plan_blocks fails with it
            print(f"civic {args.command}: error: {message}", file=sys.stderr)
            return 1
        print(f"civic {args.command}: error: {type(error).__name__}: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
