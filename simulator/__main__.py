"""`python -m simulator --port PORT --kubeconfig PATH [--seed FILE.yaml ...]
[--token-auth-file CSV] [--authorization-mode RBAC]`

A stand-in Kubernetes API server with KubeVirt and a CSI snapshotter, for the
demo and the tests. It writes a kubeconfig once listening, prints
`simulator listening on http://HOST:PORT`, and stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from simulator.authentication import TokenFileError
from simulator.reference import ReferenceError
from simulator.runtime import ListenError, Options, serve
from simulator.seeding import SeedError


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="A Kubernetes API server stand-in with KubeVirt and CSI snapshot behaviour.",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on (0 picks a free one)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--kubeconfig", type=Path, required=True, help="where to write the kubeconfig"
    )
    parser.add_argument(
        "--seed",
        type=Path,
        action="append",
        default=[],
        help="YAML manifests to load at start (repeatable)",
    )
    parser.add_argument(
        "--token", default="", help="the admin's bearer token (default: random)"
    )
    parser.add_argument(
        "--token-auth-file",
        type=Path,
        default=None,
        help="more bearer tokens, as kube-apiserver's static token file: CSV lines"
        ' token,user,uid[,"group1,group2"]',
    )
    parser.add_argument(
        "--authorization-mode",
        choices=("AlwaysAllow", "RBAC"),
        default="AlwaysAllow",
        help="RBAC: every request but the admin's (system:masters) needs a role that allows it",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="the reference schemas folder (default: $VMSNAP_REFERENCE_DIR, else the vendored"
        " simulator/upstream)",
    )
    parser.add_argument(
        "--crds", type=Path, default=None, help="folder of extra CRD YAMLs (default: deploy/crds)"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, not {args.port}")
    for seed in args.seed:
        if not seed.is_file():
            parser.error(f"--seed {seed}: no such file")
    if args.token_auth_file is not None and not args.token_auth_file.is_file():
        parser.error(f"--token-auth-file {args.token_auth_file}: no such file")
    return Options(
        port=args.port,
        kubeconfig=args.kubeconfig,
        seeds=list(args.seed),
        host=args.host,
        token=args.token,
        reference=args.reference,
        crds=args.crds,
        token_auth_file=args.token_auth_file,
        authorization_mode=args.authorization_mode,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        return asyncio.run(serve(options))
    except (ReferenceError, SeedError, ListenError, TokenFileError) as exc:
        print(f"simulator: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
