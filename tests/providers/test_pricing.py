"""Cost estimates against figures worked out by hand from the published price lists.

Each expectation is computed here from the per-unit prices as the providers publish them
(the constants below), never by calling the code under test a second time.
"""

from __future__ import annotations

import pytest

from providers.base import FaasMetrics
from providers.pricing import (
    DEFAULT_PRICE_BOOK,
    Arch,
    PriceList,
    PricingLookupError,
    compare_providers,
    estimate_cost,
    estimate_invocation_cost,
    with_custom_prices,
)

# Published per-unit prices (USD), as on each provider's pricing page.
LAMBDA_X86_PER_GB_S = 0.0000166667
LAMBDA_ARM_PER_GB_S = 0.0000133334
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_CAPE_TOWN_X86_PER_GB_S = 0.0000221
GCP_TIER1_PER_VCPU_S = 0.000024
GCP_TIER1_PER_GIB_S = 0.0000025
GCP_TIER2_PER_VCPU_S = 0.0000336
GCP_TIER2_PER_GIB_S = 0.0000035
GCP_PER_REQUEST = 0.40 / 1_000_000
AZURE_PER_GB_S = 0.000026
AZURE_PER_EXECUTION = 0.40 / 1_000_000
DO_PER_GIB_S = 0.0000185


def test_a_million_128_mb_100_ms_lambda_calls_cost_what_the_price_page_says() -> None:
    invocations = 1_000_000
    gb_seconds = invocations * 0.1 * (128 / 1024)  # 12,500 GB-s
    expected = gb_seconds * LAMBDA_X86_PER_GB_S + invocations * LAMBDA_PER_REQUEST

    one = estimate_cost("aws", duration_ms=100, memory_mb=128, region="us-east-1")

    assert gb_seconds == 12_500
    assert one.total_usd * invocations == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.40833375)
    assert one.request_usd == pytest.approx(LAMBDA_PER_REQUEST)
    assert one.billed_ms == 100


def test_lambda_on_arm64_uses_the_arm64_duration_price() -> None:
    one = estimate_cost("aws", duration_ms=100, memory_mb=128, arch=Arch.ARM64)

    assert one.compute_usd == pytest.approx(0.1 * 0.125 * LAMBDA_ARM_PER_GB_S)
    assert one.request_usd == pytest.approx(LAMBDA_PER_REQUEST)
    assert one.arch is Arch.ARM64


def test_lambda_rounds_billed_duration_up_to_the_millisecond() -> None:
    one = estimate_cost("aws", duration_ms=100.2, memory_mb=1024)

    assert one.billed_ms == 101
    assert one.compute_usd == pytest.approx(0.101 * 1 * LAMBDA_X86_PER_GB_S)


def test_lambda_prices_listed_regions_above_the_standard_list() -> None:
    one = estimate_cost("aws", duration_ms=1000, memory_mb=1024, region="af-south-1")
    standard = estimate_cost("aws", duration_ms=1000, memory_mb=1024, region="eu-west-1")

    assert one.compute_usd == pytest.approx(LAMBDA_CAPE_TOWN_X86_PER_GB_S)
    assert standard.compute_usd == pytest.approx(LAMBDA_X86_PER_GB_S)
    assert standard.region == "eu-west-1"


def test_gcp_bills_vcpu_from_the_memory_tier_and_rounds_up_to_100_ms() -> None:
    one = estimate_cost("gcp", duration_ms=150, memory_mb=256, region="us-central1")

    seconds = 0.2  # 150 ms billed as 200 ms
    vcpu = 0.167  # the vCPU of the 256 MiB tier
    assert one.billed_ms == 200
    assert one.compute_usd == pytest.approx(
        seconds * vcpu * GCP_TIER1_PER_VCPU_S + seconds * 0.25 * GCP_TIER1_PER_GIB_S
    )
    assert one.request_usd == pytest.approx(GCP_PER_REQUEST)


def test_gcp_tier_2_regions_cost_more_than_tier_1() -> None:
    one = estimate_cost("gcp", duration_ms=1000, memory_mb=2048, region="europe-west3")

    assert one.compute_usd == pytest.approx(1.0 * GCP_TIER2_PER_VCPU_S + 2 * GCP_TIER2_PER_GIB_S)


def test_gcp_memory_between_tiers_gets_the_next_tier_up() -> None:
    one = estimate_cost("gcp", duration_ms=1000, memory_mb=384)

    assert one.compute_usd == pytest.approx(
        0.333 * GCP_TIER1_PER_VCPU_S + (384 / 1024) * GCP_TIER1_PER_GIB_S
    )


def test_gcp_refuses_a_region_it_does_not_list() -> None:
    with pytest.raises(PricingLookupError, match="mars-central1"):
        estimate_cost("gcp", duration_ms=100, memory_mb=256, region="mars-central1")


def test_gcp_refuses_memory_above_its_largest_tier() -> None:
    with pytest.raises(ValueError, match="largest tier"):
        estimate_cost("gcp", duration_ms=100, memory_mb=65_536)


