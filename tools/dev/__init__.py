"""`router dev`: the whole pipeline on one machine (``supervisor``), and the embedded services
(``embedded``: Tansu, redis-server, child processes) that only it, bench and the tests start."""
