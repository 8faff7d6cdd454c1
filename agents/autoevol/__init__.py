"""Auto Evol-Instruct: optimizing the evolving method itself (analysis, optimization, judging)."""
