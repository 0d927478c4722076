"""The hallucination stage's detectors, their names and settings (shared by the stage and its report)."""

CONFIDENT = 0.9  # "confidently wrong": the first answer token had max probability above this
PROBE_METHODS = ("mlp", "mlp_plus", "linear")
BASELINES = ("max_prob", "entropy")
METHODS = (*PROBE_METHODS, *BASELINES)
METHOD_NAMES = {"mlp": "MLP probe (Liang & Wang)", "mlp_plus": "steerlab detector (MLP on both states x output odds)",
                "linear": "linear probe (Obeso et al.)", "max_prob": "1 - max probability", "entropy": "entropy"}
SEARCH = {"n_trials": 6, "n_startup_trials": 2, "seed": 0}  # optuna TPE settings of the layer searches
PROBE_INPUTS = {"token": ("token", False), "plus": ("both", True)}  # layer search name -> (state, confidence)
