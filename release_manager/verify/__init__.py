"""Science verification: run a package's workload in an image and in a reference environment, compare
the outputs file by file (FITS, ROOT, text, bytes) under the spec's rules, and report (JUnit, JSON, HTML).

Modules: result (checks, verdict), rules, fastpath, columns (row-by-row), distributions (KS, chi2),
tables (shared table logic), fits_cmp, root_cmp, text_cmp, compare (files and folders), runner
(workloads), report and plots.
"""
from release_manager.verify.compare import compare_paths  # noqa: F401
from release_manager.verify.result import Check, Outcome  # noqa: F401
