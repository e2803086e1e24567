from prometheus_client import Counter, Gauge, Histogram

CHARGES = Counter(
    "cdrflow_billing_charges_total",
    "Consumed calls by outcome.",
    ["outcome"],  # priced | not_answered | unpriced | duplicate | invalid
)
AMOUNT = Counter(
    "cdrflow_billing_charged_amount_total",
    "Sum of the charges written, by currency (adjustments not included).",
    ["currency"],
)
UNPRICED = Counter(
    "cdrflow_billing_unpriced_total",
    "Calls left without a charge (kept for rerating), by reason.",
    ["reason"],  # no_tariff | no_destination | no_end_time
)
RERATED = Counter(
    "cdrflow_billing_rerated_total",
    "Unpriced calls priced by a rerate run.",
)
ADJUSTMENTS = Counter(
    "cdrflow_billing_adjustments_total",
    "Adjustment entries added to charges.",
)
TARIFF_LOAD_SECONDS = Gauge(
    "cdrflow_billing_tariff_load_seconds",
    "Time the last tariff (re)load from the database took.",
)
BILL_SECONDS = Histogram(
    "cdrflow_billing_bill_seconds",
    "Time to build one bill.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
