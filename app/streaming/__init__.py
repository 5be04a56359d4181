"""The Faust streaming service: a thin adapter between Kafka and the decision core."""
