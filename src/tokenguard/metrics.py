"""Prometheus metrics for a :class:`~tokenguard.TokenValidator` (``tokenguard-asgi[metrics]``).

    observer = PrometheusObserver()                      # its own CollectorRegistry
    validator = TokenValidator([issuer], observer=observer)
    observer.watch(validator)                            # key-set gauges, read at scrape time

Exported (``tokenguard`` is the default ``namespace``):

=============================================  =======================================
``tokenguard_validations_total``               counter ``{outcome, reason}``; outcome is
                                               ``valid`` or ``invalid``, reason the error
                                               reason (empty when valid)
``tokenguard_token_cache_hits_total``          counter: answered from the verified-token
                                               cache
``tokenguard_token_cache_misses_total``        counter: full verifications
``tokenguard_validation_duration_seconds``     histogram ``{outcome}`` of full
                                               verifications (cache hits cost ~nothing
                                               and are left out so they do not hide slow
                                               ones)
``tokenguard_key_fetches_total``               counter ``{issuer, document, outcome}``;
                                               document ``discovery``/``jwks``, outcome
                                               ``ok``/``not_modified``/``error``
``tokenguard_keyset_age_seconds``              gauge ``{issuer}``: since the last
                                               successful fetch (200 or 304); below the
                                               keys' lifetime while the issuer answers
``tokenguard_keyset_seconds_since_change``     gauge ``{issuer}``: since the keys last
                                               changed (added, dropped or replaced)
``tokenguard_keyset_keys``                     gauge ``{issuer}``: keys held
``tokenguard_keyset_usable``                   gauge ``{issuer}``: 1 when keys are usable
=============================================  =======================================

The ``issuer`` label is the configured issuer (a ``{tenantid}`` template stays a
template), so label cardinality is bounded by configuration, never by tokens.
Exposing the registry is the app's choice; see :func:`metrics_endpoint`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Final

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.metrics import Counter, Histogram
except ImportError:  # tested by hiding prometheus_client from sys.modules
    raise ImportError(
        "tokenguard.metrics needs prometheus-client: pip install 'tokenguard-asgi[metrics]'"
    ) from None
from starlette.requests import Request
from starlette.responses import Response

from ._errors import Reason
from ._keyset import FetchOutcome, KeyDocument
from ._validator import TokenValidator, ValidationOutcome

__all__ = ["DEFAULT_BUCKETS", "KeySetCollector", "PrometheusObserver", "metrics_endpoint"]

#: Latency buckets: a verification is tens of microseconds to milliseconds; one that
#: waits for a key fetch takes up to the fetch deadline (5 s by default).
DEFAULT_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class PrometheusObserver:
    """A :class:`~tokenguard.ValidationObserver` that counts into Prometheus metrics.

    ``registry`` defaults to a new :class:`CollectorRegistry` (not the global one), so
    several validators or tests never collide; pass ``prometheus_client.REGISTRY`` to
    use the process-wide registry.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "tokenguard",
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.namespace = namespace
        reg = self.registry
        self.validations = Counter(
            "validations",
            "Token validations by outcome and reason",
            ["outcome", "reason"],
            namespace=namespace,
            registry=reg,
        )
        self.cache_hits = Counter(
            "token_cache_hits",
            "Validations answered from the verified-token cache",
            namespace=namespace,
            registry=reg,
        )
        self.cache_misses = Counter(
            "token_cache_misses",
            "Validations that verified the token in full",
            namespace=namespace,
            registry=reg,
        )
        self.duration = Histogram(
            "validation_duration_seconds",
            "Duration of full token verifications",
            ["outcome"],
            namespace=namespace,
            registry=reg,
            buckets=buckets,
        )
        self.key_fetches = Counter(
            "key_fetches",
            "Discovery and JWKS fetches by outcome",
            ["issuer", "document", "outcome"],
            namespace=namespace,
            registry=reg,
        )
        # Bound children for the hot path: a cache hit costs two increments.
        self._valid = self.validations.labels("valid", "")
        self._valid_seconds = self.duration.labels("valid")
        self._invalid_seconds = self.duration.labels("invalid")
        self._collector: KeySetCollector | None = None

    # -- ValidationObserver ------------------------------------------------------

    def validation(
        self,
        outcome: ValidationOutcome,
        reason: Reason | None,
        issuer: str | None,
        seconds: float,
        cached: bool,
    ) -> None:
        """Count one validation (called by the validator)."""
        if outcome == "valid":
            self._valid.inc()
        else:
            self.validations.labels(outcome, reason or "").inc()
        if cached:
            self.cache_hits.inc()
            return
        self.cache_misses.inc()
        (self._valid_seconds if outcome == "valid" else self._invalid_seconds).observe(seconds)

    def key_fetch(self, issuer: str, document: KeyDocument, outcome: FetchOutcome) -> None:
        """Count one discovery or JWKS fetch (called by the key sets)."""
        self.key_fetches.labels(issuer, document, outcome).inc()

    # -- key-set gauges ------------------------------------------------------------

    def watch(self, validator: TokenValidator) -> None:
        """Export ``validator``'s key-set gauges, computed from ``status()`` at scrape time."""
        if self._collector is None:
            self._collector = KeySetCollector(namespace=self.namespace)
            self.registry.register(self._collector)
        self._collector.validators.append(validator)


class KeySetCollector:
    """A custom collector reading :meth:`TokenValidator.status` when scraped."""

    def __init__(self, validators: list[TokenValidator] | None = None, *, namespace: str) -> None:
        self.validators = list(validators or [])
        self.namespace = namespace

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        ns = self.namespace
        return (
            GaugeMetricFamily(
                f"{ns}_keyset_age_seconds",
                "Seconds since the issuer's keys were last fetched or confirmed",
                labels=["issuer"],
            ),
            GaugeMetricFamily(
                f"{ns}_keyset_seconds_since_change",
                "Seconds since the issuer's keys last changed",
                labels=["issuer"],
            ),
            GaugeMetricFamily(f"{ns}_keyset_keys", "Keys held for the issuer", labels=["issuer"]),
            GaugeMetricFamily(
                f"{ns}_keyset_usable", "1 when the issuer's keys are usable", labels=["issuer"]
            ),
        )

    def describe(self) -> Iterator[Metric]:
        """Metric names without samples (lets the registry check for duplicates)."""
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        """One sample per configured issuer; ages are absent until keys were fetched."""
        age, changed, keys, usable = self._families()
        seen: set[str] = set()
        for validator in self.validators:
            for status in validator.status():
                if status.issuer in seen:  # the same issuer in two validators: report once
                    continue
                seen.add(status.issuer)
                labels = [status.issuer]
                if status.age is not None:
                    age.add_metric(labels, status.age)
                if status.since_change is not None:
                    changed.add_metric(labels, status.since_change)
                keys.add_metric(labels, status.key_count)
                usable.add_metric(labels, 1.0 if status.usable else 0.0)
        return iter((age, changed, keys, usable))


def metrics_endpoint(
    registry: CollectorRegistry,
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette/FastAPI endpoint serving ``registry`` in the Prometheus text format.

    ``Route("/metrics", metrics_endpoint(observer.registry))``; exclude the path from
    the middleware (or protect it your own way).
    """

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
