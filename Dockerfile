# The Airflow image for `astro dev start` (Astro Runtime 3.x = Airflow 3).
FROM astrocrpublic.azurecr.io/runtime:3.1-1

ENV CIVIC_PROJECT_ROOT=/usr/local/airflow \
    CIVIC_DATA_DIR=/usr/local/airflow/data \
    AIRFLOW__COSMOS__ENABLE_TELEMETRY=False \
    AIRFLOW__COSMOS__CACHE_DIR=/usr/local/airflow/data/cosmos_cache \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False \
    DO_NOT_TRACK=1

# requirements.txt is installed by the Astro Runtime's onbuild step; the project's own package
# (include/civic_pipelines) is importable because Astro puts include/ on the path, and installed
# here too so the `civic` command exists in the image.
COPY --chown=astro:0 pyproject.toml /usr/local/airflow/pyproject.toml
RUN pip install --no-deps -e /usr/local/airflow \
 && cd /usr/local/airflow/dbt \
 && CIVIC_WAREHOUSE=/usr/local/airflow/data/warehouse.duckdb CIVIC_LAKE=/usr/local/airflow/data/lake \
    dbt parse --profiles-dir . --quiet
