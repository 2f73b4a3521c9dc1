"""What one invocation costs on each provider, from its published list prices.

An estimate is list price for on-demand use: it ignores free tiers and monthly volume
discounts, which belong to a whole account's month and cannot be shared out per call.

Duration is counted once. The original crate added execution time and billed time together;
here the billed duration is the only duration priced. When a provider reports no billed
figure, :func:`estimate_invocation_cost` falls back to the execution time, then to our own
total time, and each provider's rounding rule (granularity and minimum) turns that into what
the provider would bill. Rounding a figure the provider already billed changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from providers.base import FaasMetrics

__all__ = [
    "DEFAULT_PRICE_BOOK",
    "Arch",
    "CostEstimate",
    "PriceBook",
    "PriceList",
    "PricingLookupError",
    "ProviderPricing",
    "compare_providers",
    "estimate_cost",
    "estimate_invocation_cost",
    "with_custom_prices",
]

_MB_PER_GB = 1024  # every provider here prices memory in GiB (AWS and Azure write "GB")
_MS_PER_S = 1000
_REQUESTS_PER_MILLION = 1_000_000


class Arch(StrEnum):
    """The instruction set a function runs on; only AWS prices the two differently."""

    X86_64 = "x86_64"
    ARM64 = "arm64"


class PricingLookupError(LookupError):
    """No price is known for the provider or region asked for."""


@dataclass(frozen=True, slots=True)
class PriceList:
    """What one provider charges in one region, and how it rounds what it bills.

    Parameters
    ----------
    per_gb_second_usd:
        Price of one GiB of memory held for one second (x86_64).
    arm64_per_gb_second_usd:
        The same on arm64; None when the provider does not price arm64 differently.
    per_vcpu_second_usd:
        Price of one vCPU for one second, for providers that bill CPU apart from memory.
    per_million_requests_usd:
        Price of one million invocations.
    granularity_ms:
        Billed duration is rounded up to a multiple of this.
    minimum_ms:
        Billed duration of an invocation is at least this.
    memory_step_mb:
        Billed memory is rounded up to a multiple of this.
    max_billed_memory_mb:
        Billed memory is capped at this (None: no cap).
    bills_observed_memory:
        True when the provider bills the memory the function used rather than the memory
        configured (Azure consumption plan).
    memory_sizes_mb:
        When not empty, the instance sizes billed: memory is billed as the smallest size at
        least as large (Azure Flex Consumption bills the instance's memory).
    vcpu_by_memory_mb:
        ``(memory_mb, vcpu)`` steps in ascending order: a function gets the vCPU of the first
        step whose memory is at least its own (GCP derives vCPU from the memory tier).
    """

    per_gb_second_usd: float = 0.0
    arm64_per_gb_second_usd: float | None = None
    per_vcpu_second_usd: float = 0.0
    per_million_requests_usd: float = 0.0
    granularity_ms: int = 1
    minimum_ms: int = 0
    memory_step_mb: int = 1
    max_billed_memory_mb: int | None = None
    bills_observed_memory: bool = False
    memory_sizes_mb: tuple[int, ...] = ()
    vcpu_by_memory_mb: tuple[tuple[int, float], ...] = ()

    def billed_duration_ms(self, duration_ms: float) -> int:
        """``duration_ms`` rounded up to the granularity, and at least the minimum."""
        if duration_ms < 0 or not math.isfinite(duration_ms):
            raise ValueError(f"duration_ms must be a finite number >= 0, got {duration_ms}")
        rounded = math.ceil(duration_ms / self.granularity_ms) * self.granularity_ms
        return max(rounded, self.minimum_ms)

    def billed_memory_mb(self, memory_mb: float) -> int:
        """``memory_mb`` rounded up to the memory step and capped where the provider caps it."""
        if memory_mb <= 0 or not math.isfinite(memory_mb):
            raise ValueError(f"memory_mb must be a finite number > 0, got {memory_mb}")
        rounded = math.ceil(memory_mb / self.memory_step_mb) * self.memory_step_mb
        if self.memory_sizes_mb:
            fitting = [size for size in self.memory_sizes_mb if size >= rounded]
            if not fitting:
                largest = self.memory_sizes_mb[-1]
                raise ValueError(f"memory_mb={memory_mb} is above the largest size ({largest} MB)")
            rounded = fitting[0]
        if self.max_billed_memory_mb is not None:
            rounded = min(rounded, self.max_billed_memory_mb)
        return rounded

    def vcpu_for(self, memory_mb: int) -> float:
        """The vCPU billed alongside ``memory_mb`` (0 where CPU is not billed apart).

        Raises
        ------
        ValueError
            ``memory_mb`` is above the largest memory tier.
        """
        if not self.vcpu_by_memory_mb:
            return 0.0
        for tier_mb, vcpu in self.vcpu_by_memory_mb:
            if memory_mb <= tier_mb:
                return vcpu
        raise ValueError(
            f"memory_mb={memory_mb} is above the largest tier ({self.vcpu_by_memory_mb[-1][0]} MB)"
        )

    def gb_second_usd(self, arch: Arch) -> float:
        """The memory price for ``arch``."""
        if arch is Arch.ARM64 and self.arm64_per_gb_second_usd is not None:
            return self.arm64_per_gb_second_usd
        return self.per_gb_second_usd


@dataclass(frozen=True, slots=True)
class ProviderPricing:
    """One provider's price lists by region.

    ``other_regions`` prices any region not listed; None means an unlisted region is refused
    rather than guessed (GCP, whose regions fall into two tiers).
    """

    default_region: str
    regions: Mapping[str, PriceList]
    other_regions: PriceList | None = None
    #: Where the figures come from and when they were read.
    source: str = ""

    def price_list(self, region: str | None = None) -> PriceList:
        """The price list of ``region`` (None: the provider's default region).

        Raises
        ------
        PricingLookupError
            The region is not listed and the provider has no price for other regions.
        """
        region = self.default_region if region is None else region
        found = self.regions.get(region, self.other_regions)
        if found is None:
            raise PricingLookupError(f"no price list for region {region!r}")
        return found


#: Provider name -> its pricing. Names are the executors' ``provider_name``.
PriceBook = Mapping[str, ProviderPricing]


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """What one invocation costs, split into compute (memory and CPU time) and request."""

    provider: str
    region: str
    arch: Arch
    billed_ms: int
    billed_memory_mb: int
    compute_usd: float
    request_usd: float

    @property
    def total_usd(self) -> float:
        return self.compute_usd + self.request_usd


# -- published figures ----------------------------------------------------------------------
# Read on 2026-11-27 from stored copies of the pages named in each ``source``, or, where a
# comment says "quoted", from third-party material quoting those pages. Figures marked
# "unverified" were found in neither and come from memory of the same pages: check them
# before relying on them.

# AWS Lambda, https://aws.amazon.com/lambda/pricing/ (first duration tier: the first
# 6 billion GB-s a month on x86_64, 7.5 billion on arm64). Duration is rounded up to 1 ms.
_LAMBDA_STANDARD = PriceList(
    per_gb_second_usd=0.0000166667,
    arm64_per_gb_second_usd=0.0000133334,
    per_million_requests_usd=0.20,
)


def _lambda(x86: float, arm64: float, requests: float) -> PriceList:
    return PriceList(
        per_gb_second_usd=x86, arm64_per_gb_second_usd=arm64, per_million_requests_usd=requests
    )


# Regions priced above the standard list. GB-s prices: quoted; request prices: unverified.
_LAMBDA_REGIONS = {
    "af-south-1": _lambda(0.0000221, 0.00001768, 0.28),
    "ap-east-1": _lambda(0.00002292, 0.0000183, 0.28),
    "eu-south-1": _lambda(0.0000195172, 0.0000156138, 0.23),
    "me-south-1": _lambda(0.0000206667, 0.0000165334, 0.25),
    "me-central-1": _lambda(0.0000206667, 0.0000165334, 0.25),
}

# GCP Cloud Functions v2 (Cloud Run functions) bill as Cloud Run services with request-based
# billing, https://cloud.google.com/run/pricing: CPU and memory while a request is processed,
# rounded up to 100 ms, plus a request fee; region tiers from
# https://cloud.google.com/run/docs/locations; vCPU per memory tier from
# https://cloud.google.com/functions/docs/configuring/memory.
_GCP_VCPU_BY_MEMORY_MB = (
    (128, 0.083),
    (256, 0.167),
    (512, 0.333),
    (1024, 0.583),
    (2048, 1.0),
    (4096, 2.0),
    (8192, 2.0),
    (16384, 4.0),
    (32768, 8.0),
)
_GCP_TIER_1 = PriceList(
    per_vcpu_second_usd=0.000024,
    per_gb_second_usd=0.0000025,
    per_million_requests_usd=0.40,
    granularity_ms=100,
    vcpu_by_memory_mb=_GCP_VCPU_BY_MEMORY_MB,
)
# Tier 2 CPU and memory prices: quoted.
_GCP_TIER_2 = PriceList(
    per_vcpu_second_usd=0.0000336,
    per_gb_second_usd=0.0000035,
    per_million_requests_usd=0.40,
    granularity_ms=100,
    vcpu_by_memory_mb=_GCP_VCPU_BY_MEMORY_MB,
)
# Written as text so that the tables read by continent, as on the locations page.
_GCP_TIER_1_REGIONS = """
    asia-east1 asia-northeast1 asia-northeast2
    europe-north1 europe-southwest1 europe-west1 europe-west4 europe-west8 europe-west9
    me-west1
    us-central1 us-east1 us-east4 us-east5 us-south1 us-west1
""".split()  # noqa: SIM905
_GCP_TIER_2_REGIONS = """
    africa-south1
    asia-east2 asia-northeast3 asia-south1 asia-south2 asia-southeast1 asia-southeast2
    australia-southeast1 australia-southeast2
    europe-central2 europe-west10 europe-west12 europe-west2 europe-west3 europe-west6
    me-central1 me-central2
    northamerica-northeast1 northamerica-northeast2 southamerica-east1 southamerica-west1
    us-west2 us-west3 us-west4
""".split()  # noqa: SIM905

# Azure Functions Flex Consumption, on-demand mode (the plan this provider deploys to): the
# instance's memory (512, 2,048 or 4,096 MB) for as long as it executes, each execution
# billed at least 1,000 ms and then rounded up to 100 ms
# (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan, "Billing"), plus
# a fee per execution. GB-s price: quoted (East US, modal.com's Azure pricing guide of
# 2025-05, reading https://azure.microsoft.com/pricing/details/functions/); execution fee and
# other regions: unverified, assumed equal. Free grants and always-ready baseline charges are
# not modelled.
_AZURE_FLEX = PriceList(
    per_gb_second_usd=0.000026,
    per_million_requests_usd=0.40,
    granularity_ms=100,
    minimum_ms=1000,
    memory_sizes_mb=(512, 2048, 4096),
)

# DigitalOcean Functions, https://www.digitalocean.com/pricing/functions: one price in every
# region, no request fee, a 100 ms minimum per invocation (1 ms granularity: unverified).
_DIGITALOCEAN = PriceList(per_gb_second_usd=0.0000185, minimum_ms=100)

#: The default prices of a custom platform: free until the operator says otherwise.
_CUSTOM_FREE = PriceList()

DEFAULT_PRICE_BOOK: PriceBook = MappingProxyType(
    {
        "aws": ProviderPricing(
            default_region="us-east-1",
            regions=MappingProxyType(_LAMBDA_REGIONS),
            other_regions=_LAMBDA_STANDARD,
            source="https://aws.amazon.com/lambda/pricing/ read 2026-11-27",
        ),
        "gcp": ProviderPricing(
            default_region="us-central1",
            regions=MappingProxyType(
                {region: _GCP_TIER_1 for region in _GCP_TIER_1_REGIONS}
                | {region: _GCP_TIER_2 for region in _GCP_TIER_2_REGIONS}
            ),
            source="https://cloud.google.com/run/pricing read 2026-11-27",
        ),
        "azure": ProviderPricing(
            default_region="eastus",
            regions=MappingProxyType({}),
            other_regions=_AZURE_FLEX,
            source="https://azure.microsoft.com/pricing/details/functions/ (Flex Consumption, "
            "on demand), quoted 2026-12-03",
        ),
        "digitalocean": ProviderPricing(
            default_region="nyc1",
            regions=MappingProxyType({}),
            other_regions=_DIGITALOCEAN,
            source="https://www.digitalocean.com/pricing/functions read 2026-11-27",
        ),
        "custom": ProviderPricing(
            default_region="default",
            regions=MappingProxyType({}),
            other_regions=_CUSTOM_FREE,
            source="operator-supplied; free by default",
        ),
    }
)


def with_custom_prices(prices: PriceList, book: PriceBook = DEFAULT_PRICE_BOOK) -> PriceBook:
    """A copy of ``book`` in which the custom platform charges ``prices`` in every region."""
    custom = ProviderPricing(
        default_region="default",
        regions=MappingProxyType({}),
        other_regions=prices,
        source="operator-supplied",
    )
    return MappingProxyType({**book, "custom": custom})


def estimate_cost(
    provider: str,
    *,
    duration_ms: float,
    memory_mb: float,
    region: str | None = None,
    arch: Arch = Arch.X86_64,
    book: PriceBook = DEFAULT_PRICE_BOOK,
) -> CostEstimate:
    """The cost of one invocation that ran ``duration_ms`` with ``memory_mb``.

    Parameters
    ----------
    duration_ms:
        The billed duration when the provider reported one, otherwise the best measured
        duration; the provider's rounding and minimum are applied either way.
    memory_mb:
        The memory the provider bills on: the configured memory, except where the price list
        bills the memory the function used (``bills_observed_memory``).
    region:
        None prices the provider's default region.

    Raises
    ------
    PricingLookupError
        ``provider`` is not in ``book``, or it has no price for ``region``.
    ValueError
        A negative or non-finite duration, a memory that is not positive, or a memory above
        the provider's largest tier.
    """
    pricing = _pricing(provider, book)
    prices = pricing.price_list(region)
    billed_ms = prices.billed_duration_ms(duration_ms)
    billed_memory_mb = prices.billed_memory_mb(memory_mb)
    seconds = billed_ms / _MS_PER_S
    memory_usd = seconds * billed_memory_mb / _MB_PER_GB * prices.gb_second_usd(arch)
    cpu_usd = seconds * prices.vcpu_for(billed_memory_mb) * prices.per_vcpu_second_usd
    return CostEstimate(
        provider=provider,
        region=pricing.default_region if region is None else region,
        arch=arch,
        billed_ms=billed_ms,
        billed_memory_mb=billed_memory_mb,
        compute_usd=memory_usd + cpu_usd,
        request_usd=prices.per_million_requests_usd / _REQUESTS_PER_MILLION,
    )


def estimate_invocation_cost(
    provider: str,
    metrics: FaasMetrics,
    *,
    memory_mb: float,
    region: str | None = None,
    arch: Arch = Arch.X86_64,
    book: PriceBook = DEFAULT_PRICE_BOOK,
) -> CostEstimate:
    """The cost of an invocation from the metrics its executor reported.

    The duration is ``billed_ms`` when the provider reported it, else ``execution_ms``, else
    ``total_ms`` (our own wall time, which overstates the bill by the network round trip).
    Where the provider bills observed memory and the metrics carry ``memory_used_mb``, that
    figure replaces the configured ``memory_mb``.

    Raises
    ------
    PricingLookupError, ValueError
        As :func:`estimate_cost`.
    """
    duration_ms = metrics.billed_ms
    if duration_ms is None:
        duration_ms = metrics.execution_ms if metrics.execution_ms is not None else metrics.total_ms
    prices = _pricing(provider, book).price_list(region)
    if prices.bills_observed_memory and metrics.memory_used_mb:
        memory_mb = metrics.memory_used_mb
    return estimate_cost(
        provider, duration_ms=duration_ms, memory_mb=memory_mb, region=region, arch=arch, book=book
    )


def compare_providers(
    duration_ms: float,
    memory_mb: float,
    *,
    regions: Mapping[str, str] | None = None,
    arch: Arch = Arch.X86_64,
    book: PriceBook = DEFAULT_PRICE_BOOK,
) -> dict[str, CostEstimate]:
    """What one invocation of ``duration_ms`` and ``memory_mb`` would cost on each provider.

    ``regions`` picks a region per provider name; the others use their default region.

    Raises
    ------
    PricingLookupError, ValueError
        As :func:`estimate_cost`.
    """
    chosen = regions or {}
    return {
        provider: estimate_cost(
            provider,
            duration_ms=duration_ms,
            memory_mb=memory_mb,
            region=chosen.get(provider),
            arch=arch,
            book=book,
        )
        for provider in book
    }


def _pricing(provider: str, book: PriceBook) -> ProviderPricing:
    try:
        return book[provider]
    except KeyError:
        raise PricingLookupError(f"no prices for provider {provider!r}") from None
