"""Reports: what a run folder says about itself, fit verdicts, plots, report.md and report.html."""
