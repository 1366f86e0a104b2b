"""Robustrain's AutoAttack against Croce & Hein's reference (docs/evaluation.md)."""
