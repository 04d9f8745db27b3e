# No patch: main's kernels at other ring pacings (pace.args; both kernels take it, read the predictor's rows).
true
