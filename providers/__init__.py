"""FaaS executors: one interface, one error tree, one module per provider.

This package imports neither ``dispatcher`` nor ``workers``. The reference server for the
Custom FaaS contract lives in ``providers.reference_server`` (extra ``server``) and is not
imported here.
"""

from providers.base import (
    DEFAULT_CONFIG,
    MAX_JOB_ID,
    FaasConfig,
    FaasDeployment,
    FaasExecutor,
    FaasMetrics,
    FaasResponse,
    InvokeReply,
    check_job_id,
    function_name,
)
from providers.custom import HttpFaasExecutor
from providers.errors import (
    AlreadyDeployed,
    AuthError,
    ErrorKind,
    FaasError,
    FaasTimeout,
    FunctionError,
    InfrastructureError,
    InvalidConfig,
    InvocationFailed,
    NotDeployed,
    PayloadTooLarge,
    PermanentFaasError,
    SerializationError,
    Throttled,
    TransientFaasError,
)
from providers.packaging import build_custom_package, build_shell_package, load_prebuilt
from providers.pricing import CostEstimate, compare_providers, estimate_cost

__all__ = [  # noqa: RUF022  (grouped by purpose, as STYLE.md asks)
    # The executor interface and its values
    "DEFAULT_CONFIG",
    "MAX_JOB_ID",
    "FaasConfig",
    "FaasDeployment",
    "FaasExecutor",
    "FaasMetrics",
    "FaasResponse",
    "InvokeReply",
    "check_job_id",
    "function_name",
    # Executors
    "HttpFaasExecutor",
    # Errors
    "AlreadyDeployed",
    "AuthError",
    "ErrorKind",
    "FaasError",
    "FaasTimeout",
    "FunctionError",
    "InfrastructureError",
    "InvalidConfig",
    "InvocationFailed",
    "NotDeployed",
    "PayloadTooLarge",
    "PermanentFaasError",
    "SerializationError",
    "Throttled",
    "TransientFaasError",
    # Packaging
    "build_custom_package",
    "build_shell_package",
    "load_prebuilt",
    # Cost
    "CostEstimate",
    "compare_providers",
    "estimate_cost",
]
