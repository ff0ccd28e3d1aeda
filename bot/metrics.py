"""Prometheus metrics, one registry per app (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8)


class Metrics:
    """Callbacks by type and outcome, handler latency, dedupe hits, rejections."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.callbacks = Counter(
            "scrm_callbacks",
            "Callbacks processed, by platform, kind and outcome",
            ("platform", "kind", "outcome"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "scrm_handler_seconds",
            "Time from dispatch to reply, by platform",
            ("platform",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.dedupe_hits = Counter(
            "scrm_dedupe_hits",
            "Retries answered from the reply cache without running handlers",
            ("platform",),
            registry=self.registry,
        )
        self.rejected = Counter(
            "scrm_callbacks_rejected",
            "Callbacks refused before dispatch, by platform and reason",
            ("platform", "reason"),
            registry=self.registry,
        )
        self.late_replies = Counter(
            "scrm_late_replies",
            "Replies that missed the budget and went to the outbound hook",
            ("platform",),
            registry=self.registry,
        )
        self.points_breaks = Gauge(
            "scrm_points_breaks",
            "Members out of balance in the latest recorded points reconcile",
            registry=self.registry,
        )
        self.points_breaks_read_at: float | None = None  # wall time of the last read
        # Labelled children of the per-callback metrics, looked up once per label set:
        # ``labels()`` checks and joins its values under a lock on every call.
        self._callback_children: dict[tuple[str, str, str], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def callback_done(self, platform: str, kind: str, outcome: str, seconds: float) -> None:
        """Count one processed callback and observe its handler time."""
        key = (platform, kind, outcome)
        counter = self._callback_children.get(key)
        if counter is None:
            counter = self._callback_children[key] = self.callbacks.labels(*key)
        counter.inc()
        histogram = self._latency_children.get(platform)
        if histogram is None:
            histogram = self._latency_children[platform] = self.latency.labels(platform)
        histogram.observe(seconds)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
