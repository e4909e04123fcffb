"""Where shard work runs: the units of work (checksum ranges, patch a batch), executors
(threads, processes, Dask) and the start of a worker process."""
