"""FaaS executors: one interface, one error tree, one module per provider.

This package imports neither ``dispatcher`` nor ``workers``, nor any provider SDK: a
provider's SDK loads when one of its executors is built (:mod:`providers.registry`). The
reference server for the Custom FaaS contract lives in ``providers.reference_server`` (extra
``server``) and is not imported here.
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
    PermanentInfrastructureError,
    SerializationError,
    Throttled,
    TransientFaasError,
    TransientInfrastructureError,
)
from providers.limits import NO_LIMITS, ProviderLimits
from providers.options import ProviderOptions, Secret
from providers.packaging import (
    PackageBuilder,
    build_custom_package,
    build_shell_package,
    load_prebuilt,
)
from providers.pricing import CostEstimate, compare_providers, estimate_cost
from providers.registry import (
    MissingExtra,
    ProviderSpec,
    UnknownProvider,
    create_executor,
    provider_names,
    provider_spec,
)

__all__ = [  # noqa: RUF022  (grouped by purpose)
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
    # Providers by name, their options and limits
    "MissingExtra",
    "NO_LIMITS",
    "ProviderLimits",
    "ProviderOptions",
    "ProviderSpec",
    "Secret",
    "UnknownProvider",
    "create_executor",
    "provider_names",
    "provider_spec",
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
    "PermanentInfrastructureError",
    "SerializationError",
    "Throttled",
    "TransientFaasError",
    "TransientInfrastructureError",
    # Packaging
    "PackageBuilder",
    "build_custom_package",
    "build_shell_package",
    "load_prebuilt",
    # Cost
    "CostEstimate",
    "compare_providers",
    "estimate_cost",
]
