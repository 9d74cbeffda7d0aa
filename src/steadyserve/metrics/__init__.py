"""Platform metrics: what each process counts (recorder), how processes share it (shards),
how it is exposed (exposition), kept (history, store) and queried (query)."""
