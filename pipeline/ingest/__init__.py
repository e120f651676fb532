"""The HTTP ingest: validates what monitoring tools post and writes it to Kafka."""
