"""Tools for tests, benchmarks and the demo (throwaway servers, a local Airflow stack); nothing in the pipeline imports them."""
