"""tests/data holds inputs, not tests: the sample project's own tests run only when
tests/server/test_pytest_plugin.py starts pytest in that folder, as its user would."""

collect_ignore = ["sample_project"]
