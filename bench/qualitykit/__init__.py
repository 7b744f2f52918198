"""Pure core of the retrieval-quality harness: manifests in, metrics and reports out."""
