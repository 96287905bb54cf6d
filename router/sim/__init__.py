"""Simulators of the world around the router, for tests, benchmarks and ``router dev``.

``router.sim.partner`` is a partner API that delivery workers POST records to; see
``docs/partner-sim.md``.
"""
