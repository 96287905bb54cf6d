"""Integration specs: load and validate YAML (JSON Schema + semantic checks), compile to callables."""
