# The Airflow image for `astro dev start` and `astro deploy` (Astro CLI).
#
# The FROM tag is the ONE place that says which Airflow the project runs: Astro Runtime tags for
# Airflow 3 read runtime:<Airflow major.minor>-<Runtime build>, Python 3.12 by default, or
# -python-3.11 for the interpreter the development lock is compiled for. `make lock` holds the
# lock's apache-airflow to this line (3.3.*); tests/test_astro_project.py checks they agree. To
# move: change the tag, `make lock`, `make test`; then `docker run --rm <image> airflow version`
# on a machine with Docker tells the Runtime's Airflow patch, which the lock's pin should equal.
#
# On this project's development machine the Runtime cannot be pulled; `make astro-local` builds
# this file unchanged but for the FROM line on a stand-in for it (scripts/astro_standin/).
FROM astrocrpublic.azurecr.io/runtime:3.3-2-python-3.11

ENV CIVIC_PROJECT_ROOT=/usr/local/airflow \
    CIVIC_DATA_DIR=/usr/local/airflow/data \
    AIRFLOW__COSMOS__ENABLE_TELEMETRY=False \
    AIRFLOW__COSMOS__CACHE_DIR=/usr/local/airflow/data/cosmos_cache \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False \
    DO_NOT_TRACK=1

# The Runtime's build step (ONBUILD) has installed packages.txt and requirements.txt and copied
# the project (less .dockerignore) to /usr/local/airflow as the astro user. The project's own
# package (include/civic_pipelines) is importable because Astro puts include/ on the path; it is
# installed too (no dependencies: requirements.txt has them) so the `civic` command exists.
#
# The dbt manifest Cosmos renders every DAG's dbt task group from is parsed here, into the image:
# a fresh clone has no dbt/target (.gitignore, .dockerignore), and every container that parses
# DAGs or runs dbt (scheduler, dag-processor) takes it from the image; nothing runs on the host
# first. docker-compose.override.yml does not mount dbt/ over it.
USER root
RUN pip install --no-cache-dir --no-deps -e /usr/local/airflow \
 && chown -R astro:0 /usr/local/airflow/include
USER astro
RUN cd /usr/local/airflow/dbt \
 && CIVIC_WAREHOUSE=/usr/local/airflow/data/warehouse.duckdb CIVIC_LAKE=/usr/local/airflow/data/lake \
    dbt parse --profiles-dir . --quiet \
 && test -s target/manifest.json \
 && rm -rf logs