def test_azure_flex_bills_the_instance_size_and_at_least_1000_ms() -> None:
    one = estimate_cost("azure", duration_ms=40, memory_mb=512)
    rounded = estimate_cost("azure", duration_ms=1201, memory_mb=1000)

    assert one.billed_ms == 1000
    assert one.billed_memory_mb == 512
    assert one.compute_usd == pytest.approx(1.0 * 0.5 * AZURE_PER_GB_S)
    assert one.request_usd == pytest.approx(AZURE_PER_EXECUTION)
    # 1,000 MB runs on a 2,048 MB instance; 1,201 ms is billed as 1,300 ms.
    assert (rounded.billed_ms, rounded.billed_memory_mb) == (1300, 2048)


def test_azure_flex_refuses_memory_above_its_largest_instance() -> None:
    with pytest.raises(ValueError, match="largest size"):
        estimate_cost("azure", duration_ms=1000, memory_mb=8192)


def test_azure_flex_bills_the_configured_instance_not_the_memory_used() -> None:
    metrics = FaasMetrics(total_ms=300, execution_ms=250, memory_used_mb=100)

    one = estimate_invocation_cost("azure", metrics, memory_mb=2048)

    assert one.billed_memory_mb == 2048
    assert one.compute_usd == pytest.approx(1.0 * 2.0 * AZURE_PER_GB_S)


def test_digitalocean_bills_at_least_100_ms_and_no_request_fee() -> None:
    one = estimate_cost("digitalocean", duration_ms=50, memory_mb=512)

    assert one.billed_ms == 100
    assert one.compute_usd == pytest.approx(0.1 * 0.5 * DO_PER_GIB_S)
    assert one.request_usd == 0


def test_a_custom_platform_is_free_until_the_operator_prices_it() -> None:
    assert estimate_cost("custom", duration_ms=5000, memory_mb=4096).total_usd == 0

    book = with_custom_prices(
        PriceList(per_gb_second_usd=0.00002, per_million_requests_usd=1.0, granularity_ms=10)
    )
    one = estimate_cost("custom", duration_ms=1234, memory_mb=512, book=book)

    assert one.billed_ms == 1240
    assert one.total_usd == pytest.approx(1.24 * 0.5 * 0.00002 + 1.0 / 1_000_000)
    assert book["aws"] is DEFAULT_PRICE_BOOK["aws"]


def test_the_billed_duration_is_the_only_duration_counted() -> None:
    metrics = FaasMetrics(total_ms=130, execution_ms=90, billed_ms=100)

    one = estimate_invocation_cost("aws", metrics, memory_mb=1024)

    # 100 ms billed, not 90 + 100 ms (the original crate's double count) nor 130 ms.
    assert one.billed_ms == 100
    assert one.compute_usd == pytest.approx(0.1 * LAMBDA_X86_PER_GB_S)


def test_without_a_billed_figure_execution_time_is_rounded_as_the_provider_would() -> None:
    metrics = FaasMetrics(total_ms=180, execution_ms=99.2)

    assert estimate_invocation_cost("aws", metrics, memory_mb=128).billed_ms == 100
    assert estimate_invocation_cost("gcp", metrics, memory_mb=128).billed_ms == 100


def test_without_any_provider_figure_our_total_time_is_priced() -> None:
    metrics = FaasMetrics(total_ms=250.5)

    assert estimate_invocation_cost("aws", metrics, memory_mb=128).billed_ms == 251
    assert estimate_invocation_cost("gcp", metrics, memory_mb=128).billed_ms == 300


def test_compare_providers_prices_one_job_on_every_provider() -> None:
    costs = compare_providers(1000, 1024, regions={"gcp": "asia-southeast1"})

    assert set(costs) == {"aws", "gcp", "azure", "digitalocean", "custom"}
    assert costs["aws"].total_usd == pytest.approx(LAMBDA_X86_PER_GB_S + LAMBDA_PER_REQUEST)
    assert costs["gcp"].region == "asia-southeast1"
    assert costs["gcp"].total_usd == pytest.approx(
        0.583 * GCP_TIER2_PER_VCPU_S + GCP_TIER2_PER_GIB_S + GCP_PER_REQUEST
    )
    # 1,024 MB runs on a 2,048 MB instance.
    assert costs["azure"].total_usd == pytest.approx(2 * AZURE_PER_GB_S + AZURE_PER_EXECUTION)
    assert costs["digitalocean"].total_usd == pytest.approx(DO_PER_GIB_S)
    assert costs["custom"].total_usd == 0


def test_an_unknown_provider_is_refused() -> None:
    with pytest.raises(PricingLookupError, match="nimbus"):
        estimate_cost("nimbus", duration_ms=100, memory_mb=128)


@pytest.mark.parametrize("duration_ms", [-1.0, float("nan"), float("inf")])
def test_a_duration_that_is_not_a_finite_non_negative_number_is_refused(
    duration_ms: float,
) -> None:
    with pytest.raises(ValueError, match="duration_ms"):
        estimate_cost("aws", duration_ms=duration_ms, memory_mb=128)


def test_a_memory_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="memory_mb"):
        estimate_cost("aws", duration_ms=100, memory_mb=0)
