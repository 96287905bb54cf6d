"""`router admin`: the integration health page (DESIGN §8).

One row per integration x tenant: state, last success, last error, success rate over an hour,
DLQ depth and consumer lag, with pause / resume / replay-by-code actions. Everything shown is
read from Redis (health rows and states written by the workers) and from Kafka (DLQ topics,
committed offsets and watermarks), never from another process's memory, so any number of
replicas of every process kind show the same page.
"""
