"""`recsys cluster up|down|status`: the topology of a deployment, started on one machine.

PostgreSQL (the state database and the MLflow backend store), an MLflow tracking server with a local
artifact root, N independent server replicas (each its own process group, port, workers and log
directory, all on the same state database and model registry) and nginx balancing round-robin across
them, everything bound to 127.0.0.1 under one state directory. `topology.py` says what runs where,
`supervisor.py` starts, watches and stops it, `cli.py` holds the commands.
"""
