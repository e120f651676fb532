"""alert-pipeline: a multi-tenant alert-notification pipeline on Kafka."""
