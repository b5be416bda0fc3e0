"""Tools for tests and benchmarks (throwaway servers); nothing in the pipeline imports them."""
