# The Airflow image for `astro dev start` (Astro CLI): Astro Runtime 3.3 (= Airflow 3.3, the line
# requirements.txt pins) in its Python 3.11 distribution (the lock is compiled for 3.11). Keep the
# Runtime's Airflow patch equal to the lock's (`docker run --rm <image> airflow version`): the
# Runtime's onbuild step installs requirements.txt, and a different Airflow pin there fails the build.
# Written from Astronomer's docs; it cannot be built on the machine this project is developed on
# (no Docker engine). docker-compose.override.yml adds the mounts DockerOperator and Cosmos need.
FROM astrocrpublic.azurecr.io/runtime:3.3-8-python-3.11

ENV CIVIC_PROJECT_ROOT=/usr/local/airflow \
    CIVIC_DATA_DIR=/usr/local/airflow/data \
    AIRFLOW__COSMOS__ENABLE_TELEMETRY=False \
    AIRFLOW__COSMOS__CACHE_DIR=/usr/local/airflow/data/cosmos_cache \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False \
    DO_NOT_TRACK=1

# The onbuild step has copied the project (less .dockerignore) to /usr/local/airflow and installed
# requirements.txt. The project's own package (include/civic_pipelines) is importable because Astro
# puts include/ on the path; it is installed here too so the `civic` command exists in the image.
# The dbt manifest Cosmos renders the DAGs from is parsed into the image (the override's dbt/ mount
# replaces it with the host's: run `make manifest` there).
RUN pip install --no-deps -e /usr/local/airflow \
 && cd /usr/local/airflow/dbt \
 && CIVIC_WAREHOUSE=/usr/local/airflow/data/warehouse.duckdb CIVIC_LAKE=/usr/local/airflow/data/lake \
    dbt parse --profiles-dir . --quiet
