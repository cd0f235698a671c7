"""ecgi's benchmarks, each run from the repository root as ``python -m bench.NAME``.

Each one writes its result through bench.harness to bench/results/NAME.json
(``--json PATH`` elsewhere), and ``python -m bench.report`` turns the results
into docs/performance.md.

    solver_throughput       node-steps/s per core against the memory roofline
    patient_sample          one synthetic patient's wall time, by phase
    campaign_throughput     samples/min and core utilisation through Parsl
    cost_estimate           ecgi campaign plan's core-hours against the run's
    aggregation_throughput  sample files per second into a data set's shards
    train_throughput        training samples/s, streamed and in memory
    against_original        training beside the original code
    clinical_throughput     clinical records/s before the network
    learning_curve          test MAE against training-set size, with its baselines
    anatomy_reuse           samples per core-hour with hearts reused
    worker_threads          two workers on two cores, BLAS threads or one each
    ecg_physiology          the example ECGs against textbook criteria; the torso's cost
    grid_shift              what moving the grid does to the sites' activation
    unseen_variation        what twins differing in what no lead shows have in common
    clinical_records        what ecgi predict returns for the real recordings of tests/data
    ecg_population          the synthetic population's ECG features against real records'
    report                  docs/performance.md from the results
"""
