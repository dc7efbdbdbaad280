"""
Delivery metrics through C{prometheus_client}, when it is installed.

Two metrics, labelled by destination (C{host:port}) and outcome (the
values of L{mailclient._wire.delivery.Outcome}):

  - C{mailclient_deliveries_total}, a counter of delivery attempts;
  - C{mailclient_delivery_seconds}, a histogram of their latency (attempts
    that never reached a connection have none and are only counted).

C{prometheus_client} is an optional import: without it L{deliveryMetrics}
returns L{None} and nothing is measured.  Exposing the metrics (an HTTP
endpoint, a push gateway) is the application's business, with
C{prometheus_client}'s own tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType

    from prometheus_client import CollectorRegistry, Counter, Histogram

#: Latency buckets, in seconds: from a local relay's milliseconds to a
#: slow server's final reply.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
           120.0, 300.0)


class DeliveryMetrics:
    """
    The delivery counter and latency histogram of one registry.
    """

    def __init__(self, prometheus: ModuleType, registry: CollectorRegistry) -> None:
        labels = ("destination", "outcome")
        self.deliveries: Counter = prometheus.Counter(
            "mailclient_deliveries", "SMTP delivery attempts, by destination and outcome.",
            labels, registry=registry)
        self.latency: Histogram = prometheus.Histogram(
            "mailclient_delivery_seconds",
            "Latency of SMTP delivery attempts (start of the transaction to its "
            "outcome), by destination and outcome.",
            labels, registry=registry, buckets=BUCKETS)
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def observe(self, destination: str, outcome: str, latency: float | None) -> None:
        """
        Count one attempt to C{destination} that ended with C{outcome},
        and its latency (unless L{None}).
        """
        key = (destination, outcome)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.deliveries.labels(destination, outcome),
                self.latency.labels(destination, outcome),
            )
        children[0].inc()
        if latency is not None:
            children[1].observe(latency)


#: One L{DeliveryMetrics} per registry (a metric can be registered once).
_byRegistry: dict[int, tuple[CollectorRegistry, DeliveryMetrics]] = {}


def deliveryMetrics(registry: CollectorRegistry | None = None) -> DeliveryMetrics | None:
    """
    The delivery metrics registered in C{registry} (L{None}:
    C{prometheus_client}'s default registry), made on first use; L{None}
    when C{prometheus_client} is not installed.
    """
    try:
        import prometheus_client
    except ImportError:
        return None
    if registry is None:
        registry = prometheus_client.REGISTRY
    known = _byRegistry.get(id(registry))
    if known is not None and known[0] is registry:
        return known[1]
    metrics = DeliveryMetrics(prometheus_client, registry)
    _byRegistry[id(registry)] = (registry, metrics)
    return metrics


__all__ = ["DeliveryMetrics", "deliveryMetrics", "BUCKETS"]
