"""Apache Kafka run from its own Maven jars (KRaft, no Docker) for the local stack and the tests, or the
cluster a command or test is told to use instead."""
