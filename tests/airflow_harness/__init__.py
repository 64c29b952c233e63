"""Run real Airflow 3.3 DAGs from pytest: a private AIRFLOW_HOME, `airflow dags test` in a child process,
an api-server sharing the metadata DB, and Human-in-the-loop answers through its REST API.

See `harness.py` for the API.
"""
