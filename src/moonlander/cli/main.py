"""Command line: ``moonlander run | check | mint | status | version`` (the development clusters
and the demo are ``moonlander-dev``, in devtools/). Exit codes: :class:`moonlander.cli.errors.Exit`
(docs/cli.md)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from moonlander import __version__
from moonlander.cli.errors import CliError, Exit
from moonlander.cli.logs import configure_logging
from moonlander.cli.output import FORMATS

if TYPE_CHECKING:
    from moonlander.credentials import Policy


def _policy(args: argparse.Namespace) -> Policy:
    from moonlander.credentials import Policy

    return Policy(
        allow_insecure_tls=args.allow_insecure_tls,
        allow_loopback=args.allow_loopback,
        allow_private=not args.deny_private,
        allowed_networks=tuple(args.allow_network),
    )


def _cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a network in CIDR form (e.g. 10.0.0.0/8)"
        ) from None


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, exit code 2 (kubectl's manner)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(Exit.USAGE, f"error: {message} (see '{self.prog} --help')\n")


def _add_kubeconfig_flags(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group(f"cluster access ({what}; found as kubectl finds it)")
    g.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster)",
    )
    g.add_argument("--context", help="the kubeconfig context to use (default: current-context)")


def _add_format_flag(p: argparse.ArgumentParser, *flags: str) -> None:
    p.add_argument(
        *flags, dest="format", choices=FORMATS, help="machine-readable output: json or yaml"
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
        type=_cidr,
        help="allow this address range even where denied by default (repeatable)",
    )
    g.add_argument(
        "--allow-insecure-tls",
        action="store_true",
        help="accept kubeconfigs with insecure-skip-tls-verify (not recommended)",
    )


def _run(args: argparse.Namespace) -> int:
    from moonlander.cli.kubeconfig import readable
    from moonlander.controller.loop import Timing
    from moonlander.operator import DEFAULT_WEBHOOK_CERT_DIR, Options, local_kubeconfig, run

    try:
        kubeconfig = local_kubeconfig(args.kubeconfig, os.environ)
    except ValueError as err:
        raise CliError(Exit.USAGE, str(err)) from None
    readable(kubeconfig, os.environ)  # a missing or broken file: one line, not a traceback
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
    from moonlander.cli import check
    from moonlander.cli import kubeconfig as own

    policy = _policy(args)
    if args.secret:
        if args.file:
            raise CliError(Exit.USAGE, "give a FILE or --secret, not both")
        namespace, name = check.secret_ref(args.secret, args.namespace)
        target = own.load(args.kubeconfig, args.context)
        namespace = namespace or target.namespace
        raw, key = asyncio.run(check.read_secret(target, namespace, name, args.key))
        where = f"Secret {namespace}/{name} key {key!r}"
        return check.report(raw, policy, where, args.server, args.format)
    if not args.file:
        raise CliError(Exit.USAGE, "give a FILE (- for stdin) or --secret [NAMESPACE/]NAME")
    for flag in ("kubeconfig", "context", "namespace", "key"):
        if getattr(args, flag) is not None:
            raise CliError(Exit.USAGE, f"--{flag} applies only with --secret")
    where = "stdin" if args.file == "-" else args.file
    raw = check.read_file(Path(args.file))
    return check.report(raw, policy, where, args.server, args.format)


def _mint(args: argparse.Namespace) -> int:
    from moonlander.cli import kubeconfig as own
    from moonlander.cli.mint import mint_command

    fmt, output = args.output or "yaml", args.output_file
    if fmt not in FORMATS:  # --output FILE, as before 0.x: still accepted
        if output is not None:
            raise CliError(Exit.USAGE, "--output takes json or yaml; the file is --output-file")
        print("warning: --output FILE is deprecated: use --output-file FILE", file=sys.stderr)
        fmt, output = "yaml", Path(args.output)
    return asyncio.run(
        mint_command(
            load=lambda: own.load(args.kubeconfig, args.context),
            name=args.name,
            namespace=args.namespace or "moonlander-system",
            cluster_role=args.cluster_role,
            roles=args.role,
            expiration=args.expiration,
            audience=args.audience,
            server=args.server,
            output=output,
            revoke_only=args.revoke,
            policy=_policy(args),
            fmt=fmt,
        )
    )


def _status(args: argparse.Namespace) -> int:
    from moonlander.cli import kubeconfig as own
    from moonlander.cli import status
    from moonlander.cli.output import render

    if args.all_namespaces and args.namespace:
        raise CliError(Exit.USAGE, "-n/--namespace and -A/--all-namespaces exclude each other")
    if args.all_namespaces and args.name:
        raise CliError(Exit.USAGE, "a NAME needs one namespace: use -n, not -A")
    target = own.load(args.kubeconfig, args.context)
    namespace = None if args.all_namespaces else (args.namespace or target.namespace)
    query = status.Query(namespace, args.name)
    summaries = asyncio.run(status.collect(own.client(target), target, query))
    if args.format:
        sys.stdout.write(render({"items": summaries}, args.format))
    else:
        sys.stdout.write(status.render_text(summaries, query))
    if args.name and not summaries:
        return Exit.UNREACHABLE  # as kubectl get: what was named is not there
    return Exit.OK


def _version(_args: argparse.Namespace) -> int:
    print(__version__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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

    check = sub.add_parser(
        "check",
        help="validate a kubeconfig as the controller would",
        description="Exit codes: 0 usable, 1 not usable, 2 usage, 3 cannot read the file, "
        "reach the cluster or read the Secret.",
    )
    check.add_argument("file", nargs="?", help="kubeconfig file (- reads stdin)")
    check.add_argument(
        "--secret", metavar="[NAMESPACE/]NAME", help="read it from a Secret (in -n's namespace)"
    )
    check.add_argument("--key", help="key of the Secret (default: the controller's search)")
    check.add_argument(
        "-n", "--namespace", help="namespace of --secret (default: the context's namespace)"
    )
    _add_kubeconfig_flags(check, "to read --secret")
    _add_format_flag(check, "-o", "--output")
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
        description="Exit codes: 0 done, 1 refused as asked (spec, audience, conflict), "
        "2 usage, 3 cannot reach the cluster or not allowed to (RBAC), cannot write --output-file.",
    )
    _add_kubeconfig_flags(mint, "an identity allowed to create ServiceAccounts and bindings")
    mint.add_argument("--name", required=True, help="ServiceAccount name")
    mint.add_argument("-n", "--namespace", help="its namespace (default: moonlander-system)")
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
    mint.add_argument(
        "-o",
        "--output",
        metavar="json|yaml",
        help="format of the kubeconfig printed (default yaml); a file name here is "
        "deprecated: use --output-file",
    )
    mint.add_argument(
        "--output-file", type=Path, metavar="FILE", help="write the kubeconfig here (mode 0600)"
    )
    mint.add_argument("--revoke", action="store_true", help="delete the identity instead")
    _add_policy_flags(mint)
    mint.set_defaults(func=_mint)

    st = sub.add_parser(
        "status",
        help="show Landings and LandingSets: ready or not, what landed where, and why not",
        description="Read-only, with your own credentials. Exit codes: 0 shown, 2 usage, "
        "3 cannot reach the cluster or not allowed to list (RBAC), or NAME not found.",
    )
    st.add_argument("name", nargs="?", metavar="NAME", help="only this Landing or LandingSet")
    st.add_argument("-n", "--namespace", help="namespace (default: the context's namespace)")
    st.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace you may list"
    )
    _add_kubeconfig_flags(st, "whose Landings to show")
    _add_format_flag(st, "-o", "--output")
    st.set_defaults(func=_status)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    logging.getLogger(__name__).debug("command %s", args.command)
    try:
        return int(args.func(args))
    except CliError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return int(err.code)
    except KeyboardInterrupt:
        return 130
