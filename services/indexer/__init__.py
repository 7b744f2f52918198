"""Indexer service: cosine k-NN over product image vectors (FAISS) plus the product catalog (SQLite)."""
