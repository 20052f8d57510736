"""Beyond one machine: one run spread over many shards, started together, merged exactly.

* :mod:`~bench.distributed.partition` -- which calls shard ``i`` of ``N`` runs (``--shard i/N``), and
  why the union of the shards is the unsharded run's workload;
* :mod:`~bench.distributed.barrier` -- the synchronised start (a TCP barrier, a Ray actor, or a fixed
  ``--start-at``) and the start skew;
* :mod:`~bench.distributed.shard` -- a :class:`~bench.scenario.runner.Run` made into a shard;
* :mod:`~bench.distributed.merge` -- ``cometbench merge``: histogram logs added, journals
  concatenated, reports written; shards of other runs, missing, partial or crashed ones refused;
* :mod:`~bench.distributed.executors` -- ``run --shards N --executor ray|local``: launch, collect,
  merge;
* :mod:`~bench.distributed.cli` -- the command-line options and the ``merge`` command.

The Kubernetes alternative (an Indexed Job with ``--shard JOB_COMPLETION_INDEX/N --start-at ...``
and a merge Job) is in deploy/k8s/.  This package sits on the scenario runner and the reports
(bench/scenario, bench/report); nothing below it imports it.
"""
