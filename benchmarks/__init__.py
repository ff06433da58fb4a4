"""wsgiprof benchmarks: overhead, end-to-end throughput, accuracy, data path scale, overhead budget.

Run ``python -m benchmarks`` (quick, under 3 minutes), ``--full`` or ``--smoke``; see
``benchmarks/__main__.py`` and the generated ``benchmarks/RESULTS.md``.
"""
