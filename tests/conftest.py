"""Test-wide settings."""

from __future__ import annotations

import torch

# The tests run tiny networks on a 2-core machine. With torch's default of one thread per core, any
# other load on the machine makes its thread pool thrash (measured here: 6x slower property tests).
torch.set_num_threads(1)
