"""Progressive delivery: a candidate reaches users through shadow and canary steps gated
on live signals, and is rolled back automatically on any breach.

- :mod:`~vroom_rollout.progressive.machine`: the states, the schedule, the step rule;
- :mod:`~vroom_rollout.progressive.signals`: per-version counts and histograms;
- :mod:`~vroom_rollout.progressive.store`: the state, lease and commands in Redis;
- :mod:`~vroom_rollout.progressive.controller`: the single writer that advances it;
- :mod:`~vroom_rollout.progressive.registry`: the aliases and tags it moves in MLflow;
- :mod:`~vroom_rollout.progressive.requests`: start, abort and promote, for callers.

The serving side is a ``Deployer``: ``vroom_rollout.local.LocalDeployer`` (one predictor
hosting both models) or ``vroom_rollout.kubernetes.KubernetesDeployer`` (a second
InferenceService). docs/rollouts.md walks through it all.
"""
