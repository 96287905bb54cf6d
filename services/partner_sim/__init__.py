"""Simulators of the world around the router, for tests, benchmarks and ``router dev``.

``services.partner_sim.partner`` is a partner API that delivery workers POST records to; see
``docs/partner-sim.md``.
"""
