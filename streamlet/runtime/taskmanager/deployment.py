"""Build a subtask from its deployment descriptor: the one function every path uses.

The TaskExecutor calls :func:`build_task` for each subtask it deploys, whether it runs inside
``streamlet run`` (every channel local) or in a TaskManager process of a cluster (channels to
other TaskManagers remote).  Building imports the job's user modules (blocking): call it off the
event loop; it creates no asyncio objects.
"""

from __future__ import annotations

from typing import Any

from streamlet.graph.execution_graph import TaskDeploymentDescriptor
from streamlet.graph.job_graph import BROADCAST
from streamlet.ids import subtask_name
from streamlet.metrics.registry import MetricGroup, TaskIOMetrics
from streamlet.operators.base import RuntimeContext
from streamlet.runtime.taskmanager.network import partitioners
from streamlet.runtime.taskmanager.network.channels import InputGate, OutputChannel
from streamlet.runtime.taskmanager.network.projection import projection
from streamlet.runtime.taskmanager.operator_chain import OperatorChain
from streamlet.runtime.taskmanager.task import (
    ProcessingTimeOf, RecordWriter, SideOutputs, SinkOutput, SourceContextImpl, Task, TaskConfig,
)
from streamlet.udf import ensure_on_path


def build_task(tdd: TaskDeploymentDescriptor, gate: InputGate | None, output_channels: dict[str, OutputChannel],
               clock: Any, state: Any, console: Any = None, config: TaskConfig | None = None,
               metrics: MetricGroup | None = None) -> Task:
    """The Task of one deployment descriptor.

    ``gate`` holds the task's input channels (None for a source); ``output_channels`` maps every
    channel id of the descriptor's outputs to the producer side of that channel (local or remote);
    ``state`` is the subtask's keyed-state backend (restored by the caller when the descriptor
    restores a checkpoint).
    """
    ensure_on_path(tdd.sys_path)
    name = subtask_name(tdd.vertex_name, tdd.subtask_index, tdd.parallelism)
    group = metrics or MetricGroup({"job_id": tdd.job_id, "job_name": tdd.job_name, "task_id": tdd.vertex_id,
                                    "task_name": tdd.vertex_name, "subtask_index": str(tdd.subtask_index)},
                                   "taskmanager_job_task")
    io = TaskIOMetrics(group)
    side = SideOutputs({})
    ctx = RuntimeContext(job_name=tdd.job_name, vertex_name=tdd.vertex_name, subtask_index=tdd.subtask_index,
                         parallelism=tdd.parallelism, max_parallelism=tdd.max_parallelism, mode=tdd.mode,
                         state=state, clock=clock, console=console, side_outputs=side)
    src_ctx = SourceContextImpl(tdd.subtask_index, tdd.parallelism, tdd.batch_size, clock, tdd.operators[0].id)
    holder: list[Task] = []
    chain = OperatorChain(tdd.operators, ctx, tdd.splits, src_ctx,
                          processing_time=lambda index: ProcessingTimeOf(lambda: holder[0], index), metrics=group)
    main: list[RecordWriter | SinkOutput] = []
    producer = tdd.operators[-1].id
    # Several edges read the main output: each gets its own copy (a JSON round trip), except
    # * an edge whose target reads records in place and copies what it emits (``o.in_place``:
    #   see streamlet.graph.execution_graph.reads_in_place); the others then copy when a batch is
    #   sent, as no reader changes the originals;
    # * otherwise one edge, when every other copies at emit time (Flink's copying collector
    #   copies for all outputs but the last).  That needs JSON output, local channels only, no
    #   record sent twice by an edge (broadcast), no chained sink holding the originals.
    # A task that reads records in place (``tdd.copy_outputs``) copies everything it emits.
    mains = [o for o in tdd.outputs if o.side_output is None]
    uncopied = None
    if (len(mains) > 1 and chain.json_output and chain.writer is None and not tdd.copy_outputs
            and not any(o.in_place for o in mains)
            and all(not (o.partitioner == BROADCAST and len(o.channel_ids) > 1)
                    and all(getattr(output_channels[c], "target", None) is not None for c in o.channel_ids)
                    for o in mains)):
        uncopied = mains[-1]
    for o in tdd.outputs:
        split = partitioners.build(o.partitioner, len(o.channel_ids), o.key, o.key_node, tdd.max_parallelism,
                                   tdd.subtask_index)
        copy = (tdd.copy_outputs or not chain.json_output
                or (not o.in_place and (o.shared or (o.partitioner == BROADCAST and len(o.channel_ids) > 1))))
        if o is uncopied:
            copy = False
        writer = RecordWriter([output_channels[c] for c in o.channel_ids], split, tdd.batch_size, io,
                              o.side_output or producer, copy, lambda: holder[0].arm_flush(),
                              projection(o.fields) if o.fields else None,
                              eager_copy=uncopied is not None and o.side_output is None)
        if o.side_output is None:
            main.append(writer)
        else:
            side.writers.setdefault(o.side_output, []).append(writer)
    if chain.writer is not None:
        main.append(SinkOutput(chain.writer, io))
    task = Task(name, chain, gate, main, io, clock, config, state, side)
    task.subtask_index = tdd.subtask_index
    task.head_id = tdd.operators[0].id
    holder.append(task)
    # a chain's operators share the task's watermarks (they run in one step over each batch)
    for g in chain.operator_groups:
        g.gauge("currentInputWatermark", lambda: task.input_watermark)
        g.gauge("currentOutputWatermark", lambda: task.output_watermark)
    return task
