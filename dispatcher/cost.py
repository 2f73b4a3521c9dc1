"""What FaaS jobs cost: a summary of recent invocations, and the same job on every provider.

The workers append one entry per FaaS invocation to the Redis stream
:data:`dispatcher.keys.INVOCATION_LEDGER_KEY` (:mod:`dispatcher.records`). This module reads the
latest entries and answers two questions:

- :func:`summarise`: per job and provider, how many calls, how many failed, the p50 and p95
  of the time each call took (our own measured ``total_ms``), the billed seconds the provider
  reported, and the estimated cost recorded with each call;
- :func:`compare`: what the job would cost on each provider, from its measured durations
  (the provider's ``execution_ms`` where reported, else ``total_ms``) priced one by one with
  :func:`providers.pricing.compare_providers` and averaged, per invocation and per million.

Percentiles use the nearest-rank method: the p-th percentile of n sorted samples is the
``ceil(p/100 * n)``-th smallest, always one of the samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dispatcher._redis import operations_redis
from dispatcher.errors import ConfigError
from dispatcher.records import InvocationRecord, recent_invocations
from providers.base import DEFAULT_MEMORY_MB
from providers.pricing import DEFAULT_PRICE_BOOK, PriceBook, compare_providers

if TYPE_CHECKING:
    from dispatcher.app import Blueprint

__all__ = [
    "DEFAULT_LAST",
    "CostReport",
    "JobCost",
    "ProviderQuote",
    "compare",
    "cost_report",
    "percentile",
    "summarise",
]

#: How many of the latest ledger entries ``blueprint-faas cost`` reads by default.
DEFAULT_LAST = 1000
_PER_MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class JobCost:
    """Recent invocations of one job on one provider, summed up."""

    job_id: int
    provider: str
    count: int
    errors: int
    #: None when no invocation reported a duration.
    p50_ms: float | None
    p95_ms: float | None
    billed_s: float
    cost_usd: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "provider": self.provider,
            "count": self.count,
            "errors": self.errors,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "billed_s": self.billed_s,
            "cost_usd": self.cost_usd,
        }


@dataclass(frozen=True, slots=True)
class ProviderQuote:
    """What a job's measured invocations would cost on one provider."""

    provider: str
    region: str
    per_invocation_usd: float

    @property
    def per_million_usd(self) -> float:
        return self.per_invocation_usd * _PER_MILLION

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "region": self.region,
            "per_invocation_usd": self.per_invocation_usd,
            "per_million_usd": self.per_million_usd,
        }


def summarise(records: Iterable[InvocationRecord]) -> list[JobCost]:
    """Per (job id, provider), sorted by both: counts, errors, p50/p95, billed s and cost."""
    groups: dict[tuple[int, str], list[InvocationRecord]] = {}
    for record in records:
        groups.setdefault((record.job_id, record.provider), []).append(record)
    return [
        _job_cost(job_id, provider, group) for (job_id, provider), group in sorted(groups.items())
    ]


def compare(
    records: Iterable[InvocationRecord],
    *,
    memory_mb: float,
    book: PriceBook = DEFAULT_PRICE_BOOK,
) -> list[ProviderQuote]:
    """What the invocations in ``records`` would cost on each provider of ``book``, on average.

    Each invocation's duration (``execution_ms`` where the provider reported it, else
    ``total_ms``) is priced with each provider's rounding, then the prices are averaged: one
    mean duration would hide the rounding of a provider that bills in 100 ms steps.

    Raises
    ------
    ValueError
        ``records`` is empty, or ``memory_mb`` is not a memory every provider can price.
    """
    durations_ms = [d for d in map(_duration_ms, records) if d is not None]
    if not durations_ms:
        raise ValueError("no invocations to price")
    totals: dict[str, float] = dict.fromkeys(book, 0.0)
    regions: dict[str, str] = {}
    for duration_ms in durations_ms:
        for provider, estimate in compare_providers(duration_ms, memory_mb, book=book).items():
            totals[provider] += estimate.total_usd
            regions[provider] = estimate.region
    return [
        ProviderQuote(provider, regions[provider], totals[provider] / len(durations_ms))
        for provider in book
    ]


def percentile(samples: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``samples`` (one of the samples).

    Raises
    ------
    ValueError
        ``samples`` is empty or ``p`` is outside (0, 100].
    """
    if not samples:
        raise ValueError("no samples")
    if not 0 < p <= 100:
        raise ValueError(f"p must be in (0, 100], got {p}")
    ordered = sorted(samples)
    return ordered[math.ceil(p / 100 * len(ordered)) - 1]


def _job_cost(job_id: int, provider: str, records: Sequence[InvocationRecord]) -> JobCost:
    totals_ms = [record.total_ms for record in records if record.total_ms is not None]
    return JobCost(
        job_id=job_id,
        provider=provider,
        count=len(records),
        errors=sum(1 for record in records if not record.ok),
        p50_ms=percentile(totals_ms, 50) if totals_ms else None,
        p95_ms=percentile(totals_ms, 95) if totals_ms else None,
        billed_s=sum(record.billed_ms or 0.0 for record in records) / 1000,
        cost_usd=sum(record.cost_usd or 0.0 for record in records),
    )


def _duration_ms(record: InvocationRecord) -> float | None:
    return record.execution_ms if record.execution_ms is not None else record.total_ms


@dataclass(frozen=True, slots=True)
class CostReport:
    """``blueprint-faas cost``: the summary, and with a job id, its price on each provider."""

    invocations: int
    jobs: tuple[JobCost, ...]
    job_id: int | None = None
    memory_mb: float | None = None
    quotes: tuple[ProviderQuote, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "invocations": self.invocations,
            "jobs": [job.to_dict() for job in self.jobs],
        }
        if self.job_id is not None:
            values["comparison"] = {
                "job_id": self.job_id,
                "memory_mb": self.memory_mb,
                "providers": [quote.to_dict() for quote in self.quotes],
            }
        return values


def cost_report(
    blueprint: Blueprint,
    *,
    last: int = DEFAULT_LAST,
    job_id: int | None = None,
    memory_mb: float | None = None,
    book: PriceBook = DEFAULT_PRICE_BOOK,
) -> CostReport:
    """Summarise the latest ``last`` invocations; with ``job_id``, price that job everywhere.

    The memory priced is ``memory_mb``, else the memory of the job's latest invocation, else
    the memory the app configured for the job.

    Raises
    ------
    ConfigError
        The result backend is not Redis (the embedded mode keeps no ledger).
    redis.RedisError
        Redis cannot be reached.
    ValueError
        ``last`` is below 1, or a memory no provider can price.
    """
    client = operations_redis(blueprint.settings)
    if client is None:
        raise ConfigError(
            "the invocation ledger lives in the result backend's Redis; none is configured"
        )
    try:
        records = list(recent_invocations(client, last))
    finally:
        client.close()
    report = CostReport(invocations=len(records), jobs=tuple(summarise(records)))
    if job_id is None:
        return report
    mine = [record for record in records if record.job_id == job_id]
    if memory_mb is None:
        memory_mb = next((r.memory_mb for r in mine if r.memory_mb), None) or _configured_memory(
            blueprint, job_id
        )
    quotes = tuple(compare(mine, memory_mb=memory_mb, book=book)) if mine else ()
    return CostReport(report.invocations, report.jobs, job_id, memory_mb, quotes)


def _configured_memory(blueprint: Blueprint, job_id: int) -> float:
    if job_id in blueprint.registry:
        return blueprint.registry.get(job_id).job_config(job_id).memory_mb
    return DEFAULT_MEMORY_MB
