"""The benchmarks: ``harness`` (how they measure), ``synthetic`` (bars), and the scripts that print tables."""
