"""``llmsignal registry ...`` and ``llmsignal serve``: query and move registry entries, serve one over HTTP.

    llmsignal registry list [--registry DIR] [--no-verify]   # a table of every version, with its status
    llmsignal registry show NAME[@VERSION]                    # the metadata, as JSON
    llmsignal registry rm NAME[@VERSION]                      # one version, or every version of NAME
    llmsignal registry export NAME[@VERSION] PATH             # a folder another machine imports
    llmsignal registry import PATH [--name NAME]              # a new version, every hash checked
    llmsignal serve --entry NAME[@VERSION] [--host 127.0.0.1] [--port 8000] [--api-key KEY]
                    [--threshold-bps 0.5] [--precision bfloat16]

``llmsignal.cli`` mounts these with ``cli_serve.add_parsers(sub)`` and
``COMMANDS.update(cli_serve.COMMANDS)``; a ``RegistryError`` reaches its one-line error handler.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from llmsignal.cli_args import ENTRY_INPUTS, inputs_flag, precision_flag, warn_precision


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the ``registry`` and ``serve`` commands to the ``llmsignal`` subparsers ``sub``."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--registry", type=Path, default=Path("registry"), help="registry folder")
    registry = sub.add_parser("registry", help="list, show, remove, export and import registry entries",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = registry.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[where], help="every version with its method, metrics and status")
    listing.add_argument("--no-verify", action="store_true", help="skip hashing the files (status 'unverified')")
    show = actions.add_parser("show", parents=[where], help="an entry's metadata as JSON")
    show.add_argument("ref", metavar="NAME[@VERSION]")
    remove = actions.add_parser("rm", parents=[where], help="remove one version, or every version of a name")
    remove.add_argument("ref", metavar="NAME[@VERSION]")
    export = actions.add_parser("export", parents=[where], help="write an entry to a folder for another machine")
    export.add_argument("ref", metavar="NAME[@VERSION]")
    export.add_argument("path", type=Path, metavar="PATH")
    imported = actions.add_parser("import", parents=[where], help="store an exported folder as a new version")
    imported.add_argument("path", type=Path, metavar="PATH")
    imported.add_argument("--name", help="store under this name instead of the exported one")

    serve = sub.add_parser("serve", parents=[where], help="serve an entry's forecasts over HTTP (POST /predict)")
    serve.add_argument("--entry", required=True, metavar="NAME[@VERSION]")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", help="require this key in the X-API-Key header (needed off loopback)")
    precision_flag(serve, "forecasts")
    inputs_flag(serve, default=None, help_text=ENTRY_INPUTS)
    serve.add_argument("--threshold-bps", type=float, default=0.5,
                       help="forecast return a long/short signal needs, as ThresholdStrategy (default 0.5)")


def _registry(args: argparse.Namespace) -> int:
    return REGISTRY_ACTIONS[args.registry_command](args)


def _list(args: argparse.Namespace) -> int:
    from llmsignal.models.entries import entry_registry

    rows = entry_registry(args.registry).list_rows(verify=not args.no_verify)
    if not rows:
        print(f"no entries in registry {args.registry}")
        return 0
    print(format_table(rows))
    return 0


def _show(args: argparse.Namespace) -> int:
    from llmsignal.models.entries import entry_registry

    print(json.dumps(entry_registry(args.registry).get(args.ref).metadata, indent=2))
    return 0


def _rm(args: argparse.Namespace) -> int:
    from llmsignal.models.entries import entry_registry

    removed = entry_registry(args.registry).remove(args.ref)
    print(f"removed {', '.join(removed)} (version numbers are never reused)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from llmsignal.models.entries import entry_registry

    entry = entry_registry(args.registry).export(args.ref, args.path)
    print(f"exported {entry.ref} to {args.path}; on the other machine: llmsignal registry import {args.path.name}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from llmsignal.models.entries import entry_registry

    entry = entry_registry(args.registry).import_(args.path, name=args.name)
    print(f"imported {args.path} as {entry.ref} ({entry.path})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    """Check the address first (cheap), then load and verify the entry, then serve until Ctrl-C."""
    from llmsignal.models.entries import check_inputs, entry_inputs, entry_registry
    from llmsignal.models.predictor import Predictor
    from llmsignal.models.server import check_bind, create_app, serve
    from llmsignal.strategies.threshold import threshold_exposure

    check_bind(args.host, args.api_key)
    entry = entry_registry(args.registry).get(args.entry)
    check_inputs(entry, args.inputs)
    # verifies every file's hash: a corrupted entry stops here
    predictor = Predictor.from_entry(entry, precision=args.precision)
    warn_precision(predictor.number_format)
    app = create_app(entry, predictor, partial(threshold_exposure, threshold_bps=args.threshold_bps),
                     f"ThresholdStrategy(threshold_bps={args.threshold_bps})", api_key=args.api_key,
                     registry=entry_registry(args.registry))
    ranges = " with open, high and low" if entry_inputs(entry.metadata) == "ohlc" else ""
    print(f"llmsignal: {entry.ref} loaded; POST /predict needs at least "
          f"{entry.metadata['codec']['context'] + 1} bars{ranges}", flush=True)
    serve(app, args.host, args.port, api_key=args.api_key)
    return 0


def format_table(rows: list[dict]) -> str:
    """Rows of ``Registry.list_rows`` as aligned text; missing values print as '-'."""
    columns = list(rows[0])
    cells = [[_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in cells]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:.4g}"  # parameter counts in full
    return str(value)


REGISTRY_ACTIONS = {"list": _list, "show": _show, "rm": _rm, "export": _export, "import": _import}
COMMANDS = {"registry": _registry, "serve": _serve}
