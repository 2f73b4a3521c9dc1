"""With only the core install, ``providers`` and ``dispatcher`` import, and a provider whose
SDK is missing fails at first use, naming the extra to install.

Each test runs a fresh interpreter whose import system refuses the optional extras' packages
(as if ``pip install blueprint-faas`` had installed nothing more). Some installs register a
package before any code runs (functions-framework's ``.pth`` file creates the ``google``
namespace at start-up), so the prelude also forgets what the extras put in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

ROOT = Path(__file__).resolve().parents[2]

# Top-level packages of the extras: server, aws, gcp, azure, monitoring.
EXTRA_PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "boto3",
    "botocore",
    "google",
    "azure",
    "flower",
)

_PRELUDE = dedent(
    f"""
    import importlib.abc, importlib.util, json, sys

    BLOCKED = {EXTRA_PACKAGES!r}

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    for preloaded in [name for name in sys.modules if name.split(".")[0] in BLOCKED]:
        del sys.modules[preloaded]
    sys.meta_path.insert(0, NotInstalled())
    """
)


def run_core_only(code: str) -> dict[str, object]:
    """Run ``code`` (which prints one JSON line last) with the extras blocked."""
    completed = subprocess.run(
        [sys.executable, "-c", _PRELUDE + dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def test_providers_and_dispatcher_import_without_any_extra() -> None:
    result = run_core_only(
        """
        import providers, dispatcher
        from dispatcher.app import Blueprint, load_app
        from dispatcher import app_config, operations
        from providers.registry import create_executor

        executor = create_executor("custom", {"base_url": "http://127.0.0.1:1"})
        loaded = sorted(
            name for name in sys.modules if name.split(".")[0] in BLOCKED
        )
        print(json.dumps({
            "providers": providers.provider_names(),
            "executor": executor.provider_name,
            "loaded": loaded,
        }))
        """
    )
    assert result == {
        "providers": ["aws", "azure", "custom", "digitalocean", "gcp"],
        "executor": "custom",
        "loaded": [],
    }


def test_the_gcp_provider_is_declared_without_google_auth_and_names_its_extra() -> None:
    result = run_core_only(
        """
        from providers.registry import MissingExtra, create_executor, provider_spec

        from providers.gcp import CloudFunctionExecutor

        declared = provider_spec("gcp").name
        # Building an executor reads no credentials: google-auth is imported at the first call.
        built = repr(CloudFunctionExecutor("my-project", "europe-west1"))
        try:
            create_executor("gcp", {"project_id": "my-project", "region": "europe-west1"})
        except MissingExtra as error:
            loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
            print(json.dumps({
                "declared": declared, "built": built, "error": str(error), "loaded": loaded
            }))
        """
    )
    assert result == {
        "declared": "gcp",
        "built": "CloudFunctionExecutor(project_id='my-project', region='europe-west1', "
        "function_prefix='blueprint-job', runtime='python312', "
        "credentials=GoogleTokens(credentials_file=None, impersonate_service_account=None))",
        "error": "provider 'gcp' needs google.auth, which is not installed: "
        "pip install 'blueprint-faas[gcp]'",
        "loaded": [],
    }


def test_a_provider_whose_sdk_is_missing_names_its_extra_at_first_use() -> None:
    # providers.aws imports boto3 only when an executor is built: its declaration, options
    # and package builder need no SDK.
    result = run_core_only(
        """
        from providers.registry import MissingExtra, create_executor, provider_spec

        declared = provider_spec("aws").name
        try:
            create_executor(
                "aws",
                {"region": "eu-west-1", "role_arn": "arn:aws:iam::123456789012:role/r"},
            )
        except MissingExtra as error:
            print(json.dumps({"declared": declared, "error": str(error)}))
        """
    )
    assert result == {
        "declared": "aws",
        "error": "provider 'aws' needs boto3, which is not installed: "
        "pip install 'blueprint-faas[aws]'",
    }


def test_a_provider_module_that_imports_a_missing_sdk_names_its_extra() -> None:
    # A provider module that imports its SDK at the top: looking it up fails, but as a
    # MissingExtra naming the extra, not as a bare ModuleNotFoundError.
    result = run_core_only(
        """
        import importlib.machinery

        class GcpModule(importlib.abc.Loader):
            def create_module(self, spec):
                return None

            def exec_module(self, module):
                exec("import google.auth", module.__dict__)

        class Finder(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "providers.gcp":
                    return importlib.machinery.ModuleSpec(name, GcpModule())
                return None

        sys.meta_path.insert(0, Finder())
        from providers.registry import MissingExtra, provider_spec

        try:
            provider_spec("gcp")
        except MissingExtra as error:
            print(json.dumps({"error": str(error), "module": error.name}))
        """
    )
    assert result == {
        # ``import google.auth`` fails at its first part.
        "error": "provider 'gcp' needs google, which is not installed: "
        "pip install 'blueprint-faas[gcp]'",
        "module": "google",
    }


def test_the_azure_provider_needs_its_extra_only_to_build_an_executor() -> None:
    result = run_core_only(
        """
        from providers.registry import MissingExtra, create_executor, provider_spec

        declared = provider_spec("azure").name
        try:
            create_executor("azure", {"subscription_id": "s", "region": "eastus"})
        except MissingExtra as error:
            print(json.dumps({"declared": declared, "error": str(error)}))
        """
    )
    assert result == {
        "declared": "azure",
        "error": "provider 'azure' needs azure.identity, which is not installed: "
        "pip install 'blueprint-faas[azure]'",
    }
