"""`python -m providers.reference_server --host H --port P --data-dir D [...]`.

Lets tests and benchmarks start the server as a real process without the project CLI, whose
``blueprint-faas reference-server`` runs this same parser. The
API key comes from `--api-key` or the BLUEPRINT_FAAS_SERVER_API_KEY environment variable
(preferred: command lines are visible to other local users).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from ._limits import DEFAULT_LIMITS, ServerLimits
from ._serve import serve

_API_KEY_ENV = "BLUEPRINT_FAAS_SERVER_API_KEY"


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m providers.reference_server"
) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Reference server for the Custom FaaS HTTP contract v1.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--api-key", default=None, help=f"default: ${_API_KEY_ENV}")
    parser.add_argument("--max-upload-bytes", type=int, default=DEFAULT_LIMITS.max_upload_bytes)
    parser.add_argument(
        "--max-uncompressed-bytes", type=int, default=DEFAULT_LIMITS.max_uncompressed_bytes
    )
    parser.add_argument("--max-entries", type=int, default=DEFAULT_LIMITS.max_entries)
    parser.add_argument("--max-invoke-bytes", type=int, default=DEFAULT_LIMITS.max_invoke_bytes)
    parser.add_argument("--warm-idle-ttl-s", type=float, default=DEFAULT_LIMITS.warm_idle_ttl_s)
    parser.add_argument(
        "--max-queued-per-function", type=int, default=DEFAULT_LIMITS.max_queued_per_function
    )
    parser.add_argument("--max-output-bytes", type=int, default=DEFAULT_LIMITS.max_output_bytes)
    parser.add_argument("--max-warm-instances", type=int, default=DEFAULT_LIMITS.max_warm_instances)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    try:
        limits = ServerLimits(
            max_upload_bytes=args.max_upload_bytes,
            max_uncompressed_bytes=args.max_uncompressed_bytes,
            max_entries=args.max_entries,
            max_invoke_bytes=args.max_invoke_bytes,
            warm_idle_ttl_s=args.warm_idle_ttl_s,
            max_queued_per_function=args.max_queued_per_function,
            max_output_bytes=args.max_output_bytes,
            max_warm_instances=args.max_warm_instances,
        )
    except ValueError as exc:
        parser.error(str(exc))
    serve(
        args.host,
        args.port,
        args.data_dir,
        api_key=args.api_key or os.environ.get(_API_KEY_ENV) or None,
        limits=limits,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
