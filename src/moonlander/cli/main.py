"""Command line: ``moonlander run | check | mint | version`` (the development clusters and the
demo are ``moonlander-dev``, in devtools/)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from moonlander import __version__
from moonlander.cli.logs import configure_logging

if TYPE_CHECKING:
    from moonlander.credentials import Policy


def _policy(args: argparse.Namespace) -> Policy:
    from moonlander.credentials import Policy

    return Policy(
        allow_insecure_tls=args.allow_insecure_tls,
        allow_loopback=args.allow_loopback,
        allow_private=not args.deny_private,
        allowed_networks=tuple(ipaddress.ip_network(n) for n in args.allow_network),
    )


def _add_policy_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server address policy (for kubeconfigs read from Secrets)")
    g.add_argument(
        "--allow-loopback",
        action="store_true",
        help="allow API servers on 127.0.0.0/8, ::1 and localhost (local development clusters)",
    )
    g.add_argument(
        "--deny-private", action="store_true", help="deny RFC 1918 and IPv6 ULA addresses"
    )
    g.add_argument(
        "--allow-network",
        action="append",
        default=[],
        metavar="CIDR",
        help="allow this address range even where denied by default (repeatable)",
    )
    g.add_argument(
        "--allow-insecure-tls",
        action="store_true",
        help="accept kubeconfigs with insecure-skip-tls-verify (not recommended)",
    )


def _run(args: argparse.Namespace) -> int:
    from moonlander.controller.loop import Timing
    from moonlander.operator import DEFAULT_WEBHOOK_CERT_DIR, Options, local_kubeconfig, run

    try:
        kubeconfig = local_kubeconfig(args.kubeconfig, os.environ)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from moonlander.api import DEFAULT_MINT_NAMESPACE, DNS_LABEL

    controller_namespace = args.controller_namespace or os.environ.get("POD_NAMESPACE")
    mint_namespaces = tuple(dict.fromkeys(args.mint_namespace)) or (DEFAULT_MINT_NAMESPACE,)
    for name in mint_namespaces:
        if not DNS_LABEL.fullmatch(name) or name == controller_namespace:
            print(
                f"error: --mint-namespace {name!r}: must be a namespace name other than the "
                "controller's own",
                file=sys.stderr,
            )
            return 2
    options = Options(
        kubeconfig=kubeconfig,
        parent_kubeconfig=args.parent_kubeconfig,
        namespaces=tuple(args.namespace),
        policy=_policy(args),
        allow_cross_namespace=args.allow_cross_namespace,
        controller_namespace=controller_namespace,
        mint_namespaces=mint_namespaces,
        timing=Timing(
            resync=args.resync_interval,
            backoff_cap=args.max_backoff,
            workers=args.workers,
        ),
        health_port=args.health_port,
        metrics_port=args.metrics_port,
        metrics_auth=args.metrics_auth,
        bind_address=args.bind_address,
        leader_elect=args.leader_elect,
        shards=args.shards,
        leader_election_namespace=args.leader_election_namespace,
        leader_election_id=args.leader_election_id,
        webhook_port=args.webhook_port,
        webhook_cert_dir=args.webhook_cert_dir or DEFAULT_WEBHOOK_CERT_DIR,
        webhook_client_ca=args.webhook_client_ca,
        webhook_client_names=tuple(args.webhook_client_name),
    )
    asyncio.run(run(options))
    return 0


def _check(args: argparse.Namespace) -> int:
    from moonlander.cli.check import check_file, check_secret

    policy = _policy(args)
    if args.secret:
        return asyncio.run(
            check_secret(args.secret, args.key, args.kubeconfig, policy, args.server)
        )
    if not args.file:
        print("error: give a FILE or --secret NAMESPACE/NAME", file=sys.stderr)
        return 2
    return check_file(Path(args.file), policy, args.server)


def _mint(args: argparse.Namespace) -> int:
    from moonlander.cli.mint import mint_command

    return asyncio.run(
        mint_command(
            admin_kubeconfig=args.kubeconfig,
            name=args.name,
            namespace=args.namespace,
            cluster_role=args.cluster_role,
            roles=args.role,
            expiration=args.expiration,
            audience=args.audience,
            server=args.server,
            output=args.output,
            revoke_only=args.revoke,
            policy=_policy(args),
        )
    )


def _version(_args: argparse.Namespace) -> int:
    print(__version__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moonlander",
        description="Lands Kubernetes cluster credentials from one cluster into another.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the Landing controller")
    run.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig of the cluster Moonlander runs in (default: $KUBECONFIG, else in-cluster)",
    )
    run.add_argument(
        "--parent-kubeconfig",
        type=Path,
        default=Path("/etc/moonlander/parent-kubeconfig"),
        help="the parent cluster's kubeconfig, landed by ParentToChild Landings",
    )
    run.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    run.add_argument(
        "--allow-cross-namespace",
        action="store_true",
        help="let Landings use source Secrets of other namespaces without their grant",
    )
    run.add_argument(
        "--controller-namespace",
        help="the namespace Moonlander runs in (holding its identity and the parent "
        "credential); no Landing may write there (default: $POD_NAMESPACE)",
    )
    run.add_argument(
        "--mint-namespace",
        action="append",
        default=[],
        metavar="NAMESPACE",
        help="a namespace where ParentToChild Landings may mint ServiceAccounts, with the "
        "parent's rights (repeatable; default: moonlander-minted). Keep tenants from writing "
        "Secrets there: no other namespace is ever used, whatever a LandingPolicy says",
    )
    run.add_argument("--workers", type=int, default=16, help="concurrent reconciles")
    run.add_argument(
        "--resync-interval", type=float, default=600.0, help="seconds between periodic checks"
    )
    run.add_argument("--max-backoff", type=float, default=120.0, help="cap of retry delays (s)")
    run.add_argument("--health-port", type=int, help="serve /healthz and /readyz on this port")
    run.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    run.add_argument(
        "--metrics-auth",
        action="store_true",
        help="serve /metrics only to bearer tokens the API server authenticates (TokenReview) "
        "and allows to get /metrics (SubjectAccessReview); needs create on tokenreviews and "
        "subjectaccessreviews",
    )
    run.add_argument(
        "--bind-address",
        default="0.0.0.0",  # noqa: S104 - kubelet probes and Prometheus scrapes come from outside the pod
        help="address for health, metrics and webhook",
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="only the holder of a coordination.k8s.io Lease reconciles (for replicas > 1)",
    )
    run.add_argument(
        "--leader-election-namespace", help="namespace of the Lease (default: $POD_NAMESPACE)"
    )
    run.add_argument("--leader-election-id", default="moonlander-leader", help="name of the Lease")
    run.add_argument(
        "--shards",
        action="store_true",
        help="split the Landings among every replica started with --shards (one Lease each, "
        "named <leader-election-id>-shard-<identity>, in --leader-election-namespace); "
        "instead of --leader-elect",
    )
    run.add_argument(
        "--webhook-port",
        type=int,
        help="serve the validating admission webhook (/validate, /validate-landingset) over "
        "TLS; needs --webhook-client-ca",
    )
    run.add_argument(
        "--webhook-cert-dir",
        type=Path,
        help="directory with tls.crt and tls.key for the webhook, read again when they change "
        "(default /tmp/k8s-webhook-server/serving-certs)",
    )
    run.add_argument(
        "--webhook-client-ca",
        type=Path,
        metavar="FILE",
        help="PEM CA of the client certificate the API server presents to webhooks (its "
        "admission configuration); callers without a certificate from it are refused",
    )
    run.add_argument(
        "--webhook-client-name",
        action="append",
        default=[],
        metavar="NAME",
        help="accept only client certificates naming NAME (common name or DNS "
        "subjectAltName; repeatable; default: any certificate from --webhook-client-ca)",
    )
    _add_policy_flags(run)
    run.set_defaults(func=_run)

    check = sub.add_parser("check", help="validate a kubeconfig as the controller would")
    check.add_argument("file", nargs="?", help="kubeconfig file")
    check.add_argument("--secret", metavar="NAMESPACE/NAME", help="read it from a Secret")
    check.add_argument("--key", help="key of the Secret (default: the controller's search)")
    check.add_argument("--kubeconfig", type=Path, help="cluster to read --secret from")
    check.add_argument(
        "--server",
        help="the server a ChildToParent Landing's spec.server puts in place of the "
        "kubeconfig's own (as the controller judges it)",
    )
    _add_policy_flags(check)
    check.set_defaults(func=_check)

    mint = sub.add_parser(
        "mint",
        help="create a least-privilege ServiceAccount and print a kubeconfig with its token",
    )
    mint.add_argument("--kubeconfig", type=Path, required=True, help="admin kubeconfig")
    mint.add_argument("--name", required=True, help="ServiceAccount name")
    mint.add_argument("--namespace", default="moonlander-system", help="its namespace")
    mint.add_argument("--cluster-role", help="ClusterRole bound cluster-wide")
    mint.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="KIND/NAME@NS[,NS...]",
        help="Role or ClusterRole bound in these namespaces (repeatable)",
    )
    mint.add_argument("--expiration", type=int, default=3600, help="token lifetime (s)")
    mint.add_argument("--audience", help="token audience (default https://kubernetes.default.svc)")
    mint.add_argument("--server", help="API server URL written into the kubeconfig")
    mint.add_argument("--output", type=Path, help="write the kubeconfig here (mode 0600)")
    mint.add_argument("--revoke", action="store_true", help="delete the identity instead")
    _add_policy_flags(mint)
    mint.set_defaults(func=_mint)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    logging.getLogger(__name__).debug("command %s", args.command)
    return int(args.func(args))
