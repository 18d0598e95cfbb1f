"""Evaluation protocols: kNN, linear probe (and, later, semi-supervised and transfer)."""
