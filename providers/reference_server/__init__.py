"""Reference server for the Custom FaaS HTTP contract v1 (`docs/custom-faas-contract.md`).

A single-box platform: deployments live in a data dir, every invocation runs the function's
`bootstrap` as a process (or takes a pre-started one from the warm pool), and every limit
the contract names is enforced. Start it with `serve(...)`, `python -m
providers.reference_server`, or mount `create_app(...)` in any ASGI server.
"""

from ._app import create_app
from ._limits import DEFAULT_LIMITS, ServerLimits
from ._serve import serve

__all__ = [
    # Limits
    "DEFAULT_LIMITS",
    "ServerLimits",
    # Running the server
    "create_app",
    "serve",
]
