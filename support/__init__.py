"""What the tests and the benchmarks share: services to run against, topologies, producing and
reading topics, worker processes. Not shipped in the wheel or the image; production code never
imports it (tests/unit/test_layers.py).
"""
