"""The benchmark: ``python -m l2fast bench`` and the cases of the pytest-benchmark suite.

Every l2fast function is timed beside the NumPy loop a user would otherwise
write (the baselines of `l2fast.reference`) and torch's ``_foreach``
functions, on a model's parameter shapes, against this machine's memory
roof measured in the same run.

=============  ===================================================================
module         holds
=============  ===================================================================
`workloads`    shapes (shipped models, a JSON file, a torch module) filled with
               N(0, 0.02) values; the bytes-moved rule (`bytes_moved`); the
               alternating factor that keeps in-place runs bounded
`cases`        which implementations each function is compared with
`machine`      CPU, last-level cache, memory, other processes' load, and the
               thread limits of NumPy's BLAS and torch (`thread_limits`)
`timing`       interleaved timing of several callables; the progress bar
`roof`         the memory roof: read, update and add streamed over a buffer
               larger than the last-level cache
`runner`       one workload's cases timed (`run_workload`); a whole run
               (`Benchmark`)
`report`       the text tables, the JSON report and the plot
`cli`          the options of ``python -m l2fast bench`` and its `main`
=============  ===================================================================

The pytest-benchmark suite in bench/ builds its comparisons from `cases`
and `workloads` too, so both time the same code.
"""
