"""Planning: split the source at aligned offsets into shards, write the manifest, and cut
the shards into batches for workers."""
