"""Local tools, never deployed and never imported by the deployed code.

``cli/``: the ``lienthong`` command (``main.py`` lists every command). ``stack/``: ``lienthong run``,
the whole bus on one machine with sample traffic, and the supervision of its processes.
``localkafka/``: Apache Kafka (KRaft) from its own jars, without Docker, for the stack and the tests.
``bench/``: ``lienthong bench``, the bus measured against a hand-written aiokafka loop.
"""
