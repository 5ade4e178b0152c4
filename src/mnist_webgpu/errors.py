class PipelineError(Exception):
    """A failure already phrased as the one line the user sees (what, and where)."""
