"""Recommender networks (MF, two-tower), the LightningModule that trains them, metrics and export."""
