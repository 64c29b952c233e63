# The Airflow image for chroma-migrate: the official Airflow 3.3.2 image (Python 3.11, the version the
# chromadb runtime files are compiled for) plus the project's pinned requirements, the engine, the DAGs
# and one pre-built virtual environment per supported chromadb version, so that a worker never
# installs anything at run time.
#
#   docker build -t chroma-migrate-airflow:3.3.2 .      (docker compose build does the same)
#
# tests/deploy/test_deploy_files.py checks that CHROMA_RUNTIMES lists exactly the versions of
# include/chroma_migrate/runtimes/chromadb-*.txt. Adding a version is adding its file there and here.
FROM apache/airflow:3.3.2-python3.11

ARG CHROMA_RUNTIMES="0.4.24 0.5.23 0.6.3 1.0.20 1.3.7 1.5.9"

# The runtimes live outside every folder docker-compose.yaml mounts, so a bind mount of the
# project (dags/, plugins/, include/) never hides them. /mnt/efs is where the EFS volume goes.
ENV CHROMA_MIGRATE_RUNTIMES=/opt/chroma-runtimes \
    CHROMA_MIGRATION_CONFIG=/opt/airflow/include/config/chroma_migration.yaml

USER root
RUN mkdir -p /opt/chroma-runtimes /mnt/efs \
    && chown -R airflow:0 /opt/chroma-runtimes /mnt/efs \
    && chmod -R g+rwX /opt/chroma-runtimes /mnt/efs
USER airflow

# The same pins as the development and CI environments (requirements.txt is compiled by `make lock`).
COPY --chown=airflow:0 requirements.txt /tmp/chroma-migrate/requirements.txt
RUN pip install --no-cache-dir -r /tmp/chroma-migrate/requirements.txt

# The engine is installed in editable mode from /opt/airflow/include: the chromadb worker processes
# get that folder (and nothing else) as their PYTHONPATH, and a mounted include/ replaces it as a whole.
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 include /opt/airflow/include
RUN pip install --no-cache-dir --no-deps -e /opt/airflow

# One virtual environment per chromadb version, built with the project's own command (pinned files,
# a file lock and a final rename), then listed so that the build log shows each one built.
RUN chroma-migrate runtime ensure ${CHROMA_RUNTIMES} \
    && chroma-migrate runtime list \
    && rm -rf /home/airflow/.cache

# The DAGs and plugins are baked in as well, so the image also runs where nothing is mounted.
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
