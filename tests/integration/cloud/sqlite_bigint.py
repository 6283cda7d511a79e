"""Run a console script (argv[1]) with SQLite taking integers beyond 64 bits as text.

MySQL's validation-rules.json has maxima of 2**64-1 (e.g. max_binlog_cache_size). Trove stores them
in VARCHAR(40) columns but binds them as Python ints, which MySQL (Trove's production database)
accepts and Python's sqlite3 refuses ("Python int too large to convert to SQLite INTEGER"). The test
cloud runs Trove on SQLite, so trove-api and trove-manage start through this shim; Trove's code is
unchanged. Only the test harness uses it.
"""

import runpy
import sqlite3
import sys

sqlite3.register_adapter(int, lambda value: value if -2**63 <= value < 2**63 else str(value))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
