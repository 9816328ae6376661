"""``moonlander-dev``: the local clusters and the demo (development only, not in the image)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from moonlander.cli.logs import configure_logging


def _dev_clusters(args: argparse.Namespace) -> int:
    from moonlander_dev.clusters import parse_cluster_names, run_foreground

    try:
        specs = parse_cluster_names(args.clusters)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.node:
        from moonlander_dev import node

        images = [(Path(p), "localhost/moonlander") for p in args.image] or node.default_images()
        return node.run_foreground(Path(args.dir), [s.name for s in specs], images)
    return run_foreground(Path(args.dir), specs)


def _demo(args: argparse.Namespace) -> int:
    if args.crossplane:
        from moonlander_dev.crossplane_demo import run_crossplane_demo

        return run_crossplane_demo(Path(args.dir), keep=args.keep)
    from moonlander_dev.demo import run_demo

    return run_demo(Path(args.dir), keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moonlander-dev", description="Moonlander's local clusters and demos"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev-clusters", help="local etcd + kube-apiservers for development")
    dev_sub = dev.add_subparsers(dest="action", required=True)
    up = dev_sub.add_parser("up", help="start clusters and stay in the foreground")
    up.add_argument("--dir", required=True, help="state directory (kubeconfigs, logs, data)")
    up.add_argument("--clusters", default="parent,child-a,child-b", help="comma-separated names")
    up.add_argument(
        "--node",
        action="store_true",
        help="add a real node (containerd + kubelet, as root) to the first cluster",
    )
    up.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="OCI_ARCHIVE",
        help="with --node: import this image archive as localhost/moonlander "
        "(default: make image's output in _out/image)",
    )
    up.set_defaults(func=_dev_clusters)

    demo = sub.add_parser("demo", help="the seed's Pattern A end to end on local clusters")
    demo.add_argument("--dir", default=".demo", help="state directory")
    demo.add_argument("--keep", action="store_true", help="keep everything running at the end")
    demo.add_argument(
        "--crossplane",
        action="store_true",
        help="Patterns A and B with Crossplane v2 in harvey composing resources in talos-root "
        "and a vcluster (builds Crossplane and provider-kubernetes the first time)",
    )
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    return int(args.func(args))
