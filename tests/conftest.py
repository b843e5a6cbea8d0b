import os

# Deterministic, offline: nothing may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import dlavm.devops  # noqa: E402,F401  (registers the device ops, as the compiler's entry points do)
