"""The load, stress and fault lab (``python -m loadtest``, see docs/loadtest.md) and the older drivers
(``loadtest.queue``, ``loadtest.e2e``); results go under ``loadtest/results/``."""
