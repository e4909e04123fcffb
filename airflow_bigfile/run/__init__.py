"""Where shard work runs: executors (threads, processes, Dask), worker start-up, cancelling."""
