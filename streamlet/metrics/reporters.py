"""Prometheus exposition of metric groups, with Flink's names and labels.

A metric ``m`` of a group whose scope name is ``s`` is exported as ``flink_<s>_<m>`` with the
group's scope as labels, the way Flink's PrometheusReporter names them, so dashboards written for
Flink read streamlet unchanged:

==============================  ===========================================================
group scope name                labels
==============================  ===========================================================
``jobmanager``                  host
``jobmanager_job``              host, job_id, job_name
``taskmanager``                 host, tm_id
``taskmanager_job_task``        ... job_id, job_name, task_id, task_name, subtask_index,
                                task_attempt_id, task_attempt_num
``taskmanager_job_task_operator``  ... operator_id, operator_name
``taskmanager_job_latency_source_id_operator_id_operator_subtask_index``  ... source_id,
                                operator_id, operator_subtask_index (end-to-end latency)
==============================  ===========================================================

Counters, meters and gauges are exported as Prometheus gauges (as Flink does: its counters may
restart with a new attempt); a histogram is a summary (``quantile`` label, ``_count``, ``_sum``).
Gauges whose value is None or not a number are left out.  Nothing is computed on the hot path: a
scrape reads the values the TaskManager's metrics sampling (``taskmanager.metrics.interval``)
left in the meters.

The text is produced by prometheus_client's exposition (:func:`prometheus_text`), never by hand.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric as PromMetric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streamlet.metrics.registry import Counter, Gauge, Histogram, Meter, MetricGroup, TimeMeter

#: the ``Content-Type`` of :func:`prometheus_text`'s output (text format 0.0.4)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


class _GroupsCollector:
    """A prometheus_client collector over the groups ``roots()`` gives, read at collection time."""

    def __init__(self, roots: Callable[[], Iterable[MetricGroup]]) -> None:
        self._roots = roots

    def collect(self) -> Iterator[PromMetric]:
        gauges: dict[str, tuple[list[str], list[tuple[list[str], float]]]] = {}
        summaries: dict[str, PromMetric] = {}
        for root in self._roots():
            for group in root.walk():
                if not group.name:
                    continue
                prefix = f"flink_{group.name}_"
                keys = sorted(group.scope)
                label_values = [str(group.scope[k]) for k in keys]
                for name, metric in group.items():
                    full = prefix + name
                    if isinstance(metric, Histogram):
                        fam = summaries.get(full)
                        if fam is None:
                            fam = summaries[full] = PromMetric(full, f"{name} (streamlet {group.name})", "summary")
                        labels = dict(zip(keys, label_values))
                        for q, v in metric.quantiles().items():
                            fam.add_sample(full, {**labels, "quantile": str(q)}, v)
                        fam.add_sample(full + "_count", labels, float(metric.count))
                        fam.add_sample(full + "_sum", labels, metric.sum)
                        continue
                    if isinstance(metric, Counter):
                        value: float | None = float(metric.count)
                    elif isinstance(metric, (Meter, TimeMeter)):
                        value = metric.rate
                    elif isinstance(metric, Gauge):
                        try:
                            value = _number(metric.value())
                        except Exception:  # noqa: BLE001 - one broken gauge must not fail the scrape
                            value = None
                    else:
                        value = None
                    if value is None:
                        continue
                    entry = gauges.get(full)
                    if entry is None:
                        entry = gauges[full] = (keys, [])
                    if entry[0] != keys:  # same name, other labels: Prometheus wants one label set per name
                        continue
                    entry[1].append((label_values, value))
        for full, (keys, samples) in gauges.items():
            fam = GaugeMetricFamily(full, f"{full[len('flink_'):]} (streamlet)", labels=keys)
            for label_values, value in samples:
                fam.add_metric(label_values, value)
            yield fam
        yield from summaries.values()


def prometheus_text(roots: Callable[[], Iterable[MetricGroup]]) -> bytes:
    """The Prometheus text exposition of every group under ``roots()`` (see the module docstring).

    Example::

        body = prometheus_text(lambda: [executor.metrics])
        web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_GroupsCollector(roots))  # type: ignore[arg-type]
    return generate_latest(registry)
