"""YouTube-8M data: record formats, the tf.data reader, shard writers and synthetic data."""
