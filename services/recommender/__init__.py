"""The recommender: interactions -> Postgres -> ALS factors -> recommendations."""
