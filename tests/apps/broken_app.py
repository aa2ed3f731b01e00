import nonexistent_dependency_for_vw_tests  # noqa: F401
