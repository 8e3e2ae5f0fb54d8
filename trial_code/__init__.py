"""Code that runs inside an NNI trial: build the child, inherit the parent's weights (``nni_nas_ext.trial_code``)."""

from __future__ import annotations
