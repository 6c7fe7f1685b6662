"""Test-wide settings: one torch thread (the tests' networks are tiny; more threads only contend)."""
import torch

torch.set_num_threads(1)
