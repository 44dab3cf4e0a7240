"""The rollout controller: the process that advances progressive rollouts.

The state machine, the step rule and the serving-side work live in
``vroom_rollout.progressive``; this service runs its ``Controller`` with the configured
deployer, a heartbeat for liveness probes, and a clean stop on SIGTERM. Run several:
one holds the lease and works, the others wait to take over.
"""
