"""``lienthong bench``: Liên Thông measured against a hand-written aiokafka loop on the same broker."""
