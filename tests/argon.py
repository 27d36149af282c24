"""Cheap argon2id parameters, so tests that create many users stay fast."""

from __future__ import annotations

import argon2

FAST = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=1,
    memory_cost=8,
    parallelism=1,
)
