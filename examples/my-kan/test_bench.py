# The suite's benchmark functions, collected here: speed cases, fit cases, accuracy cases.
from perf.test_accuracy import test_accuracy  # noqa: F401
from perf.test_fit import test_fit  # noqa: F401
from perf.test_perf import test_perf  # noqa: F401
