"""Model weights for real deployments: list what the manifest expects, fetch it verified by sha256."""
