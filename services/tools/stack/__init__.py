"""The local stack: ``lienthong run`` (the bus with a real broker, every service and sandbox as its own
process, sample traffic) and how other commands find it."""
