"""The materializer: consumes ``vehicle-saved`` events and writes features to the online store.

- :mod:`vroom_materializer.consumer` — :class:`~vroom_materializer.consumer.Materializer`,
  the consumer-group loop (durable, idempotent, dead letters, reconciliation);
- :mod:`vroom_materializer.health` — the heartbeat file and ``--probe``;
- :mod:`vroom_materializer.options` — its ``VROOM_MATERIALIZER_*`` knobs;
- ``python -m vroom_materializer`` — the process (graceful on SIGTERM).

Nothing heavy is imported here, so ``--probe`` starts fast. The contract of the events
is :mod:`vroom_common.events`; ``docs/events.md`` describes the protocol.
"""
